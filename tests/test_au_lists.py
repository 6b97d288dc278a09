"""Tests of the list-file readers and the shared helpers of the AU builders."""

from __future__ import annotations

import os

import numpy as np
import pytest

from faujax.data import au_builder_base as base
from faujax.data import au_lists
from faujax.geometry import mean_face
from faujax.geometry import schemes


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  return str(path)


def test_label_rows_unknown_codes_become_mask(tmp_path):
  p = _write(tmp_path / 'l.txt', '0 1 9\n1 999 0\n-1 0 1\n\n')
  au, mask = au_lists.read_label_rows(p, 3)
  np.testing.assert_array_equal(au, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
  np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 1], [0, 1, 1]])
  assert au.dtype == mask.dtype == np.float32


@pytest.mark.parametrize('text,match', [
    ('0 1 1\n0 1\n', r'l\.txt:2: expected 3 AU labels per row, found 2'),
    ('0 1 1\n0 2 1\n', r'l\.txt:2: column 2 holds 2; expected 0, 1 or an unknown code'),
    ('0 1 x\n', r'l\.txt:1: expected numbers'),
    ('0 1 1\n\n0 1 1\n', r'l\.txt:2: empty line inside the list'),
])
def test_label_rows_errors_name_file_and_line(tmp_path, text, match):
  p = _write(tmp_path / 'l.txt', text)
  with pytest.raises(ValueError, match=match):
    au_lists.read_label_rows(p, 3)


def test_path_list(tmp_path):
  p = _write(tmp_path / 'p.txt', 'F001/T1/2440.jpg\nSN002\\0.png\n')
  assert au_lists.read_path_list(p) == ['F001/T1/2440.jpg', 'SN002/0.png']
  p = _write(tmp_path / 'q.txt', 'a.jpg\n../b.jpg\n')
  with pytest.raises(ValueError, match=r'q\.txt:2: image path'):
    au_lists.read_path_list(p)
  with pytest.raises(ValueError, match=r'missing\.txt does not exist'):
    au_lists.read_path_list(str(tmp_path / 'missing.txt'))


def test_jaanet_set_reads_interleaved_landmarks_and_checks_lengths(tmp_path):
  lm = np.arange(98, dtype=np.float32).reshape(49, 2) + 0.5
  line = ' '.join(f'{v:g}' for v in lm.reshape(-1))
  d = tmp_path / 'list'
  _write(d / 'BP4D_part1_path.txt', 'F001/T1/1.jpg\nF001/T1/2.jpg\n')
  _write(d / 'BP4D_part1_land.txt', f'{line}\n{line}\n')
  _write(d / 'BP4D_part1_biocular.txt', '30.5\n31\n')
  _write(d / 'BP4D_part1_AUoccur.txt', ' '.join(['1'] * 12) + '\n' + ' '.join(['0'] * 12) + '\n')
  entries = au_lists.read_jaanet_set(str(d), 'BP4D_part1', 12)
  assert [e.path for e in entries] == ['F001/T1/1.jpg', 'F001/T1/2.jpg']
  np.testing.assert_array_equal(entries[0].landmarks, lm)  # x y interleaved -> (49, 2)
  assert entries[1].source.endswith('BP4D_part1_path.txt:2')
  assert au_lists.detect_layouts(str(tmp_path), 'BP4D') == [au_lists.LAYOUT_JAANET]
  _write(d / 'BP4D_part1_biocular.txt', '30.5\n')
  with pytest.raises(ValueError, match=r'differ in length: .*BP4D_part1_biocular\.txt \(1 lines\)'):
    au_lists.read_jaanet_set(str(d), 'BP4D_part1', 12)
  _write(d / 'BP4D_part1_land.txt', f'{line}\n1 2 3\n')
  with pytest.raises(ValueError, match=r'BP4D_part1_land\.txt:2: expected 98 landmark coordinates'):
    au_lists.read_jaanet_set(str(d), 'BP4D_part1', 12)


def test_megraphau_detection_in_manual_root(tmp_path):
  for k in (1,):
    for n in au_lists.megraphau_file_names('DISFA', k).values():
      _write(tmp_path / n, 'SN001/0.png\n' if 'path' in n else '0 0 0 0 0 0 0 0\n')
  assert au_lists.detect_layouts(str(tmp_path), 'DISFA') == [au_lists.LAYOUT_MEGRAPHAU]
  assert au_lists.find_list_dir(str(tmp_path), ['DISFA_test_label_fold1.txt']) == str(tmp_path)
  assert au_lists.subject_of_path('SN001/0.png') == 'SN001'


def test_pts_round_trip_and_errors(tmp_path):
  lm = np.random.default_rng(0).uniform(0, 100, (68, 2)).astype(np.float32)
  p = str(tmp_path / 'a.pts')
  au_lists.write_pts(p, lm)
  np.testing.assert_allclose(au_lists.read_pts(p), lm, atol=1e-3)
  _write(tmp_path / 'b.pts', 'version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n')
  with pytest.raises(ValueError, match=r'b\.pts: n_points is 3; expected one of'):
    au_lists.read_pts(str(tmp_path / 'b.pts'))
  body = '\n'.join(['1 2'] * 48 + ['1 x'])
  _write(tmp_path / 'c.pts', f'version: 1\nn_points: 49\n{{\n{body}\n}}\n')
  with pytest.raises(ValueError, match=r'c\.pts:52: expected "x y"'):
    au_lists.read_pts(str(tmp_path / 'c.pts'))


def test_numbered_files_any_padding(tmp_path):
  for n in ('0001.jpg', '2.png', '003.txt', 'a4.jpg'):
    _write(tmp_path / 'd' / n, '')
  got = base.numbered_files(str(tmp_path / 'd'))
  assert sorted(got) == [1, 2] and got[1].endswith('0001.jpg')
  assert base.numbered_files(str(tmp_path / 'none')) == {}


def test_centre_crop_resize():
  img = np.zeros((40, 60, 3), np.uint8)
  img[:, 10:50] = 255  # the centre 40 x 40 square is white
  out = base.centre_crop_resize(img, 20)
  assert out.shape == (20, 20, 3) and out.min() == 255


def test_align_face_is_a_similarity_with_level_eyes():
  lm68 = mean_face.MEAN_FACE_68 * 0.3 + np.array([10.0, 5.0])
  theta = np.deg2rad(12.0)
  rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  lm68 = (lm68 - 40) @ rot.T + 40
  img = np.random.default_rng(1).integers(0, 255, (80, 90, 3), dtype=np.uint8)
  for pts in (lm68, lm68[schemes.IDX_66_IN_68], lm68[schemes.IDX_49_IN_68]):
    face, out = base.align_face(img, pts.astype(np.float32))
    assert face.shape == (200, 200, 3) and face.dtype == np.uint8 and out.shape == pts.shape
    d_in = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    d_out = np.linalg.norm(out[:, None] - out[None], axis=-1)
    ratio = d_out[d_in > 1] / d_in[d_in > 1]
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-3)  # similarity: one scale
    eye_r = out[schemes.SUBSET_OF_68[len(pts)].tolist().index(36):][:6].mean(0)
    eye_l = out[schemes.SUBSET_OF_68[len(pts)].tolist().index(42):][:6].mean(0)
    assert abs(eye_r[1] - eye_l[1]) < 1e-2
  assert base.alignable(np.stack([lm68, np.zeros_like(lm68)])).tolist() == [True, False]


def test_stable_hash_is_fixed():
  # sha1('img_001.jpg') begins with a fixed value: the partition never depends on the process.
  assert base.stable_hash('img_001.jpg') == base.stable_hash('img_001.jpg')
  assert base.part_by_hash('a') in (1, 2, 3)
  assert base.stable_hash('abc') == int('a9993e364706816aba3e25717850c26c9cd0d89d'[:15], 16)

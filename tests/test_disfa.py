"""Tests of the DISFA builder on fake data written in the official and the list layouts."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import au_builder_base as base
from faujax.data import disfa
from faujax.geometry import mean_face
from faujax.geometry import schemes

# 2 subjects per part: 1 training subject, 1 validation subject (the last in sorted order).
SUBJECTS = {1: ('SN003', 'SN004'), 2: ('SN006', 'SN011'), 3: ('SN001', 'SN002')}
FRAMES = (1, 2, 3)  # label frames (1-based); image file = frame - 1


def _write_image(path: str, seed: int, size: int = 48) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _intensity(subject: str, frame: int, au: int) -> int:
  return base.stable_hash(f'{subject}/{frame}/{au}') % 6


def _write_official(root: str) -> dict[tuple[str, int], np.ndarray]:
  """Label files, frames (frame 3 of SN003 missing), 66-point .mat landmarks (both name schemes)."""
  truth = {}
  lm66 = (mean_face.MEAN_FACE_68 * 48 / mean_face.FRAME_SIZE)[schemes.IDX_66_IN_68]
  for subjects in SUBJECTS.values():
    for s in subjects:
      d = os.path.join(root, 'ActionUnit_Labels', s)
      os.makedirs(d, exist_ok=True)
      for au in labels.DISFA_AUS:
        with open(os.path.join(d, f'{s}_au{au}.txt'), 'w') as fh:
          fh.write(''.join(f'{f},{_intensity(s, f, au)}\n' for f in FRAMES))
      lm_dir = os.path.join(root, 'Landmark_Points', s, 'tmp_frame_lm')
      os.makedirs(lm_dir, exist_ok=True)
      for f in FRAMES:
        name = f'{s}_{f - 1:04d}_lm.mat' if s != 'SN006' else f'l{f:05d}_lm.mat'
        scipy.io.savemat(os.path.join(lm_dir, name), {'pts': lm66})
        if s == 'SN003' and f == 3:
          continue  # label row without a frame: skipped as missing_frame
        _write_image(os.path.join(root, 'img', s, f'{f - 1}.png'), base.stable_hash(s) + f)
        truth[(s, f)] = np.array([_intensity(s, f, a) for a in labels.DISFA_AUS], np.float32)
  return truth


def _build(config, manual, data_dir):
  b = tfds.builder(f'disfa/{config}', data_dir=data_dir)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
  return b


def _by_split(b):
  return {split: list(tfds.as_numpy(b.as_dataset(split=split))) for split in b.info.splits}


def _all(splits):
  return {e['image_path'].decode(): e for examples in splits.values() for e in examples}


def _check_parts(splits):
  seen = {}
  for k in (1, 2, 3):
    train = {e['subject_name'].decode() for e in splits[f'part{k}']}
    val = {e['subject_name'].decode() for e in splits[f'part{k}_val']}
    assert train == {sorted(SUBJECTS[k])[0]} and val == {sorted(SUBJECTS[k])[1]}
    for s in train | val:
      assert s not in seen and s in disfa.PARTS[k]
      seen[s] = k


def test_protocol_parts():
  subjects = [s for p in disfa.PARTS.values() for s in p]
  assert len(subjects) == len(set(subjects)) == 27


def test_official_layout(tmp_path):
  manual = str(tmp_path / 'manual')
  truth = _write_official(manual)
  b = _build('official', manual, str(tmp_path / 'data'))
  assert b.info.metadata['skipped'] == {'missing_frame': 1}
  splits = _by_split(b)
  got = _all(splits)
  assert len(got) == len(truth) == 17
  for (s, f), intensity in truth.items():
    e = got[f'{s}/{f - 1}.png']
    np.testing.assert_array_equal(e['au_intensity'], intensity)
    np.testing.assert_array_equal(e['au'], (intensity >= 2).astype(np.float32))
    assert (e['au_mask'] == 1).all() and e['landmarks'].shape == (66, 2)
    assert e['subject_name'].decode() == s
  _check_parts(splits)
  rates = b.info.metadata['train_occurrence_rates']
  for fold in (1, 2, 3):
    train = [sorted(SUBJECTS[k])[0] for k in (1, 2, 3) if k != fold]
    ys = np.stack([truth[(s, f)] >= 2 for s in train for f in FRAMES if (s, f) in truth])
    np.testing.assert_allclose(rates[f'fold{fold}'], ys.mean(0), rtol=1e-6)


def test_official_missing_au_rows_are_masked_and_bad_lines_raise(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual)
  path = os.path.join(manual, 'ActionUnit_Labels', 'SN004', 'SN004_au9.txt')
  lines = open(path).read().splitlines()
  open(path, 'w').write('\n'.join(lines[:1] + lines[2:]) + '\n')  # frame 2 of AU9 missing
  b = _build('official', manual, str(tmp_path / 'data'))
  e = _all(_by_split(b))['SN004/1.png']
  j = labels.DISFA_AUS.index(9)
  assert e['au_mask'][j] == 0 and e['au_intensity'][j] == -1 and e['au'][j] == 0
  assert e['au_mask'].sum() == 7
  open(path, 'w').write('1,2\n2,7\n')
  with pytest.raises(ValueError, match=r'SN004_au9\.txt:2: intensity 7; expected an integer 0-5'):
    _build('official', manual, str(tmp_path / 'data2'))
  open(path, 'w').write('1,2,3\n')
  with pytest.raises(ValueError, match=r'SN004_au9\.txt:1: 3 columns; expected "frame,intensity"'):
    _build('official', manual, str(tmp_path / 'data3'))


def test_official_bad_layouts(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual)
  os.makedirs(os.path.join(manual, 'ActionUnit_Labels', 'SN099'))
  with pytest.raises(ValueError, match=r"SN099: subject 'SN099' is outside the DISFA protocol"):
    _build('official', manual, str(tmp_path / 'd1'))
  os.rmdir(os.path.join(manual, 'ActionUnit_Labels', 'SN099'))
  os.remove(os.path.join(manual, 'ActionUnit_Labels', 'SN001', 'SN001_au26.txt'))
  with pytest.raises(ValueError, match=r'SN001_au26\.txt does not exist'):
    _build('official', manual, str(tmp_path / 'd2'))
  manual2 = str(tmp_path / 'manual2')
  _write_official(manual2)
  for name in os.listdir(os.path.join(manual2, 'img', 'SN002')):
    os.remove(os.path.join(manual2, 'img', 'SN002', name))
  os.makedirs(os.path.join(manual2, 'Videos_LeftCamera'))
  open(os.path.join(manual2, 'Videos_LeftCamera', 'LeftVideoSN002_comp.avi'), 'wb').close()
  with pytest.raises(ValueError, match=r'img/SN002: no frames .*Found the video .*ffmpeg'):
    _build('official', manual2, str(tmp_path / 'd3'))
  with pytest.raises(ValueError,
                     match=r"megraphau_lists' needs \['DISFA_train_img_path_fold1.txt'"):
    _build('megraphau_lists', manual2, str(tmp_path / 'd4'))


def _write_lists(root: str, layout: str) -> dict[str, np.ndarray]:
  list_dir = os.path.join(root, 'list')
  os.makedirs(list_dir, exist_ok=True)
  truth, parts = {}, {}
  lm49 = mean_face.MEAN_FACE_68[schemes.IDX_49_IN_68]
  for k, subjects in SUBJECTS.items():
    parts[k] = []
    for s in subjects:
      for i in (0, 1):
        rel = f'{s}/{i}.png'
        # JAA-Net images are its 200x200 aligned faces (stored as they are, no re-alignment).
        _write_image(
            os.path.join(root, 'img' if layout == 'megraphau_lists' else 'imgs', rel),
            base.stable_hash(rel), size=48 if layout == 'megraphau_lists' else 200)
        row = np.array([(base.stable_hash(rel) >> j) % 2 for j in range(8)], np.float32)
        truth[rel] = row
        parts[k].append((rel, row))
  line = lambda r: ' '.join(str(int(v)) for v in r)
  if layout == 'megraphau_lists':
    for fold in (1, 2, 3):
      sets = {'test': parts[fold], 'train': [e for k in (1, 2, 3) if k != fold for e in parts[k]]}
      for split, es in sets.items():
        with open(os.path.join(list_dir, f'DISFA_{split}_img_path_fold{fold}.txt'), 'w') as fh:
          fh.write(''.join(p + '\n' for p, _ in es))
        with open(os.path.join(list_dir, f'DISFA_{split}_label_fold{fold}.txt'), 'w') as fh:
          fh.write(''.join(line(r) + '\n' for _, r in es))
  else:
    for k, es in parts.items():
      files = {
          'path': [p for p, _ in es],
          'AUoccur': [line(r) for _, r in es],
          'land': [' '.join(f'{v:.3f}' for v in lm49.reshape(-1))] * len(es),
          'biocular': ['20'] * len(es)
      }
      for suffix, lines in files.items():
        with open(os.path.join(list_dir, f'DISFA_part{k}_{suffix}.txt'), 'w') as fh:
          fh.write('\n'.join(lines) + '\n')
  return truth


@pytest.mark.parametrize('layout,num_landmarks', [('megraphau_lists', 0), ('jaanet_lists', 49)])
def test_list_layouts(tmp_path, layout, num_landmarks):
  lm49 = mean_face.MEAN_FACE_68[schemes.IDX_49_IN_68]
  manual = str(tmp_path / 'manual')
  truth = _write_lists(manual, layout)
  b = _build(layout, manual, str(tmp_path / 'data'))
  splits = _by_split(b)
  got = _all(splits)
  assert set(got) == set(truth)
  for rel, row in truth.items():
    np.testing.assert_array_equal(got[rel]['au'], row)
    assert got[rel]['landmarks'].shape == (num_landmarks, 2)
    assert (got[rel]['au_intensity'] == -1).all()
    if num_landmarks:
      np.testing.assert_allclose(got[rel]['landmarks'], lm49, atol=1e-3)
  _check_parts(splits)
  assert b.info.metadata['num_landmarks'] == num_landmarks


def test_megraphau_subject_in_wrong_fold(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_lists(manual, 'megraphau_lists')
  path = os.path.join(manual, 'list', 'DISFA_test_img_path_fold2.txt')
  lines = open(path).read().splitlines()
  _write_image(os.path.join(manual, 'img', 'SN009', '7.png'), 0)
  lines[2] = 'SN009/7.png'
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(
      ValueError, match=r"DISFA_test_img_path_fold2\.txt:3: subject 'SN009' is listed in "
      r'part 2 but the protocol puts it in part 3'):
    _build('megraphau_lists', manual, str(tmp_path / 'data'))


@pytest.mark.parametrize('layout', ['official', 'megraphau_lists', 'jaanet_lists'])
def test_detect_layouts_finds_each_layout(tmp_path, layout):
  manual = str(tmp_path / 'manual')
  if layout == 'official':
    _write_official(manual)
  else:
    _write_lists(manual, layout)
  assert disfa.Disfa.detect_layouts(manual) == [layout]
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert disfa.Disfa.detect_layouts(str(empty)) == []
  assert 'ActionUnit_Labels' in disfa.Disfa.layout_requirements()['official']


def test_official_empty_au_file_and_counted_missing_labels(tmp_path):
  """An empty AU file is an error; a frame absent from one AU file is a counted mask."""
  manual = str(tmp_path / 'manual')
  _write_official(manual)
  path = os.path.join(manual, 'ActionUnit_Labels', 'SN004', 'SN004_au1.txt')
  open(path, 'w').close()
  with pytest.raises(ValueError, match=r'SN004_au1\.txt:1: empty file; expected "frame,intensity"'):
    _build('official', manual, str(tmp_path / 'd1'))
  open(path, 'w').write('2,1\n3,0\n')  # frame 1 absent from AU1 only
  b = _build('official', manual, str(tmp_path / 'd2'))
  assert b.info.metadata['skipped'] == {'missing_frame': 1, 'missing_au_label': 1}
  e = _all(_by_split(b))['SN004/0.png']
  assert e['au_mask'][0] == 0 and e['au_mask'][1:].all()
  open(path, 'w').write('1,2\n2,1\n1,0\n')
  with pytest.raises(ValueError, match=r'SN004_au1\.txt:3: frame 1 appears twice \(first at '
                     r'.*SN004_au1\.txt:1\)'):
    _build('official', manual, str(tmp_path / 'd3'))
  open(path, 'w').write('1,2\n2.5,1\n')
  with pytest.raises(ValueError, match=r"SN004_au1\.txt:2: expected a frame number .* '2\.5'"):
    _build('official', manual, str(tmp_path / 'd4'))


@pytest.mark.parametrize('payload,match', [
    (b'', r'cannot read the \.mat file \(MatReadError'),
    (b'not a mat file at all, just some text' * 4, r'cannot read the \.mat file'),
])
def test_read_landmark_mat_errors_name_the_file(tmp_path, payload, match):
  p = str(tmp_path / 'SN001_0000_lm.mat')
  open(p, 'wb').write(payload)
  with pytest.raises(ValueError, match=r'SN001_0000_lm\.mat: ' + match):
    disfa.read_landmark_mat(p)
  scipy.io.savemat(p, {'pts': np.full((66, 2), np.nan)})
  with pytest.raises(ValueError, match=r'SN001_0000_lm\.mat: "pts" holds non-finite'):
    disfa.read_landmark_mat(p)

"""Tests of the Aff-Wild2 builder on fake data written in the official layout."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from faujax.data import aff_wild2
from faujax.data import expression_builder_base as base

EXPR_HEADER = 'Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other'
# Aff-Wild2 code -> EXPRESSIONS_7 index (None: Other).
AW_TO_F7 = {0: 0, 1: 6, 2: 5, 3: 4, 4: 1, 5: 2, 6: 3, 7: None}

# video -> (set, expression codes per frame, VA per frame (None -> -5), missing frames)
VIDEOS = {
    'v1': ('Train_Set', [0, 1, -1, 4, 7, 6], [(0.1, 0.2), None, (0.3, -0.4), (0.5, 0.5),
                                             (0.0, 0.0), (-0.2, 0.9)], {4}),
    'v2_left': ('Train_Set', [2, 3, 5], [(0.6, 0.1), (0.7, 0.2), None], set()),
    'v2_right': ('Train_Set', [5, -1], [(-0.6, 0.3), (-0.7, -0.1)], set()),
    'v3': ('Train_Set', [6, 6, 0], [(0.2, 0.2), (0.2, 0.3), (0.2, 0.4)], set()),
    'v4': ('Train_Set', [1], None, set()),  # expression only
    'val1': ('Validation_Set', [4, 0], [(0.9, -0.9), None], set()),
}


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('aw2_manual')
  for video, (set_dir, codes, va, missing) in VIDEOS.items():
    frames = root / 'cropped_aligned' / video
    frames.mkdir(parents=True)
    for i in range(len(codes)):
      if i + 1 not in missing:
        Image.fromarray(np.full((16, 16, 3), 10 * i, np.uint8)).save(frames / f'{i + 1:05d}.jpg')
    (root / 'EXPR_Set' / set_dir).mkdir(parents=True, exist_ok=True)
    (root / 'EXPR_Set' / set_dir / f'{video}.txt').write_text(
        EXPR_HEADER + '\n' + '\n'.join(str(c) for c in codes) + '\n')
    if va is not None:
      (root / 'VA_Set' / set_dir).mkdir(parents=True, exist_ok=True)
      (root / 'VA_Set' / set_dir / f'{video}.txt').write_text('valence,arousal\n' + '\n'.join(
          '-5,-5' if x is None else f'{x[0]},{x[1]}' for x in va) + '\n')
  return root


def _expected(keep: str, set_dir: str):
  """Reference: file_name -> (expression, va or None) by a direct loop over VIDEOS."""
  out = {}
  for video, (s, codes, va, missing) in VIDEOS.items():
    if s != set_dir or (keep == 'both' and va is None) or (keep == 'va' and va is None):
      continue
    for i, code in enumerate(codes):
      e = None if code == -1 else AW_TO_F7[code]
      v = None if va is None else va[i]
      if keep in ('both', 'expr') and e is None or keep in ('both', 'va') and v is None:
        continue
      if i + 1 in missing:
        continue
      out[f'cropped_aligned/{video}/{i + 1:05d}.jpg'] = (-1 if e is None else e, v)
  return out


def _in_validation(group: str, fraction: float) -> bool:
  return int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], 'big') / 2.0**64 < fraction


def _build(manual_dir, data_dir, keep, fraction=0.5):
  config = aff_wild2.AffWild2Config(name=f'{keep}_f{fraction}', keep=keep, image_size=24,
                                    validation_fraction=fraction)
  builder = aff_wild2.AffWild2(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir), compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def _load(builder, split):
  if split not in builder.info.splits:
    return {}
  return {ex['file_name'].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


@pytest.mark.parametrize('keep', ['both', 'expr', 'va'])
def test_configs_keep_the_right_frames(manual_dir, tmp_path, keep):
  builder = _build(manual_dir, tmp_path, keep)
  train, val, test = (_load(builder, s) for s in ('train', 'validation', 'test'))
  expected_train = _expected(keep, 'Train_Set')
  assert set(train) | set(val) == set(expected_train) and not set(train) & set(val)
  groups_val = {aff_wild2.video_group(n.split('/')[1]) for n in val}
  groups_train = {aff_wild2.video_group(n.split('/')[1]) for n in train}
  assert not groups_val & groups_train  # v2_left / v2_right stay together
  assert all(_in_validation(g, 0.5) for g in groups_val)
  assert not any(_in_validation(g, 0.5) for g in groups_train)
  assert set(test) == set(_expected(keep, 'Validation_Set'))
  for name, ex in {**train, **val, **test}.items():
    e, v = {**expected_train, **_expected(keep, 'Validation_Set')}[name]
    assert ex['expression'] == e
    assert ex['image'].shape == (24, 24, 3)
    np.testing.assert_array_equal(ex['landmarks'], np.zeros((68, 2)))
    if v is None:
      assert ex['va_mask'] == 0
    else:
      assert ex['va_mask'] == 1
      np.testing.assert_allclose([ex['valence'], ex['arousal']], v, atol=1e-6)
  meta = builder.info.metadata
  assert meta['has_landmarks'] is False
  counts = [0] * 7
  for ex in train.values():
    if ex['expression'] >= 0:
      counts[ex['expression']] += 1
  assert meta['class_counts'] == counts
  # v1 frame 4 (labelled in every config) is missing on disk.
  assert meta['skipped']['annotated frame missing from cropped_aligned'] == 1
  assert meta['num_examples']['test'] == len(test)


def test_missing_frame_counted_for_labelled_frame(manual_dir, tmp_path):
  import shutil
  root = tmp_path / 'manual'
  shutil.copytree(manual_dir, root)
  (root / 'cropped_aligned' / 'v3' / '00002.jpg').unlink()
  builder = _build(root, tmp_path / 'data', 'expr', fraction=0.0)
  meta = builder.info.metadata
  assert meta['skipped']['annotated frame missing from cropped_aligned'] == 2  # + v1/00004
  assert 'cropped_aligned/v3/00002.jpg' not in _load(builder, 'train')


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


@pytest.mark.parametrize('text, message', [
    ('Neutral,Anger,Joy\n0\n', "line 1: unknown expression name.*'joy'"),
    (EXPR_HEADER + '\n0\n9\n', 'line 3: unknown expression code 9'),
    (EXPR_HEADER + '\n0\nx\n', 'line 3: expected an integer expression code'),
])
def test_bad_expr_files(tmp_path, text, message):
  path = _write(tmp_path / 'EXPR_Set' / 'Train_Set' / 'a.txt', text)
  with pytest.raises(ValueError, match=message) as err:
    aff_wild2.read_expr_file(aff_wild2.epath.Path(path))
  assert 'a.txt' in str(err.value)


@pytest.mark.parametrize('text, message', [
    ('val,aro\n0,0\n', 'line 1: expected the header'),
    ('valence,arousal\n0.1,0.2\n0.3\n', 'line 3: expected "valence,arousal"'),
    ('valence,arousal\n1.5,0.2\n', r'line 2: valence/arousal must be in \[-1, 1\]'),
])
def test_bad_va_files(tmp_path, text, message):
  path = _write(tmp_path / 'VA_Set' / 'Train_Set' / 'a.txt', text)
  with pytest.raises(ValueError, match=message):
    aff_wild2.read_va_file(aff_wild2.epath.Path(path))


def test_expr_file_mapping_and_layout_errors(tmp_path):
  path = _write(tmp_path / 'e.txt', EXPR_HEADER + '\n' + '\n'.join(
      str(c) for c in range(-1, 8)) + '\n')
  assert aff_wild2.read_expr_file(aff_wild2.epath.Path(path)) == [None] + [
      aff_wild2.OTHER if AW_TO_F7[c] is None else AW_TO_F7[c] for c in range(8)]
  builder = aff_wild2.AffWild2(data_dir=str(tmp_path / 'data'))
  (tmp_path / 'manual' / 'cropped_aligned').mkdir(parents=True)
  with pytest.raises(ValueError, match=r'EXPR_Set/Train_Set'):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / 'manual')))
  assert base.stable_unit_hash('x') == base.stable_unit_hash('x')


# --------------------------------------------------------------------------- issue 20
@pytest.mark.parametrize('reader, header, body, line, message', [
    # A blank line inside would shift every later frame's label by one.
    ('expr', EXPR_HEADER, '0\n1\n\n4\n5\n', 4, 'blank line inside the file'),
    ('expr', EXPR_HEADER, '0\n   \n4\n', 3, 'blank line inside the file'),
    ('va', 'valence,arousal', '0.1,0.1\n\n0.3,0.3\n', 3, 'blank line inside the file'),
    # A form feed / NEL used to be a line break for str.splitlines (one more frame).
    ('expr', EXPR_HEADER, '0\n1\x0c4\n', 3, r'control character \(U\+000C\)'),
    ('expr', EXPR_HEADER, '0\n1\x854\n', 3, r'control character \(U\+0085\)'),
    ('expr', EXPR_HEADER, '0\n1\r4\n', 3, 'carriage return'),
    ('expr', EXPR_HEADER, '0\n\ufeff4\n', 3, 'byte-order mark'),
    ('expr', EXPR_HEADER, '0\n4.0\n', 3, 'expected an integer expression code'),
    ('expr', EXPR_HEADER, '0\n1_0\n', 3, 'expected an integer expression code'),
    ('expr', EXPR_HEADER, '0\n\u0663\n', 3, 'expected an integer expression code'),
    ('expr', 'Neutral,Happy,Happiness', '0\n', 1, 'names a class more than once'),
    ('expr', 'Neutral,Other,Other', '0\n', 1, 'names a class more than once'),
    ('expr', '', '0\n', 1, 'expected a header line'),
    # -5 marks an unlabelled frame only as a pair; nan / inf / overflow are errors.
    ('va', 'valence,arousal', '0.1,0.1\n-5,0.3\n', 3, r'or both -5 \(unlabelled\)'),
    ('va', 'valence,arousal', '0.1,nan\n', 2, 'a valence / arousal value'),
    ('va', 'valence,arousal', '0.1,-inf\n', 2, 'a valence / arousal value'),
    ('va', 'valence,arousal', '0.1,1e309\n', 2, 'finite number'),
    ('va', 'valence,arousal', '0.1,0.2,0.3\n', 2, 'expected "valence,arousal"'),
])
def test_annotation_faults_name_file_and_line(tmp_path, reader, header, body, line, message):
  path = _write(tmp_path / 'a.txt', header + '\n' + body)
  read = aff_wild2.read_expr_file if reader == 'expr' else aff_wild2.read_va_file
  with pytest.raises(base.AnnotationError, match=message) as err:
    read(aff_wild2.epath.Path(path))
  assert err.value.line == line and f'a.txt, line {line}: ' in str(err.value)


def test_non_utf8_and_bom_and_trailing_blank_lines(tmp_path):
  path = aff_wild2.epath.Path(tmp_path / 'a.txt')
  path.write_bytes(b'\xef\xbb\xbf' + (EXPR_HEADER + '\r\n0\r\n4\r\n\r\n\n').encode())
  assert aff_wild2.read_expr_file(path) == [0, 1]  # BOM, CRLF, blank lines at the end
  path.write_bytes((EXPR_HEADER + '\n0\n').encode() + b'4\xff\n')
  with pytest.raises(base.AnnotationError, match=r'a.txt, line 3: byte 0xff at column 2'):
    aff_wild2.read_expr_file(path)
  path.write_bytes('valence,arousal\n0.1,0.2\n-5,-5\n'.encode('utf-16'))
  with pytest.raises(base.AnnotationError, match='line 1: .*UTF-16'):
    aff_wild2.read_va_file(path)


def test_builder_rejects_a_video_in_both_sets_and_counts_every_skip(manual_dir, tmp_path,
                                                                   capsys):
  import shutil
  root = tmp_path / 'manual'
  shutil.copytree(manual_dir, root)
  # v4 has no VA file: in config 'both' its frame is a counted skip (it used to vanish).
  builder = _build(root, tmp_path / 'd1', 'both', fraction=0.0)
  skipped = builder.info.metadata['skipped']
  assert skipped["frames of videos without the annotation file(s) config 'both' needs"] == 1
  assert skipped['frames with expression -1 (unlabelled)'] == 2  # v1 3, v2_right 2
  assert skipped['frames of class Other (no 7-class label)'] == 1  # v1 5
  assert skipped['frames with valence/arousal -5 (unlabelled)'] == 3  # v1 2, v2_left 3, val1 2
  assert skipped['annotated frame missing from cropped_aligned'] == 1  # v1 4
  out = capsys.readouterr().out
  assert 'aff_wild2: built 9 example(s)' in out
  assert 'skipped 1 example(s): frames of class Other (no 7-class label) (e.g. ' \
         'EXPR_Set/Train_Set/v1.txt:6)' in out
  assert 'VA_Set/Train_Set/v1.txt:3' in out  # the -5 of frame 2, named in its VA file
  # Every annotated frame is kept or counted (none vanishes).
  annotated = sum(len(codes) for _, codes, _, _ in VIDEOS.values())
  assert sum(builder.info.metadata['num_examples'].values()) + sum(skipped.values()) == annotated
  _write(root / 'EXPR_Set' / 'Validation_Set' / 'v3.txt', EXPR_HEADER + '\n0\n')
  with pytest.raises(base.AnnotationError, match=r'Validation_Set/v3.txt, line 1: video v3 is '
                                                 r'annotated in .*Train_Set/v3.txt too'):
    _build(root, tmp_path / 'd2', 'expr', fraction=0.0)


def test_blank_line_inside_fails_the_build_before_encoding(manual_dir, tmp_path):
  import shutil
  root = tmp_path / 'manual'
  shutil.copytree(manual_dir, root)
  _write(root / 'EXPR_Set' / 'Train_Set' / 'v3.txt', EXPR_HEADER + '\n6\n\n0\n')
  with pytest.raises(base.AnnotationError, match=r'Train_Set/v3.txt, line 3: blank line'):
    _build(root, tmp_path / 'd', 'expr', fraction=0.0)

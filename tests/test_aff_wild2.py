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
      AW_TO_F7[c] for c in range(8)]
  builder = aff_wild2.AffWild2(data_dir=str(tmp_path / 'data'))
  (tmp_path / 'manual' / 'cropped_aligned').mkdir(parents=True)
  with pytest.raises(ValueError, match=r'EXPR_Set/Train_Set'):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / 'manual')))
  assert base.stable_unit_hash('x') == base.stable_unit_hash('x')

"""Tests of the EmotioNet builder on fake data written in the official and the list layouts."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import au_builder_base as base
from faujax.data import emotionet

NAMES = [f'img_{i:03d}.jpg' for i in range(40)]


def _write_image(path: str, seed: int, shape=(40, 56)) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 255, shape + (3,), dtype=np.uint8)).save(path)


def _row(name: str) -> np.ndarray:
  h = base.stable_hash(name)
  return np.array([999 if (h >> i) % 5 == 0 else (h >> (i + 7)) % 2 for i in range(12)], np.float32)


def _write_official(root: str) -> dict[str, np.ndarray]:
  """Challenge-style csv (URL column, 'AU 1' headers, extra columns); 2 images never fetched."""
  os.makedirs(os.path.join(root, 'annotations'))
  header = ['URL'] + [f'AU {a}' for a in labels.EMOTIONET_AUS] + ['AU 7'] + ['source']
  lines = [','.join(header)]
  truth = {}
  for i, name in enumerate(NAMES):
    row = _row(name)
    lines.append(','.join([f'http://example.org/faces/{name}?s=1'] + [str(int(v)) for v in row] +
                          ['0', 'web']))
    if i in (5, 6):
      continue  # URL rot: image absent
    _write_image(os.path.join(root, 'images', name), i)
    truth[name] = row
  with open(os.path.join(root, 'annotations', 'emotionet_au.csv'), 'w') as fh:
    fh.write('\n'.join(lines) + '\n')
  return truth


def _build(config, manual, data_dir):
  b = tfds.builder(f'emotionet/{config}', data_dir=data_dir)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
  return b


def _by_split(b):
  return {split: list(tfds.as_numpy(b.as_dataset(split=split))) for split in b.info.splits}


def test_hash_partition_is_deterministic_and_balanced():
  names = [f'x{i}.jpg' for i in range(3000)]
  parts = np.array([base.part_by_hash(n) for n in names])
  assert set(parts) == {1, 2, 3}
  assert all(abs((parts == k).mean() - 1 / 3) < 0.04 for k in (1, 2, 3))
  val = np.mean([base.validation_by_hash(n) for n in names])
  assert abs(val - 0.1) < 0.03
  assert base.part_by_hash('img_001.jpg') == base.part_by_hash('img_001.jpg')
  assert emotionet.image_name('http://a.org/b/c%20d.jpg?q=1') == 'c d.jpg'


def test_official_layout(tmp_path):
  manual = str(tmp_path / 'manual')
  truth = _write_official(manual)
  b = _build('official', manual, str(tmp_path / 'data'))
  meta = b.info.metadata
  assert meta['skipped'] == {'missing_image': 2}
  splits = _by_split(b)
  seen = set()
  val_names = {
      k: base.hash_validation_names([n for n in truth if base.part_by_hash(n) == k])
      for k in (1, 2, 3)
  }
  for split, examples in splits.items():
    k = int(split[4])
    for e in examples:
      name = e['image_path'].decode()
      assert name not in seen
      seen.add(name)
      assert base.part_by_hash(name) == k  # the documented partition
      assert (name in val_names[k]) == split.endswith('_val')
      row = truth[name]
      np.testing.assert_array_equal(e['au'], np.where(row == 999, 0, row))
      np.testing.assert_array_equal(e['au_mask'], (row != 999).astype(np.float32))
      assert e['subject'] == -1 and e['subject_name'].decode() == name
      assert e['image'].shape == (200, 200, 3) and e['landmarks'].shape == (0, 2)
  assert seen == set(truth)
  for fold in (1, 2, 3):
    train = [
        truth[n]
        for n in truth
        if base.part_by_hash(n) != fold and n not in val_names[base.part_by_hash(n)]
    ]
    ys = np.stack(train)
    known = (ys != 999).sum(0)
    want = np.where(known > 0, (ys == 1).sum(0) / np.maximum(known, 1), np.nan)
    np.testing.assert_allclose(meta['train_occurrence_rates'][f'fold{fold}'], want, rtol=1e-6)


def test_official_bad_input(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual)
  path = os.path.join(manual, 'annotations', 'emotionet_au.csv')
  lines = open(path).read().splitlines()
  good = list(lines)
  cells = lines[3].split(',')
  cells[2] = '2'
  lines[3] = ','.join(cells)
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=r'emotionet_au\.csv:4: AU2 is 2; expected 0, 1 or 999'):
    _build('official', manual, str(tmp_path / 'd1'))
  lines = list(good)
  lines[7] = lines[7] + ',1'
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=r'emotionet_au\.csv:8: 16 columns; expected 15'):
    _build('official', manual, str(tmp_path / 'd2'))
  lines = list(good)
  lines[0] = lines[0].replace('AU 43', 'notes')
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=r'emotionet_au\.csv:1: no column for AU \[43\]'):
    _build('official', manual, str(tmp_path / 'd3'))
  lines = good + [good[2]]
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(ValueError,
                     match=r'emotionet_au\.csv:42: image img_001\.jpg is annotated twice'):
    _build('official', manual, str(tmp_path / 'd4'))
  other = tmp_path / 'other_manual_dir'
  other.mkdir()
  (other / 'EmotioNet.xlsx').write_bytes(b'')
  with pytest.raises(ValueError, match=r'official EmotioNet layout needs annotations/\*\.csv'):
    _build('official', str(other), str(tmp_path / 'd5'))


def _write_lists(root: str, overlap: bool = False) -> dict[str, np.ndarray]:
  list_dir = os.path.join(root, 'list')
  os.makedirs(list_dir)
  truth = {}
  parts = {k: [] for k in (1, 2, 3)}
  for i, name in enumerate(NAMES[:24]):
    rel = f'batch{i % 2}/{name}'
    _write_image(os.path.join(root, 'img', rel), i)
    truth[rel] = _row(name)
    parts[1 + i % 3].append(rel)
  if overlap:
    parts[2].append(parts[1][0])
  for fold in (1, 2, 3):
    sets = {'test': parts[fold], 'train': [p for k in (1, 2, 3) if k != fold for p in parts[k]]}
    for split, paths in sets.items():
      with open(os.path.join(list_dir, f'EmotioNet_{split}_img_path_fold{fold}.txt'), 'w') as fh:
        fh.write(''.join(p + '\n' for p in paths))
      with open(os.path.join(list_dir, f'EmotioNet_{split}_label_fold{fold}.txt'), 'w') as fh:
        fh.write(''.join(' '.join(str(int(v)) for v in truth[p]) + '\n' for p in paths))
  return truth


def test_megraphau_lists_layout(tmp_path):
  manual = str(tmp_path / 'manual')
  truth = _write_lists(manual)
  b = _build('megraphau_lists', manual, str(tmp_path / 'data'))
  got = {}
  val_names = {
      k: base.hash_validation_names([r for r in truth if 1 + NAMES.index(r.split('/')[1]) % 3 == k])
      for k in (1, 2, 3)
  }
  for split, examples in _by_split(b).items():
    for e in examples:
      rel = e['image_path'].decode()
      assert rel not in got
      got[rel] = e
      i = NAMES.index(rel.split('/')[1])
      assert int(split[4]) == 1 + i % 3  # fold k's test list is part k
      assert (rel in val_names[int(split[4])]) == split.endswith('_val')
  assert set(got) == set(truth)
  for rel, row in truth.items():
    np.testing.assert_array_equal(got[rel]['au_mask'], (row != 999).astype(np.float32))


def test_megraphau_lists_overlapping_folds_raise(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_lists(manual, overlap=True)
  with pytest.raises(
      ValueError, match=r'EmotioNet_train_img_path_fold1\.txt:\d+: training entry .* shares '
      r'its image with the fold'):
    _build('megraphau_lists', manual, str(tmp_path / 'data'))


@pytest.mark.parametrize('layout', ['official', 'megraphau_lists'])
def test_detect_layouts_finds_each_layout(tmp_path, layout):
  manual = str(tmp_path / 'manual')
  if layout == 'official':
    _write_official(manual)
  else:
    _write_lists(manual)
  assert emotionet.Emotionet.detect_layouts(manual) == [layout]
  # EmotioNet has no JAA-Net layout: its files are neither detected nor listed.
  assert list(emotionet.Emotionet.layout_requirements()) == ['official', 'megraphau_lists']
  empty = tmp_path / 'empty'
  (empty / 'annotations').mkdir(parents=True)  # no csv in it: not the official layout
  assert emotionet.Emotionet.detect_layouts(str(empty)) == []


def test_official_names_outside_images_and_blank_rows_raise(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual)
  path = os.path.join(manual, 'annotations', 'emotionet_au.csv')
  good = open(path).read().splitlines()
  row = ',' + ','.join(['0'] * 12) + ',0,web'
  for url, match in (('http://h/..%2Fsecret.jpg', r"image file name '\.\./secret\.jpg'"),
                     ('http://h/..', r"image file name '\.\.'"),
                     ('http://h/%ff.jpg', r'cannot read an image file name'),
                     ('http://[h/x.jpg', r'cannot read an image file name')):
    open(path, 'w').write('\n'.join(good + [url + row]) + '\n')
    with pytest.raises(ValueError, match=r'emotionet_au\.csv:42: ' + match):
      _build('official', manual, str(tmp_path / 'd1'))
  open(path, 'w').write('\n'.join(good[:3] + [''] + good[3:]) + '\n')
  with pytest.raises(ValueError, match=r'emotionet_au\.csv:4: empty row inside the file'):
    _build('official', manual, str(tmp_path / 'd2'))
  dup = good[0].replace('AU 43', 'AU 43,AU43')
  open(path, 'w').write('\n'.join([dup] + [l + ',0' for l in good[1:]]) + '\n')
  with pytest.raises(ValueError, match=r"emotionet_au\.csv:1: AU 43 heads columns 13 \('AU 43'\) "
                     r"and 14 \('AU43'\)"):
    _build('official', manual, str(tmp_path / 'd3'))

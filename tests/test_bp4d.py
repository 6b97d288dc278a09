"""Tests of the BP4D builder on fake data written in the official and the list layouts."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import au_builder_base as base
from faujax.data import au_lists
from faujax.data import bp4d
from faujax.geometry import mean_face
from faujax.geometry import schemes

# 3 subjects per protocol part (so each part keeps 1 training subject and 2 validation subjects).
SUBJECTS = {1: ('F001', 'M007', 'F018'), 2: ('M011', 'F003', 'M010'), 3: ('F004', 'M003', 'F006')}
ALL_CSV_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28)
FRAMES = (11, 12)  # frame numbers written for each subject's task T1


def _face_landmarks(size: int = 48) -> np.ndarray:
  """The mean face (200 px frame) scaled into a size x size image: (68, 2)."""
  return mean_face.MEAN_FACE_68 * (size / mean_face.FRAME_SIZE)


def _write_image(path: str, seed: int, size: int = 48) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _labels_for(subject: str, frame: int) -> dict[int, int]:
  """Deterministic fake AU codes over every csv column (0/1, with some 9s)."""
  h = base.stable_hash(f'{subject}{frame}')
  return {a: (9 if (h >> i) % 7 == 0 else (h >> (i + 3)) % 2) for i, a in enumerate(ALL_CSV_AUS)}


def _write_official(root: str, with_missing: bool = True) -> dict[tuple[str, int], dict[int, int]]:
  """Writes frames, AU_OCC csv files and .pts landmarks; returns the codes by (subject, frame)."""
  occ = os.path.join(root, 'AUCoding', 'AU_OCC')
  os.makedirs(occ, exist_ok=True)
  codes = {}
  for subjects in SUBJECTS.values():
    for s in subjects:
      rows = ['Frame,' + ','.join(str(a) for a in ALL_CSV_AUS)]
      frames = FRAMES + ((13, 14, 15) if with_missing and s == 'F001' else ())
      for f in frames:
        c = _labels_for(s, f)
        if f == 14:  # every AU "not coded": skipped as all_labels_unknown
          c = {a: 9 for a in ALL_CSV_AUS}
        rows.append(f'{f},' + ','.join(str(c[a]) for a in ALL_CSV_AUS))
        if f in (13, 14):  # 13: listed in AU_OCC but no jpg (missing_frame); 14: all_labels_unknown
          continue
        _write_image(
            os.path.join(root, 'BP4D-training', s, 'T1', f'{f:04d}.jpg'),
            base.stable_hash(s) + f)
        if f == 15:  # a jpg without landmarks: skipped as missing_landmarks
          continue
        codes[(s, f)] = c
        lm_dir = os.path.join(root, 'landmarks', s, 'T1')
        os.makedirs(lm_dir, exist_ok=True)
        lm = _face_landmarks()
        au_lists.write_pts(
            os.path.join(lm_dir, f'{f:04d}.pts'), lm if s != 'M007' else lm[schemes.IDX_49_IN_68])
      with open(os.path.join(occ, f'{s}_T1.csv'), 'w') as fh:
        fh.write('\n'.join(rows) + '\n')
  return codes


def _expected(c: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
  raw = np.array([c[a] for a in labels.BP4D_AUS], np.float32)
  return np.where(raw == 9, 0, raw), (raw != 9).astype(np.float32)


def _build(config: str, manual: str, data_dir: str):
  b = tfds.builder(f'bp4d/{config}', data_dir=data_dir)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
  return b


def _by_split(b):
  return {split: list(tfds.as_numpy(b.as_dataset(split=split))) for split in b.info.splits}


def _check_parts(splits, n_val_subjects=2):
  """Parts hold only their protocol subjects, are subject-exclusive; val = the last 2 sorted."""
  seen = {}
  for k in (1, 2, 3):
    train = {e['subject_name'].decode() for e in splits[f'part{k}']}
    val = {e['subject_name'].decode() for e in splits[f'part{k}_val']}
    assert not train & val
    subjects = sorted(SUBJECTS[k])
    assert val == set(subjects[-n_val_subjects:]) and train == set(subjects[:-n_val_subjects])
    for s in train | val:
      assert s not in seen, f'{s} in part {seen.get(s)} and {k}'
      seen[s] = k
      assert s in bp4d.PARTS[k]


def test_protocol_parts_are_a_partition_of_41_subjects():
  all_parts = bp4d.PARTS[1] + bp4d.PARTS[2] + bp4d.PARTS[3]
  assert len(all_parts) == len(set(all_parts)) == 41
  assert len(bp4d.PARTS[3]) == 13
  assert bp4d.TEST_PART_OF_FOLD == {1: 3, 2: 2, 3: 1}


def test_official_layout(tmp_path):
  manual = str(tmp_path / 'manual')
  codes = _write_official(manual)
  b = _build('official', manual, str(tmp_path / 'data'))
  meta = b.info.metadata
  assert meta['skipped'] == {'all_labels_unknown': 1, 'missing_frame': 1, 'missing_landmarks': 1}
  assert meta['num_landmarks'] == 49 and meta['aus'] == list(labels.BP4D_AUS)
  n = 0
  splits = _by_split(b)
  for examples in splits.values():
    for e in examples:
      s = e['subject_name'].decode()
      f = int(os.path.splitext(os.path.basename(e['image_path'].decode()))[0])
      au, mask = _expected(codes[(s, f)])
      np.testing.assert_array_equal(e['au'], au)
      np.testing.assert_array_equal(e['au_mask'], mask)
      assert (e['au_intensity'] == -1).all()
      assert e['image'].shape == (200, 200, 3) and e['landmarks'].shape == (49, 2)
      assert e['subject'] == b.subject_names().index(s)
      assert e['expression'] == -1
      # The aligned eye centres are level and inside the face (JAA-Net alignment).
      lm = e['landmarks']
      r_eye, l_eye = lm[19:25].mean(0), lm[25:31].mean(0)
      assert abs(r_eye[1] - l_eye[1]) < 0.5 and 40 < r_eye[0] < l_eye[0] < 160
      n += 1
  assert n == len(codes) == 18
  _check_parts(splits)
  # Metadata survives a reload from disk; rates = positives / known over the fold's train subjects.
  b2 = tfds.builder('bp4d/official', data_dir=str(tmp_path / 'data'))
  rates = b2.info.metadata['train_occurrence_rates']
  for fold, test_part in bp4d.TEST_PART_OF_FOLD.items():
    train_subjects = [sorted(SUBJECTS[k])[0] for k in (1, 2, 3) if k != test_part]
    ys = [_expected(codes[(s, f)]) for s in train_subjects for f in FRAMES]
    pos = sum(y * m for y, m in ys)
    known = sum(m for _, m in ys)
    want = np.where(known > 0, pos / np.maximum(known, 1), 0.0)  # 0.0 where nothing is known
    np.testing.assert_allclose(rates[f'fold{fold}'], want, rtol=1e-6)
  assert b2.info.metadata['test_part_of_fold'] == {'1': 3, '2': 2, '3': 1}


def _write_megraphau(root: str, tamper=None) -> dict[str, np.ndarray]:
  """ME-GraphAU lists: fold k's test list = part TEST_PART_OF_FOLD[k]; labels may hold 9."""
  list_dir = os.path.join(root, 'list')
  os.makedirs(list_dir, exist_ok=True)
  by_part, truth = {}, {}
  for k, subjects in SUBJECTS.items():
    entries = []
    for s in subjects:
      for f in FRAMES:
        rel = f'{s}/T1/{f}.jpg'
        _write_image(os.path.join(root, 'img', rel), base.stable_hash(rel), size=40)
        row = np.array([(base.stable_hash(rel) >> i) % 2 for i in range(12)], np.float32)
        if f == 12:
          row[3] = 9
        truth[rel] = row
        entries.append((rel, row))
    by_part[k] = entries
  for fold, test_part in bp4d.TEST_PART_OF_FOLD.items():
    test = by_part[test_part]
    train = [e for k, es in by_part.items() if k != test_part for e in es]
    for split, es in (('train', train), ('test', test)):
      paths = [p for p, _ in es]
      rows = [' '.join(str(int(v)) for v in r) for _, r in es]
      if tamper is not None:
        paths, rows = tamper(fold, split, paths, rows)
      with open(os.path.join(list_dir, f'BP4D_{split}_img_path_fold{fold}.txt'), 'w') as fh:
        fh.write('\n'.join(paths) + '\n')
      with open(os.path.join(list_dir, f'BP4D_{split}_label_fold{fold}.txt'), 'w') as fh:
        fh.write('\n'.join(rows) + '\n')
    with open(os.path.join(list_dir, f'BP4D_train_weight_fold{fold}.txt'), 'w') as fh:
      fh.write(' '.join(['1.0'] * 12) + '\n')
  return truth


def test_megraphau_lists_layout(tmp_path):
  manual = str(tmp_path / 'manual')
  truth = _write_megraphau(manual)
  b = _build('megraphau_lists', manual, str(tmp_path / 'data'))
  splits = _by_split(b)
  got = {e['image_path'].decode(): e for examples in splits.values() for e in examples}
  assert set(got) == set(truth)
  for rel, row in truth.items():
    e = got[rel]
    np.testing.assert_array_equal(e['au'], np.where(row == 9, 0, row))
    np.testing.assert_array_equal(e['au_mask'], (row != 9).astype(np.float32))
    assert e['landmarks'].shape == (0, 2) and e['image'].shape == (200, 200, 3)
  _check_parts(splits)
  assert b.info.metadata['num_landmarks'] == 0


def _write_jaanet(root: str, bad_subject_part: int | None = None) -> dict[str, np.ndarray]:
  list_dir = os.path.join(root, 'list')
  os.makedirs(list_dir, exist_ok=True)
  truth = {}
  lm = _face_landmarks(40)[schemes.IDX_49_IN_68]
  for k, subjects in SUBJECTS.items():
    if bad_subject_part == k:
      subjects = subjects[:2] + (SUBJECTS[1 + k % 3][0],)  # a subject of another part
    paths, lands, bio, occ = [], [], [], []
    for s in subjects:
      for f in FRAMES:
        rel = f'{s}/T1/{f}.jpg'
        size = 200 if f == 11 else 48  # 200x200: taken as aligned; 48x48: aligned by the builder
        _write_image(os.path.join(root, 'imgs', rel), base.stable_hash(rel), size=size)
        pts = lm * (size / 40)
        row = np.array([(base.stable_hash(rel) >> i) % 2 for i in range(12)], np.float32)
        truth[rel] = (row, pts, size)
        paths.append(rel)
        lands.append(' '.join(f'{v:.4f}' for v in pts.reshape(-1)))
        bio.append('20.0')
        occ.append(' '.join(str(int(v)) for v in row))
    for suffix, lines in (('path', paths), ('land', lands), ('biocular', bio), ('AUoccur', occ)):
      with open(os.path.join(list_dir, f'BP4D_part{k}_{suffix}.txt'), 'w') as fh:
        fh.write('\n'.join(lines) + '\n')
  return truth


def test_jaanet_lists_layout(tmp_path):
  manual = str(tmp_path / 'manual')
  truth = _write_jaanet(manual)
  b = _build('jaanet_lists', manual, str(tmp_path / 'data'))
  splits = _by_split(b)
  got = {e['image_path'].decode(): e for examples in splits.values() for e in examples}
  assert set(got) == set(truth)
  for rel, (row, pts, size) in truth.items():
    e = got[rel]
    np.testing.assert_array_equal(e['au'], row)
    assert (e['au_mask'] == 1).all()
    if size == 200:  # stored as is
      np.testing.assert_allclose(e['landmarks'], pts, atol=1e-3)
    else:  # aligned: a similarity transform, eyes level
      r_eye, l_eye = e['landmarks'][19:25].mean(0), e['landmarks'][25:31].mean(0)
      assert abs(r_eye[1] - l_eye[1]) < 0.5
  _check_parts(splits)


# ------------------------------------------------------------------ bad input


def test_official_wrong_column_count_names_file_and_line(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual, with_missing=False)
  path = os.path.join(manual, 'AUCoding', 'AU_OCC', 'M010_T1.csv')
  lines = open(path).read().splitlines()
  lines[2] = lines[2] + ',0'
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=r'M010_T1\.csv:3: .*expected 24'):
    _build('official', manual, str(tmp_path / 'data'))


def test_official_bad_code_and_missing_au_column(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual, with_missing=False)
  path = os.path.join(manual, 'AUCoding', 'AU_OCC', 'F003_T1.csv')
  lines = open(path).read().splitlines()
  cells = lines[1].split(',')
  cells[1] = '5'  # the AU1 column
  lines[1] = ','.join(cells)
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=r'F003_T1\.csv:2: AU code 5'):
    _build('official', manual, str(tmp_path / 'data'))
  open(path, 'w').write('Frame,1,2\n11,0,1\n')
  with pytest.raises(ValueError, match=r'F003_T1\.csv:1: no column for AU \[4, 6'):
    _build('official', manual, str(tmp_path / 'data2'))


def test_official_subject_outside_protocol(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual, with_missing=False)
  with open(os.path.join(manual, 'AUCoding', 'AU_OCC', 'F099_T1.csv'), 'w') as fh:
    fh.write('Frame,1\n1,0\n')
  with pytest.raises(ValueError,
                     match=r"F099_T1\.csv: subject 'F099' is outside the BP4D protocol"):
    _build('official', manual, str(tmp_path / 'data'))


def test_unexpected_layout_names_manual_dir_and_files(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_megraphau(manual)
  with pytest.raises(ValueError,
                     match=r'official BP4D layout needs .*use the config bp4d/megraphau_lists'):
    _build('official', manual, str(tmp_path / 'data'))
  with pytest.raises(ValueError, match=r"layout 'jaanet_lists' needs \['BP4D_part1_path.txt'"):
    _build('jaanet_lists', manual, str(tmp_path / 'data'))


def test_megraphau_bad_rows_and_missing_image(tmp_path):

  def short_row(fold, split, paths, rows):
    if fold == 2 and split == 'test':
      rows = rows[:3] + [rows[3].rsplit(' ', 1)[0]] + rows[4:]
    return paths, rows

  manual = str(tmp_path / 'm1')
  _write_megraphau(manual, tamper=short_row)
  with pytest.raises(
      ValueError, match=r'BP4D_test_label_fold2\.txt:4: expected 12 AU labels per row, found 11'):
    _build('megraphau_lists', manual, str(tmp_path / 'd1'))

  def missing(fold, split, paths, rows):
    if fold == 1 and split == 'test':
      paths = paths[:1] + ['F004/T1/999.jpg'] + paths[2:]
    return paths, rows

  manual = str(tmp_path / 'm2')
  _write_megraphau(manual, tamper=missing)
  with pytest.raises(ValueError,
                     match=r'BP4D_test_img_path_fold1\.txt:2: image F004/T1/999\.jpg not found'):
    _build('megraphau_lists', manual, str(tmp_path / 'd2'))

  def leak(fold, split, paths, rows):
    if fold == 3 and split == 'train':
      paths = paths[:-1] + ['F001/T1/11.jpg']  # fold 3 tests on part 1
    return paths, rows

  manual = str(tmp_path / 'm3')
  _write_megraphau(manual, tamper=leak)
  with pytest.raises(ValueError, match=r'BP4D_train_img_path_fold3\.txt:\d+: .*subject-exclusive'):
    _build('megraphau_lists', manual, str(tmp_path / 'd3'))


def test_jaanet_subject_in_wrong_part(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_jaanet(manual, bad_subject_part=2)
  with pytest.raises(
      ValueError, match=r"BP4D_part2_path\.txt:5: subject 'F004' is listed in part 2 but "
      r'the protocol puts it in part 3'):
    _build('jaanet_lists', manual, str(tmp_path / 'data'))


def test_metadata_is_json(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_megraphau(manual)
  b = _build('megraphau_lists', manual, str(tmp_path / 'data'))
  files = [f for f in os.listdir(b.data_dir) if f == 'metadata.json']
  assert files
  meta = json.load(open(os.path.join(b.data_dir, 'metadata.json')))
  assert set(meta['train_occurrence_rates']) == {'fold1', 'fold2', 'fold3'}
  assert meta['parts']['part1']['validation_subjects'] == ['F018', 'M007']


# ------------------------------------------------------------------ layout detection


@pytest.mark.parametrize('layout', ['official', 'megraphau_lists', 'jaanet_lists'])
def test_detect_layouts_finds_each_layout(tmp_path, layout):
  manual = str(tmp_path / 'manual')
  {'official': _write_official, 'megraphau_lists': _write_megraphau,
   'jaanet_lists': _write_jaanet}[layout](manual)
  assert bp4d.Bp4d.detect_layouts(manual) == [layout]


def test_detect_layouts_of_a_mixed_or_empty_dir(tmp_path):
  manual = str(tmp_path / 'manual')
  os.makedirs(manual)
  assert bp4d.Bp4d.detect_layouts(manual) == []
  _write_megraphau(manual)
  _write_jaanet(manual)
  assert bp4d.Bp4d.detect_layouts(manual) == ['megraphau_lists', 'jaanet_lists']
  req = bp4d.Bp4d.layout_requirements()
  assert list(req) == ['official', 'megraphau_lists', 'jaanet_lists']
  assert 'AU_OCC' in req['official'] and 'BP4D_{train,test}_img_path_fold' in req[
      'megraphau_lists'] and 'BP4D_part{1,2,3}_' in req['jaanet_lists']


def test_metadata_label_space(tmp_path):
  """label_names, multi_label_names and per-fold class_counts = positive known AU labels."""
  manual = str(tmp_path / 'manual')
  truth = _write_megraphau(manual)
  meta = _build('megraphau_lists', manual, str(tmp_path / 'data')).info.metadata
  assert meta['task'] == 'au' and meta['label_names'] == labels.au_label_names(labels.BP4D_AUS)
  assert meta['multi_label_names'] == []
  for fold, test_part in bp4d.TEST_PART_OF_FOLD.items():
    train = [rel for rel in truth
             if rel.split('/')[0] in [sorted(SUBJECTS[k])[0] for k in (1, 2, 3) if k != test_part]]
    rows = np.stack([truth[rel] for rel in train])
    known = rows != 9
    np.testing.assert_array_equal(meta['class_counts'][f'fold{fold}'],
                                  ((rows == 1) & known).sum(0))
    np.testing.assert_allclose(meta['train_occurrence_rates'][f'fold{fold}'],
                               ((rows == 1) & known).sum(0) / known.sum(0), rtol=1e-12)


# ------------------------------------------------------------------ every listed label (issue 20)


def test_megraphau_every_list_entry_is_used_or_rejected(tmp_path):
  """Train lists are read, not only checked: extra, missing and contradicting entries raise."""

  def train_only(fold, split, paths, rows):
    if fold == 1 and split == 'train':  # fold 1 trains on parts 1 and 2
      _write_image(os.path.join(str(tmp_path / 'm1'), 'img', 'F001/T1/99.jpg'), 1, size=40)
      paths, rows = paths + ['F001/T1/99.jpg'], rows + [' '.join(['1'] * 12)]
    return paths, rows

  _write_megraphau(str(tmp_path / 'm1'), tamper=train_only)
  with pytest.raises(ValueError, match=r'BP4D_train_img_path_fold1\.txt:13: image F001/T1/99\.jpg '
                     r'is in the training list of fold\(s\) \[1\] but in no test list'):
    _build('megraphau_lists', str(tmp_path / 'm1'), str(tmp_path / 'd1'))

  def contradict(fold, split, paths, rows):
    if fold == 2 and split == 'train':
      cells = rows[0].split()
      cells[0] = '1' if cells[0] == '0' else '0'
      rows = [' '.join(cells)] + rows[1:]
    return paths, rows

  _write_megraphau(str(tmp_path / 'm2'), tamper=contradict)
  with pytest.raises(ValueError, match=r'BP4D_train_label_fold2\.txt:1: labels of image '
                     r'F001/T1/11\.jpg are \[.*\] but .*BP4D_train_label_fold1\.txt:1 gives'):
    _build('megraphau_lists', str(tmp_path / 'm2'), str(tmp_path / 'd2'))

  def missing(fold, split, paths, rows):
    if fold == 2 and split == 'train':
      paths, rows = paths[1:], rows[1:]
    return paths, rows

  _write_megraphau(str(tmp_path / 'm3'), tamper=missing)
  with pytest.raises(ValueError, match=r"BP4D_test_img_path_fold3\.txt:1: image F001/T1/11\.jpg of "
                     r"fold 3's test list \(part 1\) is missing from fold 2's training list"):
    _build('megraphau_lists', str(tmp_path / 'm3'), str(tmp_path / 'd3'))

  def duplicate(fold, split, paths, rows):
    if fold == 1 and split == 'train':
      paths, rows = paths + paths[:1], rows + rows[:1]
    return paths, rows

  _write_megraphau(str(tmp_path / 'm4'), tamper=duplicate)
  with pytest.raises(ValueError, match=r'BP4D_train_img_path_fold1\.txt:13: image F001/T1/11\.jpg '
                     r'is listed twice \(first at .*BP4D_train_img_path_fold1\.txt:1\)'):
    _build('megraphau_lists', str(tmp_path / 'm4'), str(tmp_path / 'd4'))


def test_megraphau_bom_spaces_and_crlf(tmp_path):
  """A BOM, CRLF line ends and a path with a space build exactly the listed images."""
  manual = str(tmp_path / 'manual')
  spaced = 'F004/T1/11 copy.jpg'

  def tamper(fold, split, paths, rows):
    paths = [spaced if p == 'F004/T1/11.jpg' else p for p in paths]
    return ['\ufeff' + paths[0]] + paths[1:], rows

  truth = _write_megraphau(manual, tamper=tamper)
  os.rename(os.path.join(manual, 'img', 'F004/T1/11.jpg'), os.path.join(manual, 'img', spaced))
  truth[spaced] = truth.pop('F004/T1/11.jpg')
  list_dir = os.path.join(manual, 'list')
  for name in os.listdir(list_dir):
    text = open(os.path.join(list_dir, name), encoding='utf-8').read()
    open(os.path.join(list_dir, name), 'w', encoding='utf-8', newline='').write(
        text.replace('\n', '\r\n'))
  b = _build('megraphau_lists', manual, str(tmp_path / 'data'))
  got = {e['image_path'].decode(): e for ex in _by_split(b).values() for e in ex}
  assert set(got) == set(truth)
  np.testing.assert_array_equal(got[spaced]['au_mask'], (truth[spaced] != 9).astype(np.float32))


def test_official_frame_numbers_and_files_are_strict(tmp_path):
  manual = str(tmp_path / 'manual')
  _write_official(manual, with_missing=False)
  path = os.path.join(manual, 'AUCoding', 'AU_OCC', 'M010_T1.csv')
  good = open(path).read().splitlines()
  for frame, match in (('11.7', r"expected a frame number .* found '11\.7'"),
                       ('1e309', r"expected a frame number .* found '1e309'"),
                       ('12', r'frame 12 appears twice \(first at line 2\)')):
    lines = list(good)
    lines[1] = frame + lines[1][lines[1].index(','):]
    open(path, 'w').write('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=rf'M010_T1\.csv:(2|3): {match}'):
      _build('official', manual, str(tmp_path / 'd1'))
  open(path, 'w').write('\n'.join(good[:2] + [''] + good[2:]) + '\n')
  with pytest.raises(ValueError, match=r'M010_T1\.csv:3: empty row inside the file'):
    _build('official', manual, str(tmp_path / 'd2'))
  open(path, 'wb').write(('\n'.join(good) + '\n').encode().replace(b',0,', b',\xe9,', 1))
  with pytest.raises(ValueError, match=r'M010_T1\.csv:2: byte 0xe9 at offset \d+ is not UTF-8'):
    _build('official', manual, str(tmp_path / 'd3'))
  open(path, 'w').write('\n'.join(good) + '\n')
  _write_image(os.path.join(manual, 'BP4D-training', 'M010', 'T1', '11.png'), 0)
  with pytest.raises(ValueError, match=r'11\.png: frame 11 has a second file'):
    _build('official', manual, str(tmp_path / 'd4'))

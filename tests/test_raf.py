"""Tests of the RAF-ML and RAF-DB (basic, compound) builders on fake data in the real layout."""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import raf


def _img(path, value):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((100, 100, 3), value, np.uint8)).save(path, 'JPEG')


def _build(cls, config, manual_dir, data_dir):
  builder = cls(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir), compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def _load(builder, split):
  if split not in builder.info.splits:
    return {}
  return {ex['file_name'].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


BASIC = [('train_00001.jpg', 1), ('train_00002.jpg', 4), ('train_00003.jpg', 7),
         ('train_00004.jpg', 5), ('train_00005.jpg', 6), ('test_0001.jpg', 2),
         ('test_0002.jpg', 3)]
COMPOUND = [(f'train_{i:04d}.jpg', i) for i in range(1, 12)] + [('test_0001.jpg', 4)]


@pytest.fixture(scope='module')
def raf_db_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('rafdb')
  for subset, rows in (('basic', BASIC), ('compound', COMPOUND)):
    (root / subset / 'EmoLabel').mkdir(parents=True)
    (root / subset / 'EmoLabel' / 'list_patition_label.txt').write_text(
        ''.join(f'{n} {c}\n' for n, c in rows))
    for i, (n, _) in enumerate(rows):
      _img(root / subset / 'Image' / 'aligned' / n.replace('.jpg', '_aligned.jpg'), 20 * i)
  return root


def test_raf_db_basic(raf_db_dir, tmp_path):
  config = raf.RafDbConfig(name='basic_v0', subset='basic', validation_fraction=0.0)
  builder = _build(raf.RafDb, config, raf_db_dir, tmp_path)
  train, test = _load(builder, 'train'), _load(builder, 'test')
  raf_names = ('surprise', 'fear', 'disgust', 'happy', 'sad', 'anger', 'neutral')
  for split, rows in ((train, BASIC[:5]), (test, BASIC[5:])):
    assert len(split) == len(rows)
    for name, code in rows:
      ex = split['basic/Image/aligned/' + name.replace('.jpg', '_aligned.jpg')]
      assert labels.EXPRESSIONS_7[ex['expression']] == raf_names[code - 1]
      multi = np.zeros(6)
      if code != 7:
        multi[labels.BASIC_6.index(raf_names[code - 1])] = 1
      np.testing.assert_array_equal(ex['expression_multi'], multi)
      assert ex['image'].shape == (100, 100, 3)
      assert ex['au'].shape == (0,)
  meta = builder.info.metadata
  assert meta['class_counts'] == [1, 1, 1, 1, 0, 0, 1]  # neutral happy sad surprise ... anger
  assert meta['label_counts'] == [1, 0, 0, 1, 1, 1]
  # The task's labels are the 7 classes; the one-hot BASIC_6 vectors are the multi-labels.
  assert meta['task'] == 'expression' and meta['label_names'] == list(labels.EXPRESSIONS_7)
  assert meta['multi_label_names'] == list(labels.BASIC_6)
  np.testing.assert_allclose(meta['train_occurrence_rates'], np.array([1, 1, 1, 1, 0, 0, 1]) / 5)


def test_raf_db_compound(raf_db_dir, tmp_path):
  config = raf.RafDbConfig(name='compound_v50', subset='compound', validation_fraction=0.5)
  builder = _build(raf.RafDb, config, raf_db_dir, tmp_path)
  train, val, test = (_load(builder, s) for s in ('train', 'validation', 'test'))
  assert len(train) + len(val) == 11 and len(test) == 1 and val and train
  expected = {  # the 11 compound classes by hand
      1: {'happy', 'surprise'}, 2: {'happy', 'disgust'}, 3: {'sad', 'fear'},
      4: {'sad', 'anger'}, 5: {'sad', 'surprise'}, 6: {'sad', 'disgust'},
      7: {'fear', 'anger'}, 8: {'fear', 'surprise'}, 9: {'anger', 'surprise'},
      10: {'anger', 'disgust'}, 11: {'disgust', 'surprise'}}
  for name, code in COMPOUND[:11]:
    ex = {**train, **val}['compound/Image/aligned/' + name.replace('.jpg', '_aligned.jpg')]
    got = {labels.BASIC_6[i] for i in np.flatnonzero(ex['expression_multi'])}
    assert got == expected[code]
    assert ex['expression'] == -1
  meta = builder.info.metadata
  counts = np.sum([ex['expression_multi'] for ex in train.values()], axis=0)
  assert meta['label_counts'] == [int(c) for c in counts]
  assert meta['task'] == 'expression_multi' and len(meta['compound_classes']) == 11
  assert meta['label_names'] == meta['multi_label_names'] == list(labels.BASIC_6)
  assert meta['class_counts'] == meta['label_counts']
  np.testing.assert_allclose(meta['train_occurrence_rates'], counts / len(train))


@pytest.mark.parametrize('line, message', [
    ('train_00001.jpg 8\n', 'line 1: unknown RAF-DB basic code 8'),
    ('val_00001.jpg 1\n', 'must start with train_ or test_'),
    ('train_00001.jpg\n', r'line 1: expected "<image name>" and 1 value'),
    ('train_00009.jpg 1\n', 'train_00009_aligned.jpg does not exist'),
])
def test_raf_db_bad_input(raf_db_dir, tmp_path, line, message):
  import shutil
  root = tmp_path / 'manual'
  shutil.copytree(raf_db_dir, root)
  (root / 'basic' / 'EmoLabel' / 'list_patition_label.txt').write_text(line)
  builder = raf.RafDb(config='basic', data_dir=str(tmp_path / 'data'))
  with pytest.raises(ValueError, match=message) as err:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(root)))
  assert 'list_patition_label.txt' in str(err.value)


RAF_ML = {  # name: (scores, partition)
    '0001.jpg': ([10, 0, 0, 30, 0, 0], '0'),     # happy + surprise
    '0002.jpg': ([0, 5, 5, 0, 0, 40], '0'),      # anger only (0.1 < 1/6)
    '0003.jpg': ([1, 1, 1, 1, 1, 1], '0'),       # uniform: 1/6 is not > 1/6
    '0004.jpg': ([0, 0, 20, 0, 20, 0], 'train'),
    '0005.jpg': ([0, 0, 0, 0, 0, 7], '1'),
    '0006.jpg': ([3, 3, 0, 0, 0, 0], 'test'),
}


@pytest.fixture(scope='module')
def raf_ml_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('rafml')
  (root / 'distribution.txt').write_text(''.join(
      f'{n} ' + ' '.join(str(v) for v in s) + '\n' for n, (s, _) in RAF_ML.items()))
  (root / 'partition_label.txt').write_text(''.join(f'{n} {p}\n' for n, (_, p) in RAF_ML.items()))
  for i, n in enumerate(RAF_ML):
    _img(root / 'Image' / 'aligned' / n.replace('.jpg', '_aligned.jpg'), 30 * i)
  return root


def test_raf_ml_thresholds_distribution(raf_ml_dir, tmp_path):
  config = raf.RafMlConfig(name='v0', validation_fraction=0.0)
  builder = _build(raf.RafMl, config, raf_ml_dir, tmp_path)
  train, test = _load(builder, 'train'), _load(builder, 'test')
  assert len(train) == 4 and len(test) == 2
  for name, (scores, part) in RAF_ML.items():
    ex = (train if part in ('0', 'train') else test)[
        'Image/aligned/' + name.replace('.jpg', '_aligned.jpg')]
    s = np.array(scores, float) / sum(scores)
    np.testing.assert_allclose(ex['expression_scores'], s, rtol=1e-6)
    expected = [1.0 if v > 1 / 6 else 0.0 for v in s]
    np.testing.assert_array_equal(ex['expression_multi'], expected)
  meta = builder.info.metadata
  assert meta['label_counts'] == [1, 0, 1, 1, 1, 1]
  assert meta['label_source'].startswith('distribution.txt')


def test_raf_ml_multilabel_file_and_errors(raf_ml_dir, tmp_path):
  import shutil
  root = tmp_path / 'manual'
  shutil.copytree(raf_ml_dir, root)
  (root / 'multilabel.txt').write_text(''.join(
      f'{n} ' + ' '.join('1' if j == i % 6 else '0' for j in range(6)) + '\n'
      for i, n in enumerate(RAF_ML)))
  builder = _build(raf.RafMl, raf.RafMlConfig(name='ml', validation_fraction=0.0), root,
                   tmp_path / 'd1')
  train = _load(builder, 'train')
  ex = train['Image/aligned/0002_aligned.jpg']
  np.testing.assert_array_equal(ex['expression_multi'], [0, 1, 0, 0, 0, 0])
  assert builder.info.metadata['label_source'] == 'multilabel.txt'
  (root / 'partition_label.txt').write_text('0001.jpg 2\n')
  with pytest.raises(ValueError, match=r'partition_label.txt, line 1: expected partition'):
    _build(raf.RafMl, raf.RafMlConfig(name='bad1'), root, tmp_path / 'd2')
  (root / 'partition_label.txt').write_text('0001.jpg 0\n0009.jpg 1\n')
  with pytest.raises(ValueError, match=r"line 2: image '0009.jpg' has no row"):
    _build(raf.RafMl, raf.RafMlConfig(name='bad2'), root, tmp_path / 'd3')
  (root / 'distribution.txt').write_text('0001.jpg 1 2 3\n')
  with pytest.raises(ValueError, match=r'distribution.txt, line 1: expected'):
    _build(raf.RafMl, raf.RafMlConfig(name='bad3'), root, tmp_path / 'd4')


def test_compound_multi_label_rejects_unknown_code():
  with pytest.raises(ValueError, match='1-11'):
    raf.compound_multi_label(12)


def _info(name, config, manual_dir, data_dir):
  from faujax.data import builders
  return builders.get_dataset_info({'name': name, 'builder_config': config,
                                          'manual_dir': str(manual_dir),
                                          'data_dir': str(data_dir)})


def test_input_pipeline_raf_ml_is_a_multi_label_task(raf_ml_dir, tmp_path):
  """raf_ml through the pipeline: task expression_multi, BASIC_6 names, training rates."""
  info = _info('raf_ml', None, raf_ml_dir, tmp_path)
  assert info.task == 'expression_multi' and info.builder_config == 'default'
  assert info.label_names == info.multi_label_names == list(labels.BASIC_6)
  assert info.num_labels == 6 and info.aus == () and info.image_size == 100
  y = info.train_labels['expression_multi']
  assert y.shape == (info.num_examples['train'], 6)
  np.testing.assert_array_equal(info.class_counts, y.sum(0))
  np.testing.assert_allclose(info.train_occurrence_rates, y.mean(0), atol=1e-6)


def test_input_pipeline_raf_db_compound_and_basic(raf_db_dir, tmp_path):
  compound = _info('raf_db', 'compound', raf_db_dir, tmp_path)
  assert compound.task == 'expression_multi'
  assert compound.label_names == compound.multi_label_names == list(labels.BASIC_6)
  y = compound.train_labels['expression_multi']
  np.testing.assert_allclose(compound.train_occurrence_rates, y.mean(0), atol=1e-6)
  basic = _info('raf_db', None, raf_db_dir, tmp_path)  # unset: the default config, basic
  assert basic.builder_config == 'basic' and basic.task == 'expression'
  assert basic.label_names == list(labels.EXPRESSIONS_7) and basic.class_counts.shape == (7,)
  assert basic.multi_label_names == list(labels.BASIC_6)


# --------------------------------------------------------------------------- issue 20
def _raf_ml_root(raf_ml_dir, tmp_path, **files):
  import shutil
  root = tmp_path / 'manual'
  shutil.copytree(raf_ml_dir, root)
  for name, text in files.items():
    path = root / f'{name}.txt'
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
  return root


DIST = ''.join(f'{n} ' + ' '.join(str(v) for v in s) + '\n' for n, (s, _) in RAF_ML.items())
PART = ''.join(f'{n} {p}\n' for n, (_, p) in RAF_ML.items())


@pytest.mark.parametrize('files, where, message', [
    # A second row of an image used to replace the first (distribution, multilabel) or fail
    # after every image was encoded with tfds' hashed-key error (partition).
    ({'distribution': DIST + '0001.jpg 0 0 0 0 0 9\n'}, 'distribution.txt, line 7',
     "image '0001.jpg' already has a row at line 1"),
    ({'partition_label': PART + '0002.jpg 1\n'}, 'partition_label.txt, line 7',
     "image '0002.jpg' already has a row at line 2"),
    ({'multilabel': '0001.jpg 1 0 0 0 0 0\n' * 2}, 'multilabel.txt, line 2',
     'already has a row at line 1'),
    ({'distribution': DIST + '0001.png 1 1 1 1 1 1\n'}, 'distribution.txt, line 7',
     "as '0001.jpg': the same aligned image"),
    ({'distribution': DIST + '0009.jpg 1 1 1 1 1 1\n'}, 'distribution.txt, line 7',
     "image '0009.jpg' has no row in .*partition_label.txt"),
    ({'distribution': DIST + '../../x.jpg 1 1 1 1 1 1\n'}, 'distribution.txt, line 7',
     'must be a plain file name'),
    ({'distribution': DIST + 'my img.jpg 1 1 1 1 1 1\n'}, 'distribution.txt, line 7',
     'cannot contain whitespace'),
    ({'distribution': DIST + '0007.jpg 1 1 1 1 1 1e309\n'}, 'distribution.txt, line 7',
     'finite number'),
    ({'distribution': DIST + '0007.jpg 1 1 1 1 1 nan\n'}, 'distribution.txt, line 7',
     'an emotion score'),
    ({'distribution': DIST + '0007.jpg 1e308 1e308 0 0 0 0\n'}, 'distribution.txt, line 7',
     'positive sum'),
    ({'distribution': DIST.encode() + b'0007.jpg 1 1 1 1 1 \xb5\n'}, 'distribution.txt, line 7',
     'byte 0xb5 at column 20 is not valid UTF-8'),
    ({'partition_label': PART + '\ufeff0007.jpg 1\n'}, 'partition_label.txt, line 7',
     'byte-order mark'),
])
def test_raf_ml_faults_are_clear_errors_while_reading(raf_ml_dir, tmp_path, files, where,
                                                      message):
  root = _raf_ml_root(raf_ml_dir, tmp_path, **files)
  with pytest.raises(raf.base.AnnotationError, match=message) as err:
    raf.read_raf_ml(raf.epath.Path(root), 1 / 6)
  assert where in str(err.value)
  # The builder fails the same way, before encoding.
  with pytest.raises(raf.base.AnnotationError, match=message):
    _build(raf.RafMl, raf.RafMlConfig(name='bad'), root, tmp_path / 'data')


def test_raf_ml_reads_bom_crlf_and_blank_lines(raf_ml_dir, tmp_path):
  root = _raf_ml_root(raf_ml_dir, tmp_path,
                      distribution=b'\xef\xbb\xbf' + DIST.replace('\n', '\r\n\r\n').encode(),
                      partition_label='\n' + PART + '\n\n')
  splits, source = raf.read_raf_ml(raf.epath.Path(root), 1 / 6)
  assert source.startswith('distribution.txt')
  assert sorted(r.key for r in splits['train'] + splits['test']) == sorted(RAF_ML)
  assert [r.source[1] for r in splits['train']] == [2, 3, 4, 5]


@pytest.mark.parametrize('text, message', [
    ('train_00001.jpg 1\ntrain_00002.jpg 4\ntrain_00001.jpg 4\n',
     "line 3: image 'train_00001.jpg' already has a row at line 1"),
    ('train_00001.jpg 1\ntrain_00001.png 4\n', "line 2: .*the same aligned image"),
    ('train_00001.jpg 1\ntrain_../x.jpg 4\n', 'line 2: .*must be a plain file name'),
    ('train_00001.jpg 1\ntrain 00002.jpg 4\n', 'line 2: .*cannot contain whitespace'),
    ('train_00001.jpg 1\ntrain_00002.jpg 4.0\n', 'line 2: expected an expression code'),
    ('train_00001.jpg 1\ntrain_00002.jpg \u0664\n', 'line 2: expected an expression code'),
])
def test_raf_db_faults_are_clear_errors_while_reading(raf_db_dir, tmp_path, text, message):
  import shutil
  root = tmp_path / 'manual'
  shutil.copytree(raf_db_dir, root)
  (root / 'basic' / 'EmoLabel' / 'list_patition_label.txt').write_text(text)
  with pytest.raises(raf.base.AnnotationError, match=message):
    raf.read_raf_db(raf.epath.Path(root), 'basic')
  builder = raf.RafDb(config='basic', data_dir=str(tmp_path / 'data'))
  with pytest.raises(raf.base.AnnotationError, match=message) as err:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(root)))
  assert 'hashed key' not in str(err.value)

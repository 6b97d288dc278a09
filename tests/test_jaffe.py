"""Tests of the JAFFE builder on fake data written in the distributed layout."""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import jaffe

COLS = ('HAP', 'SAD', 'SUR', 'ANG', 'DIS', 'FEA')
COL_TO_BASIC = {'SUR': 'surprise', 'FEA': 'fear', 'DIS': 'disgust', 'HAP': 'happy',
                'SAD': 'sad', 'ANG': 'anger'}


def _ratings(pic_index: int) -> list[float]:
  rng = np.random.default_rng(pic_index)
  r = np.round(rng.uniform(1, 5, size=6), 2)
  r[0] = 3.00 if pic_index == 0 else r[0]  # exactly the threshold: positive
  return list(r)


def _pics():
  pics = []
  for s in jaffe.SUBJECTS:
    pics += [(s, 'HA1'), (s, 'SA2')]
  return pics


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('jaffe')
  folder = root / 'jaffe'
  folder.mkdir()
  lines = ['#  HAP  SAD  SUR  ANG  DIS  FEA  PIC']
  for i, (s, e) in enumerate(_pics()):
    lines.append(f'{i + 1} ' + ' '.join(f'{v:.2f}' for v in _ratings(i)) + f' {s}-{e}')
    if (s, e) != ('YM', 'SA2'):  # rated but no image: counted skip
      Image.fromarray(np.full((32, 32), 7 * i, np.uint8)).save(folder / f'{s}.{e}.{100 + i}.tiff')
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / 'KA.NE1.26.tiff')  # no rating
  (folder / 'A_Semantic_Ratings.txt').write_text('\n'.join(lines) + '\n')
  (folder / 'README').write_text('JAFFE readme\n')
  return root


def _build(manual_dir, data_dir, threshold):
  config = jaffe.JaffeConfig(name=f't{threshold}', threshold=threshold, image_size=32)
  builder = jaffe.Jaffe(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir), compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def test_parts_folds_and_labels(manual_dir, tmp_path):
  builder = _build(manual_dir, tmp_path, 3.0)
  assert set(builder.info.splits) == {f'part{k}' for k in range(1, 6)}
  rated = {f'{s}-{e}': i for i, (s, e) in enumerate(_pics())}
  seen = set()
  for part, subjects in jaffe.PARTS.items():
    for ex in tfds.as_numpy(builder.as_dataset(split=part)):
      name = ex['file_name'].decode()
      subject = name.split('/')[1][:2]
      assert subject in subjects and jaffe.SUBJECTS[ex['subject']] == subject
      pic = subject + '-' + name.split('.')[1]
      raw = dict(zip(COLS, _ratings(rated[pic])))
      scores = [raw[c] for c in ('SUR', 'FEA', 'DIS', 'HAP', 'SAD', 'ANG')]
      assert [COL_TO_BASIC[c] for c in ('SUR', 'FEA', 'DIS', 'HAP', 'SAD', 'ANG')] == list(
          labels.BASIC_6)
      np.testing.assert_allclose(ex['expression_scores'], scores, atol=1e-5)
      np.testing.assert_array_equal(ex['expression_multi'], [float(v >= 3.0) for v in scores])
      assert ex['image'].shape == (32, 32, 3)
      seen.add(pic)
  assert seen == set(rated) - {'YM-SA2'}
  meta = builder.info.metadata
  assert meta['skipped'] == {'image without a rating': 1, 'rated picture without an image': 1}
  assert meta['num_examples']['part5'] == 3
  # Fold k tests on part k, trains on the rest; its label counts sum the training parts.
  for k in range(1, 6):
    split = jaffe.fold_splits(k)
    assert split['test'] == f'part{k}' and f'part{k}' not in split['train'].split('+')
    assert len(split['train'].split('+')) == 4
    train = list(tfds.as_numpy(builder.as_dataset(split=split['train'])))
    expected = np.sum([ex['expression_multi'] for ex in train], axis=0)
    assert jaffe.fold_label_counts(meta, k) == [int(c) for c in expected]
  with pytest.raises(ValueError, match='fold must be 1-5'):
    jaffe.fold_splits(6)


def test_threshold_is_configurable(manual_dir, tmp_path):
  builder = _build(manual_dir, tmp_path, 4.0)
  for ex in tfds.as_numpy(builder.as_dataset(split='part1')):
    np.testing.assert_array_equal(ex['expression_multi'], ex['expression_scores'] >= 4.0)
  assert builder.info.metadata['threshold'] == 4.0


@pytest.mark.parametrize('row, message', [
    ('1 2.0 2.0 2.0 2.0 2.0 KA-HA1', 'line 2: expected 8 fields'),
    ('1 2.0 2.0 2.0 2.0 2.0 9.0 KA-HA1', r'FEA rating must be in \[1, 5\]'),
    ('1 2.0 2.0 2.0 2.0 2.0 x KA-HA1', 'line 2: expected a FEA rating'),
    ('1 2.0 2.0 2.0 2.0 2.0 2.0 KA_HA1', 'picture id like KA-AN1'),
])
def test_bad_ratings_rows(tmp_path, row, message):
  path = tmp_path / 'ratings.txt'
  path.write_text('N HAP SAD SUR ANG DIS FEA PIC\n' + row + '\n')
  with pytest.raises(ValueError, match=message) as err:
    jaffe.read_ratings(jaffe.epath.Path(path))
  assert 'ratings.txt' in str(err.value)


def test_layout_errors(tmp_path):
  folder = tmp_path / 'm' / 'jaffe'
  folder.mkdir(parents=True)
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / 'KA.HA1.1.tiff')
  builder = jaffe.Jaffe(data_dir=str(tmp_path / 'd'))
  with pytest.raises(ValueError, match='exactly one ratings table'):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / 'm')))
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / 'oops.tiff')
  with pytest.raises(ValueError, match='oops.tiff: expected a JAFFE image name'):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / 'm')))


def test_input_pipeline_jaffe_folds_and_label_space(manual_dir, tmp_path):
  """JAFFE through the pipeline: task expression_multi, per-fold rates, folds 1-5."""
  from faujax.data import builders
  cfg = {'name': 'jaffe', 'manual_dir': str(manual_dir), 'data_dir': str(tmp_path)}
  for fold in (1, 4, 5):
    info = builders.get_dataset_info({**cfg, 'fold': fold})
    assert info.task == 'expression_multi' and info.fold == fold
    assert info.label_names == info.multi_label_names == list(labels.BASIC_6)
    y = info.train_labels['expression_multi']
    assert y.shape[0] == info.num_examples['train'] and info.num_examples['validation'] == 0
    np.testing.assert_array_equal(info.class_counts, y.sum(0))
    np.testing.assert_allclose(info.train_occurrence_rates, y.mean(0), atol=1e-6)
    meta = builders.get_builder(cfg).info.metadata
    assert info.class_counts.tolist() == jaffe.fold_label_counts(meta, fold)
  with pytest.raises(ValueError, match=r'config\.data\.fold must be one of \(1, 2, 3, 4, 5\)'):
    builders.get_dataset_info({**cfg, 'fold': 6})


# --------------------------------------------------------------------------- issue 20
@pytest.mark.parametrize('text, line, message', [
    (b'N HAP SAD SUR ANG DIS FEA PIC\n1 2 2 2 2 2 2 ZZ-HA1\n', 2, "unknown JAFFE subject 'ZZ'"),
    (b'N HAP SAD SUR ANG DIS FEA PIC\n1\xb5 2 2 2 2 2 2 KA-HA1\n', 2, 'byte 0xb5'),
    ('N HAP SAD SUR ANG DIS FEA PIC\n1 2 2 2 2 2 2 KA-HA\u0661\n'.encode(), 2, 'picture id'),
    (b'N HAP SAD SUR ANG DIS FEA PIC\n1 2 2 2 2 2 inf KA-HA1\n', 2, 'a FEA rating'),
    (b'N HAP SAD SUR ANG DIS FEA PIC\n1 2 2 2 2 2 1e309 KA-HA1\n', 2, 'finite number'),
    (b'N HAP SAD SUR ANG DIS FEA PIC\n1 2 2 2 2 2 2 KA-HA1\x0c\n', 2, 'control character'),
    (b'N HAP HAP SAD SUR ANG DIS FEA PIC\n', 1, r"repeats column\(s\) \['HAP'\]"),
    (b'\n\nN HAP SAD SUR ANG DIS PIC\n', 3, 'expected a header with columns'),
    (b'N HAP SAD SUR ANG DIS FEA PIC\n1 2 2 2 2 2 2 KA-HA1\n\n2 3 3 3 3 3 3 KA-HA1\n', 4,
     'picture KA-HA1 rated twice .first at line 2'),
])
def test_ratings_faults_name_file_and_line(tmp_path, text, line, message):
  path = jaffe.epath.Path(tmp_path / 'ratings.txt')
  path.write_bytes(text)
  with pytest.raises(jaffe.base.AnnotationError, match=message) as err:
    jaffe.read_ratings(path)
  assert err.value.line == line and f'ratings.txt, line {line}: ' in str(err.value)


def test_ratings_bom_crlf_and_blank_lines(tmp_path):
  path = jaffe.epath.Path(tmp_path / 'ratings.txt')
  path.write_bytes(b'\xef\xbb\xbf\r\n#HAP SAD SUR ANG DIS FEA PIC\r\n\r\n'
                   b'1 3 1 1 1 1 1 KA-HA1\r\n\r\n')
  assert jaffe.read_ratings(path) == {'KA-HA1': (4, (1.0, 1.0, 1.0, 3.0, 1.0, 1.0))}


def test_build_prints_the_skip_counts_at_the_end(manual_dir, tmp_path, capsys):
  _build(manual_dir, tmp_path, 3.0)
  out = capsys.readouterr().out.splitlines()
  summary = [line for line in out if line.startswith('jaffe:')]
  assert summary[0] == 'jaffe: built 19 example(s) (part1 4, part2 4, part3 4, part4 4, part5 3).'
  assert summary[1:] == [
      'jaffe: skipped 1 example(s): image without a rating (e.g. KA.NE1.26.tiff).',
      'jaffe: skipped 1 example(s): rated picture without an image (e.g. '
      'A_Semantic_Ratings.txt:21 YM-SA2).']

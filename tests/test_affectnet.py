"""Tests of the AffectNet builder on fake data written in the official layout."""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import affectnet
from faujax.geometry import stored_faces

HEADER = ('subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,'
          'expression,valence,arousal')
SKIP_STATS = tfds.download.DownloadConfig


def _landmarks(tilt_deg: float, cx: float = 20.0, cy: float = 20.0) -> np.ndarray:
  """68 points; eye points 36-41 / 42-47 around two eye centres tilted by tilt_deg."""
  rng = np.random.default_rng(0)
  pts = rng.uniform(8, 32, size=(68, 2))
  t = math.radians(tilt_deg)
  half = np.array([math.cos(t), math.sin(t)]) * 7.0
  left, right = np.array([cx, cy]) - half, np.array([cx, cy]) + half
  ring = np.array([[-2, 0], [-1, -1], [1, -1], [2, 0], [1, 1], [-1, 1]], float)
  pts[36:42] = left + ring
  pts[42:48] = right + ring
  return pts


def _lm_field(pts: np.ndarray) -> str:
  return ';'.join(f'{v:.2f}' for v in pts.reshape(-1))


def _write_image(path, seed: int, size: int = 40):
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, 'JPEG')


def _write_manual(root, train_rows, val_rows):
  """rows: (rel, code, valence, arousal, tilt)."""
  for name, rows in (('training.csv', train_rows), ('validation.csv', val_rows)):
    lines = [HEADER]
    for i, (rel, code, v, a, tilt) in enumerate(rows):
      _write_image(root / 'Manually_Annotated_Images' / rel, seed=i)
      lines.append(f'{rel},4,5,30,30,{_lm_field(_landmarks(tilt))},{code},{v},{a}')
    (root / name).write_text('\n'.join(lines) + '\n')


TRAIN_ROWS = [(f'{10 + i}/img{i}.jpg', code, 0.5 - 0.1 * i, 0.1 * i, 5.0 * i)
              for i, code in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 1, 2, 8, 9, 10])]
TRAIN_ROWS.append(('30/nova.jpg', 3, -2, -2, 0.0))
VAL_ROWS = [(f'val/v{i}.jpg', code, 0.2, -0.3, -10.0) for i, code in enumerate([0, 6, 7, 9])]


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('affectnet_manual')
  _write_manual(root, TRAIN_ROWS, VAL_ROWS)
  return root


def _build(manual_dir, data_dir, config):
  builder = affectnet.Affectnet(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=SKIP_STATS(
      manual_dir=str(manual_dir), compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def _examples(builder, split):
  return {ex['file_name'].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def _in_validation(file_name: str, fraction: float) -> bool:
  digest = hashlib.sha256(file_name.encode()).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64 < fraction


def _apply(m, pts):
  return pts @ m[:, :2].T + m[:, 2]


def test_alignment_matrix_levels_eyes():
  pts = _landmarks(25.0)
  m = stored_faces.emotion_gcn_matrix(pts, (4, 5, 30, 30), 60)
  out = _apply(m, pts)
  left, right = out[36:42].mean(0), out[42:48].mean(0)
  np.testing.assert_allclose(left[1], right[1], atol=1e-4)
  assert right[0] > left[0]
  # Inter-ocular distance scales by size / box width (square box).
  np.testing.assert_allclose(np.linalg.norm(right - left), 14.0 * 60 / 30, rtol=1e-5)
  with pytest.raises(ValueError, match='Cannot align'):
    same = pts.copy()
    same[42:48] = same[36:42]
    stored_faces.emotion_gcn_matrix(same, (4, 5, 30, 30), 60)


def test_align_face_moves_pixels_with_landmarks():
  pts = _landmarks(-30.0, cx=50, cy=50) * 1.0
  pts[30] = (57.0, 62.0)  # a 3x3 marker centred on pixel (57, 62)
  image = np.zeros((100, 100, 3), np.uint8)
  image[61:64, 56:59] = 255
  aligned, out = stored_faces.align_emotion_gcn(image, pts, (20, 20, 60, 60), 120)
  assert aligned.shape == (120, 120, 3) and aligned.dtype == np.uint8
  gray = aligned[..., 0].astype(float)
  ys, xs = np.nonzero(gray > 0.5 * gray.max())
  w = gray[ys, xs]
  centroid = np.array([xs @ w, ys @ w]) / w.sum()
  np.testing.assert_allclose(centroid, out[30], atol=0.5)


def test_affectnet_7class(manual_dir, tmp_path):
  config = affectnet.AffectNetConfig(name='7class_v50', validation_fraction=0.5)
  builder = _build(manual_dir, tmp_path, config)
  train, val, test = (_examples(builder, s) for s in ('train', 'validation', 'test'))
  kept = {f'Manually_Annotated_Images/{r[0]}': r for r in TRAIN_ROWS if r[1] <= 6}
  assert set(train) | set(val) == set(kept) and not set(train) & set(val)
  assert set(val) == {k for k in kept if _in_validation(k, 0.5)}
  assert 0 < len(val) < len(kept)
  for name, ex in {**train, **val}.items():
    rel, code, v, a, tilt = kept[name]
    assert ex['expression'] == code
    assert ex['image'].shape == (227, 227, 3)
    if v == -2:
      assert ex['va_mask'] == 0 and ex['valence'] == 0 and ex['arousal'] == 0
    else:
      assert ex['va_mask'] == 1
      np.testing.assert_allclose([ex['valence'], ex['arousal']], [v, a], atol=1e-6)
    # Stored landmarks are the source landmarks through the alignment map.
    src = np.array([float(t) for t in _lm_field(_landmarks(tilt)).split(';')]).reshape(68, 2)
    expected = _apply(stored_faces.emotion_gcn_matrix(src, (4, 5, 30, 30), 227), src)
    np.testing.assert_allclose(ex['landmarks'], expected, atol=1e-3)
    eyes = ex['landmarks'][36:42].mean(0), ex['landmarks'][42:48].mean(0)
    np.testing.assert_allclose(eyes[0][1], eyes[1][1], atol=1e-3)
    assert ex['subject'] == -1
    np.testing.assert_array_equal(ex['expression_multi'], np.zeros(6))
    del rel
  assert sorted(ex['expression'] for ex in test.values()) == [0, 6]
  # Stored image matches aligning the source image (up to JPEG loss).
  name = next(iter(train))
  src_img = np.asarray(Image.open(manual_dir / name).convert('RGB'))
  rel, code, v, a, tilt = kept[name]
  ref, _ = stored_faces.align_emotion_gcn(src_img, np.array(
      [float(t) for t in _lm_field(_landmarks(tilt)).split(';')]).reshape(68, 2),
                                (4, 5, 30, 30), 227)
  assert np.abs(train[name]['image'].astype(float) - ref).mean() < 12.0

  # Metadata survives a reload from disk.
  meta = affectnet.Affectnet(config=config, data_dir=str(tmp_path)).info.metadata
  counts = [0] * 7
  for ex in train.values():
    counts[ex['expression']] += 1
  assert meta['class_counts'] == counts
  assert meta['class_names'] == list(labels.EXPRESSIONS_7)
  assert meta['skipped'] == {
      'expression code 7 (contempt) outside the 7-class protocol': 2,
      'expression code >= 8 (none / uncertain / non-face)': 4,
  }
  assert meta['num_examples'] == {'train': len(train), 'validation': len(val), 'test': 2}
  assert meta['has_landmarks'] is True


def test_affectnet_8class_keeps_contempt(manual_dir, tmp_path):
  config = affectnet.AffectNetConfig(
      name='8class_v0', num_classes=8, validation_fraction=0.0)
  builder = _build(manual_dir, tmp_path, config)
  train = _examples(builder, 'train')
  test = _examples(builder, 'test')
  assert sorted(ex['expression'] for ex in train.values()) == sorted(
      r[1] for r in TRAIN_ROWS if r[1] <= 7)
  assert sorted(ex['expression'] for ex in test.values()) == [0, 6, 7]
  meta = builder.info.metadata
  assert meta['class_counts'][7] == 1 and len(meta['class_counts']) == 8
  assert meta['skipped'] == {'expression code >= 8 (none / uncertain / non-face)': 4}
  assert set(builder.info.splits) == {'train', 'test'}  # empty validation carve left out


def _csv_with(tmp_path, row_override: str | None = None, header: str = HEADER, image=True):
  """training.csv: the header, a good row for a/x.jpg (line 2), then row_override (line 3)."""
  root = tmp_path / 'bad'
  root.mkdir(exist_ok=True)
  if image:
    _write_image(root / 'Manually_Annotated_Images' / 'a' / 'x.jpg', 1)
    _write_image(root / 'Manually_Annotated_Images' / 'a' / 'y.jpg', 2)
  good = f'a/x.jpg,4,5,30,30,{_lm_field(_landmarks(0))},1,0.1,0.2'
  lines = [header, good] + ([] if row_override is None else [row_override])
  (root / 'training.csv').write_text('\n'.join(lines) + '\n')
  return root


_LM = _lm_field(_landmarks(0))


@pytest.mark.parametrize('row, message', [
    (f'a/y.jpg,4,5,30,30,{_lm_field(_landmarks(0)[:67])},1,0.1,0.2', '68 points'),
    (f'a/y.jpg,4,5,30,30,{_LM},11,0.1,0.2', 'unknown AffectNet expression'),
    (f'a/y.jpg,4,5,30,30,{_LM},happy,0.1,0.2', 'integer expression code'),
    (f'a/y.jpg,4,5,30,30,{_LM},1,1.5,0.2', 'valence/arousal must be'),
    (f'a/y.jpg,4,5,0,30,{_LM},1,0.1,0.2', 'positive face_width'),
    ('a/y.jpg,4,5,30,30', 'expected 9 comma-separated fields'),
    (f'a/missing.jpg,4,5,30,30,{_LM},1,0.1,0.2', 'does not exist'),
    # Issue 20: a second row of an image (whatever its code) names both lines.
    (f'a/x.jpg,4,5,30,30,{_LM},1,0.1,0.2', r'image a/x.jpg is already listed at .*line 2'),
    (f'a/x.jpg,4,5,30,30,{_LM},9,-2,-2', r'image a/x.jpg is already listed at .*line 2'),
    (f'a/./x.jpg,4,5,30,30,{_LM},1,0.1,0.2', r'image a/x.jpg is already listed'),
    # Paths outside the image root.
    (f'../outside.jpg,4,5,30,30,{_LM},1,0.1,0.2', 'points outside Manually_Annotated_Images'),
    (f'/etc/x.jpg,4,5,30,30,{_LM},1,0.1,0.2', 'points outside'),
    (f'a/../../x.jpg,4,5,30,30,{_LM},9,-2,-2', 'points outside'),
    (f'a\\y.jpg,4,5,30,30,{_LM},1,0.1,0.2', 'points outside'),
    # Numbers: non-finite, overflowing, non-ASCII, underscores; half-annotated VA.
    (f'a/y.jpg,4,5,30,30,{_LM},1,nan,0.2', 'expected a valence value'),
    (f'a/y.jpg,4,5,30,30,{_LM},1,0.1,1e309', r'arousal value \(a finite number\)'),
    (f'a/y.jpg,4,5,1_0,30,{_LM},1,0.1,0.2', 'number in column face_width'),
    (f'a/y.jpg,4,5,30,30,{_LM},\u0661,0.1,0.2', 'integer expression code'),
    (f'a/y.jpg,4,5,30,30,{_LM},1.0,0.1,0.2', 'integer expression code'),
    (f'a/y.jpg,4,5,30,30,{_LM},1,-2,0.2', 'or both -2'),
    (f'a/y.jpg,4,5,30,30,{_LM},-1,0.1,0.2', 'unknown AffectNet expression code -1'),
    ('a/y.jpg,4,5,30,30,"1;2,1,0.1,0.2', 'not a valid csv row'),
    (f'a/y.jpg,4,5,30,30,{_LM},1,0.1,0.2\x0c', 'control character'),
    (f'\ufeffa/y.jpg,4,5,30,30,{_LM},1,0.1,0.2', 'byte-order mark'),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
  root = _csv_with(tmp_path, row)
  with pytest.raises(affectnet.base.AnnotationError, match=message) as err:
    affectnet.read_affectnet_csv(root, 'training.csv', 7, affectnet.base.SkipCounter())
  assert 'training.csv, line 3' in str(err.value) and err.value.line == 3


def test_spaces_bom_crlf_and_blank_lines_are_read(tmp_path):
  """A leading BOM, CRLF endings, blank lines and a path with spaces parse as documented."""
  root = _csv_with(tmp_path)
  _write_image(root / 'Manually_Annotated_Images' / 'a b' / 'x y.jpg', 3)
  rows = [HEADER, f'a/x.jpg,4,5,30,30,{_LM},1,0.1,0.2', '',
          f' a b/x y.jpg ,4,5,30,30,{_LM};,2,-2,-2', '   ', '']
  (root / 'training.csv').write_bytes(b'\xef\xbb\xbf' + '\r\n'.join(rows).encode())
  records = affectnet.read_affectnet_csv(root, 'training.csv', 7, affectnet.base.SkipCounter())
  assert [r.file_name for r in records] == ['Manually_Annotated_Images/a/x.jpg',
                                            'Manually_Annotated_Images/a b/x y.jpg']
  assert [r.source[1] for r in records] == [2, 4]
  assert records[1].va_mask == 0 and records[1].expression == 2


def test_non_utf8_bytes_name_the_line(tmp_path):
  root = _csv_with(tmp_path)
  good = f'a/x.jpg,4,5,30,30,{_LM},1,0.1,0.2'
  (root / 'training.csv').write_bytes(
      (HEADER + '\n' + good + '\n').encode() + b'a/\xe9.jpg,4,5,30,30\n')
  with pytest.raises(affectnet.base.AnnotationError, match=r'training.csv, line 3: byte 0xe9'):
    affectnet.read_affectnet_csv(root, 'training.csv', 7, affectnet.base.SkipCounter())


def test_image_in_both_csv_files_is_an_error_before_encoding(tmp_path):
  """A duplicate (within or across the csv files) is found while reading, not by tfds'
  'Two examples share the same hashed key!' after every image is encoded."""
  root = _csv_with(tmp_path)
  (root / 'validation.csv').write_text(
      HEADER + '\n' + f'a/x.jpg,4,5,30,30,{_LM},3,0.1,0.2\n')
  builder = affectnet.Affectnet(data_dir=str(tmp_path / 'data'))
  with pytest.raises(affectnet.base.AnnotationError,
                     match=r'validation.csv, line 2: image a/x.jpg is already listed at '
                           r'.*training.csv, line 2'):
    builder.download_and_prepare(download_config=SKIP_STATS(manual_dir=str(root)))
  # Within one file, through the builder.
  rows = [HEADER] + [f'a/x.jpg,4,5,30,30,{_LM},1,0.1,0.2'] * 2
  (root / 'training.csv').write_text('\n'.join(rows) + '\n')
  with pytest.raises(ValueError, match=r'training.csv, line 3: .*already listed.*line 2') as err:
    builder.download_and_prepare(download_config=SKIP_STATS(manual_dir=str(root)))
  assert 'hashed key' not in str(err.value)


def test_bad_header_and_missing_files(tmp_path):
  root = _csv_with(tmp_path, header=HEADER.replace('facial_landmarks', 'landmarks'))
  with pytest.raises(ValueError, match=r'training.csv, line 1: header lacks.*facial_landmarks'):
    affectnet.read_affectnet_csv(root, 'training.csv', 7, affectnet.base.SkipCounter())
  with pytest.raises(ValueError, match=r'validation.csv.*does not exist'):
    affectnet.read_affectnet_csv(root, 'validation.csv', 7, affectnet.base.SkipCounter())
  # Through the builder: the manual dir lacks validation.csv.
  root = _csv_with(tmp_path)
  builder = affectnet.Affectnet(data_dir=str(tmp_path / 'data'))
  with pytest.raises(ValueError, match='validation.csv'):
    builder.download_and_prepare(download_config=SKIP_STATS(manual_dir=str(root)))


def test_input_pipeline_reads_the_built_affectnet(manual_dir, tmp_path):
  """faujax's input pipeline and task see the official splits, 7 classes and VA masks."""
  import ml_collections
  from faujax.data import input_pipeline
  from faujax.data import builders
  cfg = ml_collections.ConfigDict({'name': 'affectnet', 'builder_config': '7class',
                                   'data_dir': str(tmp_path), 'fold': 1, 'image_size': None,
                                   'manual_dir': str(manual_dir)})
  info = builders.get_dataset_info(cfg)
  assert info.task == 'expression' and info.num_labels == 7
  assert info.num_examples['test'] == 2  # validation.csv codes 0 and 6; 7 and 9 are dropped
  batches = list(input_pipeline.create_split(cfg, 'test', batch_size=4, train=False))
  assert len(batches) == 1 and batches[0]['valid'].sum() == 2
  assert set(batches[0]['expression'][:2]) == {0, 6}
  assert 'va_mask' in batches[0]
  labels = info.train_labels
  assert labels['expression'].shape[0] == info.num_examples['train']


def test_input_pipeline_affectnet_8class_label_space(manual_dir, tmp_path):
  """affectnet/8class: 8 names (contempt last), 8 class counts; unset builder_config = 7class."""
  from faujax.data import builders
  from faujax.data import input_pipeline
  cfg = {'name': 'affectnet', 'builder_config': '8class', 'data_dir': str(tmp_path),
         'manual_dir': str(manual_dir)}
  info = builders.get_dataset_info(cfg)
  assert info.task == 'expression' and info.builder_config == '8class'
  assert info.label_names == list(labels.EXPRESSIONS_8) and info.label_names[7] == 'contempt'
  assert info.num_labels == 8 and info.class_counts.shape == (8,)
  assert info.train_occurrence_rates.shape == (8,) and info.multi_label_names == []
  assert info.image_size == 227 and info.num_landmarks == 68
  train = info.train_labels['expression']
  np.testing.assert_array_equal(info.class_counts, np.bincount(train, minlength=8))
  assert info.class_counts.sum() == info.num_examples['train']
  # Contempt (code 7) is counted in the train or the validation carve, never dropped.
  val = input_pipeline.load_labels(cfg, 'validation')
  val_contempt = int((val.get('expression', np.zeros(0)) == 7).sum())
  assert info.class_counts[7] + val_contempt == sum(1 for r in TRAIN_ROWS if r[1] == 7)
  np.testing.assert_allclose(info.train_occurrence_rates,
                             info.class_counts / info.class_counts.sum(), atol=1e-6)
  seven = builders.get_dataset_info({**cfg, 'builder_config': None})
  assert seven.builder_config == '7class' and seven.num_labels == 7
  assert seven.class_counts.shape == (7,)


@pytest.mark.slow  # ~35 s: a training on the 8-class label space
def test_affectnet_8class_trains_end_to_end(manual_dir, tmp_path):
  """An 8-class Emotion-GCN run: the head, the class weights and the graph get 8 classes (the
  label space used to be fixed at 7 and failed on the first step)."""
  from faujax import config_base, models, train  # pylint: disable=g-import-not-at-top
  config = config_base.get_config('emotion_gcn')
  config.data.update({'name': 'affectnet', 'builder_config': '8class',
                      'data_dir': str(tmp_path / 'tfds'), 'manual_dir': str(manual_dir)})
  config.model.backbone = models.backbone_config('small_cnn', widths=(8, 16))
  config.model.embeddings = 'onehot'  # the shipped vectors cover the 7 classes + V, A only
  config.model.hidden_dim = 8
  config.augment.image_size = 32
  config.train.update({'batch_size': 8, 'num_steps': 2, 'eval_every': 2})
  config.eval.batch_size = 8
  config.checkpoint.every = 2
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['label_names'] == list(labels.EXPRESSIONS_8)
  assert results['dataset'] == 'affectnet/8class'
  assert {'mean_class_accuracy', 'accuracy', 'ccc_valence'} <= set(results['metrics'])
  assert (tmp_path / 'run' / 'classifier_cosine_similarity.png').stat().st_size > 1000

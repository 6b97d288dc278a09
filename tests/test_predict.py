"""faujax.predict / faujax.predictor: the CSV of users' images and videos equals the model's
evaluation outputs on the same aligned faces, for any batch size, with and without detection."""

import os

import jax
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faujax import config_base
from faujax import faces as faces_lib
from faujax import models
from faujax import predict
from faujax import predictor as predictor_lib
from faujax import train
from faujax import trained_run
from faujax.data import augment
from faujax.data import builders
from faujax.data import dataset_info
from faujax.data import input_pipeline
from faujax.data.synthetic_faces import examples
from faujax.geometry import mean_face
import test_predict_inputs  # the truncated MP4 (tests/test_predict_inputs.py)

# dlib finds this rendered synthetic face (128 px); it finds few synthetic faces at all (1 in 8
# of subject 1-3 frames 0-7 at 96-256 px), so the detection tests use this one, and a blank image.
DETECTED = dict(seed=0, subject=3, frame=2, image_size=128)


@pytest.fixture(scope='module')
def workdir(tiny_data_dir, tmp_path_factory):
  """A baseline trained for 4 steps on the tiny synthetic BP4D-like data (32 px model input,
  faces aligned by five points on the device)."""
  config = config_base.get_config('baseline')
  config_base.synthetic_data(config, 'bp4d')
  config.data.update({'data_dir': tiny_data_dir, 'image_size': 48, 'num_subjects': 9,
                      'frames_per_subject': 6})
  config_base.synthetic_augment(config, 32)
  config.model.backbone = models.backbone_config('small_cnn', widths=(8, 16))
  config.train.update({'num_steps': 4, 'batch_size': 8, 'eval_every': 4})
  config.eval.batch_size = 8
  config.checkpoint.every = 4
  path = str(tmp_path_factory.mktemp('run'))
  train.train_and_evaluate(config, path)
  return path


@pytest.fixture(scope='module')
def test_faces(workdir):
  """The test split's stored faces and landmarks (the dataset's own evaluation inputs)."""
  pred = predictor_lib.Predictor.from_checkpoint(workdir)
  batch = next(input_pipeline.create_split(pred.config.data, 'test', batch_size=10, train=False))
  return batch['image'], batch['landmarks']


@pytest.fixture(scope='module')
def predictor(workdir):
  """The run's Predictor, loaded and compiled once for the tests that only call it."""
  return predictor_lib.Predictor.from_checkpoint(workdir)


def _reference(pred, images, landmarks):
  """The model's evaluation outputs (sigmoid of its logits) on preprocessed stored faces."""
  batch = augment.preprocess(None, {'image': np.stack(images), 'landmarks': np.stack(landmarks)},
                             pred.aug_config, train=False)
  out, _ = pred.run.apply_fn(pred.variables, batch, train=False)
  return np.asarray(jax.nn.sigmoid(out['au_logits']))


def _au_p(table):
  return table[[c for c in table.columns if c.endswith('_p')]].to_numpy(np.float64)


def test_cropped_pngs_cli_equals_eval_outputs_for_batch_1_and_32(workdir, test_faces, tmp_path):
  images, _ = test_faces
  folder = tmp_path / 'faces' / 'nested'
  folder.mkdir(parents=True)
  for k, image in enumerate(images):
    Image.fromarray(image).save(folder / f'{k:02d}.png')
  tables = {}
  for b in (1, 32):
    out = tmp_path / f'b{b}.csv'
    rc = predict.main(['--checkpoint', workdir, str(tmp_path / 'faces'), '--out', str(out),
                       '--faces', 'cropped', '--batch_size', str(b)])
    assert rc == 0
    tables[b] = pd.read_csv(out)
  t1, t32 = tables[1], tables[32]
  assert list(t1.columns) == list(t32.columns)
  assert list(t1.columns[:10]) == list(predictor_lib.FRAME_COLUMNS)
  assert [c for c in t1.columns if c.startswith('AU')][:2] == ['AU01_p', 'AU01_c']
  assert len(t1) == len(images) and (t1['success'] == 1).all()
  assert [os.path.basename(p) for p in t1['input']] == [f'{k:02d}.png' for k in range(len(images))]
  np.testing.assert_allclose(_au_p(t1), _au_p(t32), atol=1e-5, rtol=0)
  assert (t1.filter(like='_c') == t32.filter(like='_c')).all().all()
  pred = predictor_lib.Predictor.from_checkpoint(workdir)
  s = pred.info.image_size
  mean_lm = [faces_lib.cropped(im, s, pred.info.num_landmarks)[0].landmarks for im in images]
  ref = _reference(pred, list(images), mean_lm)
  np.testing.assert_allclose(_au_p(t1), ref, atol=1e-5, rtol=0)
  np.testing.assert_array_equal(t1.filter(like='_c').to_numpy(), (ref >= 0.5).astype(int))


def test_crops_with_their_landmarks_equal_eval_step_on_the_test_split(workdir, test_faces):
  """Stored faces given with their stored landmarks (as an OpenFace CSV would) reproduce the
  evaluation of the test split itself: ``train.eval_step`` on the dataset's batch."""
  images, landmarks = test_faces
  pred = predictor_lib.Predictor.from_checkpoint(workdir, batch_size=3)
  given = {k + 1: [faces_lib.FaceBox(np.array([0, 0, 48, 48], np.float32), lm, 1.0)]
           for k, lm in enumerate(landmarks)}
  table = pred.predict(list(images), faces='cropped', landmarks=given)
  batch = dataset_info.dummy_batch(pred.info, len(images))
  batch.update(image=images, landmarks=landmarks)
  ref = train.predict_batch(pred.run.apply_fn, pred.variables, batch, task=pred.task,
                           aug_config=pred.aug_config)  # what eval_step computes
  np.testing.assert_allclose(_au_p(table), np.asarray(ref['au_prob']), atol=1e-5, rtol=0)
  np.testing.assert_allclose(table[['x_0', 'y_0']].to_numpy(), landmarks[:, 0], atol=1e-5)
  # The same faces through the template alignment (--faces openface_csv): the model on those
  # aligned faces.
  table = pred.predict(list(images), faces='openface_csv', landmarks=given)
  stored = [pred.aligner(im, given[k + 1][0]) for k, im in enumerate(images)]
  ref = _reference(pred, [f.image for f in stored], [f.landmarks for f in stored])
  np.testing.assert_allclose(_au_p(table), ref, atol=1e-5, rtol=0)


def test_detection_pngs_and_no_face(workdir, tmp_path):
  pytest.importorskip('dlib')
  if not faces_lib.face_detection.available():
    pytest.skip('the face extra (dlib models) is not installed')
  face = examples.make_example(DETECTED['seed'], DETECTED['subject'], DETECTED['frame'],
                               DETECTED['image_size'])
  Image.fromarray(face['image']).save(tmp_path / 'face.png')
  Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(tmp_path / 'blank.png')
  (tmp_path / 'broken.jpg').write_bytes(b'not an image')
  out = tmp_path / 'out.csv'
  rc = predict.main(['--checkpoint', workdir, str(tmp_path / 'face.png'),
                     str(tmp_path / 'blank.png'), str(tmp_path / 'broken.jpg'), '--out', str(out),
                     '--save_annotated', str(tmp_path / 'ann')])
  assert rc == 1  # broken.jpg skipped, reported
  table = pd.read_csv(out)
  assert list(table['success']) == [1, 0]
  assert table.loc[1, 'AU01_p'] != table.loc[1, 'AU01_p']  # NaN: no face, no prediction
  # The detected landmarks are the drawn face's (within a few pixels).
  lm = np.stack([table.loc[0, [f'x_{i}' for i in range(68)]].to_numpy(float),
                 table.loc[0, [f'y_{i}' for i in range(68)]].to_numpy(float)], -1)
  assert np.abs(lm - face['landmarks']).mean() < 4.0
  pred = predictor_lib.Predictor.from_checkpoint(workdir)
  box = faces_lib.detect(face['image'])[0]
  stored = pred.aligner(face['image'], box)
  ref = _reference(pred, [stored.image], [stored.landmarks])
  np.testing.assert_allclose(_au_p(table.iloc[:1]), ref, atol=1e-5, rtol=0)
  assert sorted(os.listdir(tmp_path / 'ann')) == ['blank.png', 'face.png']


def test_video_mp4_cropped_and_detected(workdir, test_faces, tmp_path):
  pytest.importorskip('av')
  from faujax import video
  images, _ = test_faces
  detected = examples.make_example(DETECTED['seed'], DETECTED['subject'], DETECTED['frame'],
                                   DETECTED['image_size'])['image']
  path = str(tmp_path / 'clip.mp4')
  frames = [np.asarray(Image.fromarray(im).resize((128, 128))) for im in images[:3]]
  frames = [detected, frames[0], detected, frames[1], frames[2]]
  with video.VideoWriter(path, 10) as writer:
    for f in frames:
      writer.write(f)
  decoded = [im for _, _, im in video.read_frames(path)]
  assert len(decoded) == len(frames) and decoded[0].shape == (128, 128, 3)
  pred = predictor_lib.Predictor.from_checkpoint(workdir, batch_size=2)
  table = pred.predict_video(path, faces='cropped')
  assert list(table['frame']) == [1, 2, 3, 4, 5]
  np.testing.assert_allclose(table['timestamp'], np.arange(5) / 10, atol=1e-6)
  stored = [faces_lib.cropped(im, pred.info.image_size, pred.info.num_landmarks)[0]
            for im in decoded]
  ref = _reference(pred, [s.image for s in stored], [s.landmarks for s in stored])
  np.testing.assert_allclose(_au_p(table), ref, atol=1e-5, rtol=0)
  if not faces_lib.face_detection.available():
    return
  out = tmp_path / 'video.csv'
  # The rendered face scores 0.12 in the lossy MP4 frames (0.22 as a PNG), under the default
  # floor chosen on real photos: --min_confidence 0 keeps it.
  rc = predict.main(['--checkpoint', workdir, path, '--out', str(out), '--batch_size', '32',
                     '--save_annotated', str(tmp_path / 'ann'), '--min_confidence', '0'])
  assert rc == 0
  det = pd.read_csv(out)
  assert list(det['frame']) == [1, 2, 3, 4, 5]
  assert det.loc[[0, 2], 'success'].tolist() == [1, 1]  # the detectable face (lossy MP4 frames)
  for k in np.flatnonzero(det['success'] == 1):
    box = faces_lib.detect(decoded[k])[0]
    s = pred.aligner(decoded[k], box)
    np.testing.assert_allclose(_au_p(det.iloc[[k]]), _reference(pred, [s.image], [s.landmarks]),
                               atol=1e-5, rtol=0)
  assert sorted(os.listdir(tmp_path / 'ann')) == ['clip_annotated.mp4', 'clip_au.png']
  assert len(list(video.read_frames(str(tmp_path / 'ann' / 'clip_annotated.mp4')))) == 5


def test_broken_video_is_reported_not_a_crash(workdir, tmp_path, capsys):
  pytest.importorskip('av')
  (tmp_path / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42 truncated')
  Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(tmp_path / 'ok.png')
  out = tmp_path / 'out.csv'
  rc = predict.main(['--checkpoint', workdir, str(tmp_path), '--out', str(out),
                     '--faces', 'cropped'])
  assert rc == 1
  assert 'broken.mp4' in capsys.readouterr().err
  assert pd.read_csv(out)['success'].tolist() == [1]


def test_a_truncated_mp4_is_listed_with_the_frames_read(workdir, tmp_path, capsys):
  """An MP4 with its index at the front, cut to a third: the frames before the cut are
  predicted, the file is listed once, by name, with their number, and the exit status is 1."""
  path = tmp_path / 'in' / 'clip.mp4'
  path.parent.mkdir()
  test_predict_inputs.write_faststart_mp4(path)
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 3])
  out = tmp_path / 'out.csv'
  rc = predict.main(['--checkpoint', workdir, str(path.parent), '--out', str(out),
                     '--faces', 'cropped'])
  err = capsys.readouterr().err
  table = pd.read_csv(out)
  assert rc == 1
  assert 0 < len(table) < 60 and (table['success'] == 1).all()
  assert f'decoded {len(table)} of the 60 frames its container lists' in err
  assert err.count(str(path)) == 1 and 'skipped or read in part' in err


def test_missing_input_and_empty_folder_are_usage_errors(workdir, tmp_path, capsys):
  (tmp_path / 'empty').mkdir()
  for bad, says in ((tmp_path / 'gone.png', 'no such file or folder'),
                    (tmp_path / 'empty', 'the folder holds no image or video')):
    out = tmp_path / 'out.csv'
    rc = predict.main(['--checkpoint', workdir, str(bad), '--out', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f'{bad}: {says}' in err and 'FileNotFoundError' not in err, err
    assert not out.exists()


def _openface_csv(path, faces_per_frame):
  """An OpenFace CSV of FaceBoxes per 1-based frame."""
  header = ['frame', 'face_id', 'confidence', 'success'] + [
      f'x_{i}' for i in range(68)] + [f'y_{i}' for i in range(68)]
  lines = [', '.join(header)]
  for frame, faces in faces_per_frame.items():
    for k, f in enumerate(faces):
      lm = np.asarray(f.landmarks)
      lines.append(', '.join(map(str, [frame, k, f.confidence, 1] + list(lm[:, 0])
                                  + list(lm[:, 1]))))
  path.write_text('\n'.join(lines) + '\n')


def _mean_face(cx, cy, side, confidence=1.0):
  """The mean face scaled to ``side`` (its landmarks' box ~0.6 of that) centred on (cx, cy)."""
  lm = (mean_face.MEAN_FACE_68 - mean_face.FRAME_SIZE / 2) * (side / mean_face.FRAME_SIZE)
  lm = (lm + np.array([cx, cy], np.float32)).astype(np.float32)
  return faces_lib.FaceBox(np.concatenate([lm.min(0), lm.max(0)]), lm, confidence)


def test_faces_under_the_confidence_or_size_floor_are_not_predicted(workdir, predictor,
                                                                   tmp_path):
  Image.fromarray(np.full((240, 240, 3), 120, np.uint8)).save(tmp_path / 'frame.png')
  faces = {1: [_mean_face(70, 70, 150, 0.9),  # box side 93 px
               _mean_face(180, 180, 60, 0.1),  # 37 px
               _mean_face(180, 40, 40, 0.9)]}  # 25 px
  assert [round(faces_lib.box_side(f)) for f in faces[1]] == [93, 37, 25]
  _openface_csv(tmp_path / 'of.csv', faces)
  for floors, want in (({}, [0.9]),  # the defaults: 0.2, 32 px
                       (dict(min_confidence=0.05), [0.1, 0.9]),
                       (dict(min_face=20), [0.9, 0.9]),
                       (dict(min_confidence=0.95), [])):
    table = predictor.predict([str(tmp_path / 'frame.png')], faces='openface_csv',
                              landmarks=faces, **floors)
    assert sorted(table.loc[table['success'] == 1, 'confidence']) == want, floors
    assert len(table) == max(len(want), 1)  # no face left: one row with success 0
  out = tmp_path / 'out.csv'
  rc = predict.main(['--checkpoint', workdir, str(tmp_path / 'frame.png'), '--out', str(out),
                     '--faces', 'openface_csv', '--landmarks_csv', str(tmp_path / 'of.csv'),
                     '--min_confidence', '0.05', '--min_face', '20'])
  assert rc == 0 and sorted(pd.read_csv(out)['confidence']) == [0.1, 0.9, 0.9]


def test_face_ids_follow_each_face_through_a_video(predictor, tmp_path):
  """Two faces whose sizes swap, one missed in a frame, then a third: face_id follows position,
  and the plot follows the face seen in the most frames."""
  pytest.importorskip('av')
  from faujax import annotate
  from faujax import video
  path = str(tmp_path / 'two.mp4')
  with video.VideoWriter(path, 10) as writer:
    for _ in range(4):
      writer.write(np.full((200, 240, 3), 100, np.uint8))
  left = lambda side: _mean_face(60, 60, side)
  right = lambda side: _mean_face(180, 60, side)
  given = {1: [left(90), right(80)], 2: [right(96), left(84)], 3: [right(96)],
           4: [right(94), _mean_face(120, 150, 60), left(86)]}
  table = predictor.predict_video(path, faces='openface_csv', landmarks=given)
  got = [(r.frame, r.face_id, 'new' if r.face_y > 100 else 'left' if r.face_x < 120 else
          'right') for r in table.itertuples()]
  assert got == [(1, 0, 'left'), (1, 1, 'right'), (2, 0, 'left'), (2, 1, 'right'),
                 (3, 1, 'right'), (4, 0, 'left'), (4, 1, 'right'), (4, 2, 'new')]
  assert annotate.main_face(table) == 1  # the right face: in all 4 frames


def test_decisions_of_missing_probabilities_are_missing():
  from faujax import metrics as metrics_lib
  from faujax import tasks
  task = tasks.Task(name='au', label_names=('AU1', 'AU12'), targets=None, loss=None,
                    eval_outputs=None, selection_metric='', accumulator=None, table=None)
  cols = predictor_lib.prediction_columns(
      task, {metrics_lib.AU_PROB: np.array([[0.7, np.nan], [0.2, 0.5]])}, 0.5)
  assert list(cols) == ['AU01_p', 'AU01_c', 'AU12_p', 'AU12_c']
  np.testing.assert_array_equal(cols['AU01_c'], [1, 0])
  np.testing.assert_array_equal(cols['AU12_c'], [np.nan, 1])


def test_openface_csv_reader_and_errors(tmp_path):
  lm = np.arange(136, dtype=np.float32).reshape(2, 68).T
  header = ['frame', 'face_id', 'timestamp', 'confidence', 'success'] + [
      f'x_{i}' for i in range(68)] + [f'y_{i}' for i in range(68)]
  rows = [[1, 0, 0.0, 0.9, 1] + list(lm[:, 0]) + list(lm[:, 1]),
          [2, 0, 0.1, 0.0, 0] + [0.0] * 136]
  path = tmp_path / 'of.csv'
  path.write_text(', '.join(header) + '\n' + '\n'.join(', '.join(map(str, r)) for r in rows))
  got = faces_lib.read_openface_csv(str(path))
  assert sorted(got) == [1, 2] and got[2] == []
  np.testing.assert_array_equal(got[1][0].landmarks, lm)
  assert got[1][0].confidence == pytest.approx(0.9)
  (tmp_path / 'bad.csv').write_text('frame, x_0\n1, 2\n')
  with pytest.raises(ValueError, match='missing'):
    faces_lib.read_openface_csv(str(tmp_path / 'bad.csv'))


def test_not_a_workdir_is_a_clear_error(tmp_path, capsys):
  Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(tmp_path / 'face.png')
  rc = predict.main(['--checkpoint', str(tmp_path), str(tmp_path), '--out',
                     str(tmp_path / 'x.csv')])
  assert rc == 2
  assert 'not a faujax run' in capsys.readouterr().err


def test_the_checkpoint_holds_the_label_space_and_a_copied_workdir_predicts_without_its_dataset(
    workdir, test_faces, tmp_path, monkeypatch):
  import shutil
  run = trained_run.load_run(workdir)
  want = builders.get_dataset_info(run.config.data)
  info = run.info
  assert (info.label_names, info.aus, info.num_examples) == (
      want.label_names, want.aus, want.num_examples)
  np.testing.assert_array_equal(info.class_counts, want.class_counts)
  np.testing.assert_allclose(info.train_occurrence_rates, want.train_occurrence_rates)
  assert np.shape(run.face_template) == (5, 2)  # the synthetic faces are 'template'-aligned
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  images, landmarks = test_faces
  stored = [faces_lib.StoredFace(im, lm) for im, lm in zip(images, landmarks)]
  expected = predictor_lib.Predictor.from_checkpoint(workdir).evaluate_faces(stored)

  def no_dataset(*args, **kwargs):
    raise AssertionError('the dataset was read')
  monkeypatch.setattr(builders, 'get_dataset_info', no_dataset)
  monkeypatch.setattr(builders, 'get_builder', no_dataset)
  got = predictor_lib.Predictor.from_checkpoint(copy).evaluate_faces(stored)
  for k in expected:
    np.testing.assert_array_equal(got[k], expected[k])


def test_a_checkpoint_is_chosen_by_step_or_by_its_directory(workdir, capsys):
  from faujax import checkpoint as ckpt_lib
  latest = predictor_lib.Predictor.from_checkpoint(workdir, which='latest')
  assert latest.checkpoint == os.path.join(workdir, 'checkpoints', '4')
  for which, path, where in ((4, workdir, 'checkpoints'), ('4', workdir, 'checkpoints'),
                             ('best', os.path.join(workdir, 'checkpoints', '4'), 'checkpoints'),
                             ('latest', os.path.join(workdir, 'best', '4'), 'best')):
    pred = predictor_lib.Predictor.from_checkpoint(path, which=which)
    assert pred.checkpoint == os.path.join(workdir, where, '4'), (which, path)
    for a, b in zip(jax.tree.leaves(pred.variables['params']),
                    jax.tree.leaves(latest.variables['params'])):
      np.testing.assert_array_equal(a, b)  # one step, one set of weights
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=r'no checkpoint of step 3; periodic steps: \[4\]'):
    predictor_lib.Predictor.from_checkpoint(workdir, which=3)
  with pytest.raises(ValueError, match='which'):
    predictor_lib.Predictor.from_checkpoint(workdir, which='first')
  with pytest.raises(SystemExit):
    predict.main(['--checkpoint', workdir, '--which', 'first', '--out', 'x.csv', workdir])
  assert "expected 'best', 'latest' or a step number" in capsys.readouterr().err

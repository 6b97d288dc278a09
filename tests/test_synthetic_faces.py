"""Tests of the synthetic face renderer, latent expression model, splits and tfds builder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

import faujax.data  # noqa: F401  (registers the builder)
from faujax import labels
from faujax.data import splits
from faujax.data.synthetic_faces import builder as builder_lib
from faujax.data.synthetic_faces import examples
from faujax.data.synthetic_faces import face_model
from faujax.data.synthetic_faces import renderer

AU = face_model.AU_INDEX


def _strength(**aus) -> np.ndarray:
  s = np.zeros(face_model.NUM_AUS)
  for name, value in aus.items():
    s[AU[int(name[2:])]] = value
  return s


def _clean(**kw) -> face_model.Nuisance:
  return dataclasses.replace(face_model.neutral_nuisance(), **kw)


@pytest.fixture(scope='module')
def identity():
  return face_model.sample_identity(0, 4)


def _patch(img, xy, r=3):
  x, y = int(round(xy[0])), int(round(xy[1]))
  return img[y - r:y + r + 1, x - r:x + r + 1].astype(np.float32)


@pytest.mark.parametrize('au, moved, unrelated', [
    (12, [48, 54], [19, 24, 36]),  # lip corner puller: mouth corners, not brows or eyes
    (1, [21, 22], [48, 54, 8]),  # inner brow raiser: inner brows, not the mouth
    (26, [8, 57], [19, 36, 45]),  # jaw drop: chin and lower lip, not brows or eyes
    (43, [37, 44], [48, 8, 33]),  # eyes closed: upper lids, not the mouth
    (9, [31, 35], [8, 0, 16]),  # nose wrinkler: nostril wings, not chin or jaw
])
def test_patch_changes_only_where_the_au_moves_landmarks(identity, au, moved, unrelated):
  nuisance = _clean()
  img0, lm0 = renderer.render_face(identity, _strength(), nuisance, 96)
  img1, lm1 = renderer.render_face(identity, _strength(**{f'au{au}': 5.0}), nuisance, 96)
  for i in moved:
    assert np.linalg.norm(lm1[i] - lm0[i]) > 0.8, (au, i)
    assert np.abs(_patch(img1, lm0[i]) - _patch(img0, lm0[i])).mean() > 3.0, (au, i)
  for i in unrelated:
    np.testing.assert_allclose(lm1[i], lm0[i], atol=1e-5)
    np.testing.assert_array_equal(_patch(img1, lm0[i]), _patch(img0, lm0[i]))


def test_au_movement_directions(identity):
  base = renderer.canonical_landmarks(identity, _strength())

  def moved(**aus):
    return renderer.canonical_landmarks(identity, _strength(**aus)) - base
  d = moved(au12=5)
  assert d[48, 1] < -0.03 and d[54, 1] < -0.03  # corners up
  assert d[48, 0] < -0.03 and d[54, 0] > 0.03  # and out
  d = moved(au15=5)
  assert d[48, 1] > 0.03 and d[54, 1] > 0.03  # corners down
  d = moved(au1=5)
  assert d[21, 1] < -0.05 and abs(d[17, 1]) < 0.01  # inner brow up, outer not
  d = moved(au2=5)
  assert d[17, 1] < -0.05 and abs(d[21, 1]) < 0.01
  d = moved(au4=5)
  assert d[21, 1] > 0.03 and d[21, 0] > 0.02 and d[22, 0] < -0.02  # lowered and drawn together
  d = moved(au5=5)
  assert d[37, 1] < -0.02  # upper lid raised
  d = moved(au25=5)
  assert d[66, 1] - d[62, 1] > 0.03  # lips part
  d = moved(au26=5)
  assert d[8, 1] > 0.08 and abs(d[0, 1]) < 1e-6  # chin drops, jaw hinge stays
  d = moved(au20=5)
  assert d[54, 0] - d[48, 0] > 0.06  # lips stretched horizontally
  tight = renderer.canonical_landmarks(identity, _strength(au23=5))
  assert tight[57, 1] - tight[51, 1] < 0.9 * (base[57, 1] - base[51, 1])  # lips thinned
  assert tight[54, 0] - tight[48, 0] < base[54, 0] - base[48, 0]  # and narrowed


def _similarity(src, dst):
  """Least-squares similarity dst ~ a R src + t; returns (2x2 A, t, rms residual)."""
  n = len(src)
  m = np.zeros((2 * n, 4))
  m[0::2] = np.stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)], -1)
  m[1::2] = np.stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)], -1)
  sol, *_ = np.linalg.lstsq(m, dst.reshape(-1), rcond=None)
  a, b, tx, ty = sol
  A = np.array([[a, -b], [b, a]])
  res = dst - (src @ A.T + (tx, ty))
  return A, np.array([tx, ty]), np.sqrt((res ** 2).mean())


def _bilinear(img, xy):
  x, y = xy[..., 0], xy[..., 1]
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  h, w = img.shape[:2]
  c = lambda yy, xx: img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)
  return ((1 - fy) * ((1 - fx) * c(y0, x0) + fx * c(y0, x0 + 1))
          + fy * ((1 - fx) * c(y0 + 1, x0) + fx * c(y0 + 1, x0 + 1)))


def test_landmarks_true_under_rotation_scale_shift(identity):
  """Two renders related by a similarity: pixels around every landmark agree after the map."""
  strength = _strength(au12=4, au6=3, au1=3, au25=3)
  a = _clean(yaw=0.2)
  b = _clean(yaw=0.2, rotation=np.deg2rad(17.0), scale=0.34, shift=np.array([0.06, -0.03]))
  img_a, lm_a = renderer.render_face(identity, strength, a, 112)
  img_b, lm_b = renderer.render_face(identity, strength, b, 112)
  A, t, rms = _similarity(lm_b.astype(np.float64), lm_a.astype(np.float64))
  assert rms < 1e-3  # the landmark sets are related by exactly this similarity
  offsets = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3)), -1).reshape(-1, 2)
  pts_b = (lm_b[17:, None, :] + offsets[None]).reshape(-1, 2)  # around interior landmarks
  pts_a = pts_b @ A.T + t
  vals_b = _bilinear(img_b, pts_b)
  err = np.abs(_bilinear(img_a, pts_a) - vals_b).mean()
  wrong = np.abs(_bilinear(img_a, pts_a + (3.0, 0.0)) - vals_b).mean()
  assert err < 8.0 and wrong > 2.5 * err, (err, wrong)


def test_yaw_moves_the_nose_tip_more_than_the_eyes(identity):
  s = _strength()
  _, lm0 = renderer.render_face(identity, s, _clean(), 96)
  _, lm1 = renderer.render_face(identity, s, _clean(yaw=0.3), 96)
  eye_mid0 = (lm0[39] + lm0[42]) / 2
  eye_mid1 = (lm1[39] + lm1[42]) / 2
  assert (lm1[30, 0] - eye_mid1[0]) - (lm0[30, 0] - eye_mid0[0]) > 1.0


def test_deterministic_and_order_independent():
  a = examples.make_example(3, 5, 7, 40)
  for s, f in [(0, 0), (5, 6), (1, 7)]:  # unrelated work in between
    examples.make_example(3, s, f, 40)
  b = examples.make_example(3, 5, 7, 40)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  c = examples.make_example(4, 5, 7, 40)
  assert not np.array_equal(a['image'], c['image'])


def _phi(x, y):
  return np.corrcoef(x, y)[0, 1]


@pytest.fixture(scope='module')
def states():
  out = []
  for s in range(40):
    idn = face_model.sample_identity(0, s)
    out += [face_model.sample_frame(idn, 0, f) for f in range(12)]
  return out


def test_cooccurrence_signs(states):
  occ = np.stack([st.au_occurrence for st in states])  # (480, 18)
  assert _phi(occ[:, AU[6]], occ[:, AU[12]]) > 0.25
  assert _phi(occ[:, AU[12]], occ[:, AU[15]]) < -0.05
  assert _phi(occ[:, AU[1]], occ[:, AU[2]]) > 0.25
  assert _phi(occ[:, AU[9]], occ[:, AU[10]]) > 0.2
  assert _phi(occ[:, AU[25]], occ[:, AU[26]]) > 0.3
  # AU12 and AU15 are never both strongly active (antagonists).
  assert not np.any((occ[:, AU[12]] > 0) & (occ[:, AU[15]] > 0) &
                    (np.stack([st.au_intensity for st in states])[:, AU[12]] >= 4))
  rates = occ.mean(0)
  assert np.all(rates > 0.02) and np.all(rates < 0.7), rates


def test_expression_labels_consistent(states):
  for st in states:
    assert 0 <= st.expression < 7
    assert -1 <= st.valence <= 1 and -1 <= st.arousal <= 1
    if st.expression > 0:
      name = labels.EXPRESSIONS_7[st.expression]
      assert st.expression_multi[labels.BASIC_6.index(name)] == 1.0
    else:
      assert st.expression_multi.sum() == 0
    np.testing.assert_array_equal(st.au_occurrence, (st.au_intensity >= 2).astype(np.float32))
  cats = np.array([st.expression for st in states])
  val = np.array([st.valence for st in states])
  aro = np.array([st.arousal for st in states])
  assert val[cats == 1].mean() > 0.3 and val[cats == 2].mean() < -0.3
  assert aro[cats == 3].mean() > 0.3
  assert len(set(cats.tolist())) == 7


def test_resolve_split():
  synth = builder_lib.SyntheticFaces.TEST_PART_OF_FOLD
  assert splits.resolve_split(1, 'test', synth) == 'part1+part1_val'
  assert splits.resolve_split(1, 'train', synth) == 'part2+part3'
  assert splits.resolve_split(1, 'validation', synth) == 'part2_val+part3_val'
  bp4d = {1: 3, 2: 2, 3: 1}
  assert splits.resolve_split(1, 'test', bp4d) == 'part3+part3_val'
  assert splits.resolve_split(3, 'train', bp4d) == 'part2+part3'
  with pytest.raises(ValueError, match='split'):
    splits.resolve_split(1, 'dev', synth)
  with pytest.raises(ValueError, match='fold'):
    splits.resolve_split(4, 'train', synth)


def test_config_validation():
  with pytest.raises(ValueError, match='au_set'):
    builder_lib.SyntheticFacesConfig(name='x', au_set='ck+')
  with pytest.raises(ValueError, match='image_size'):
    builder_lib.SyntheticFacesConfig(name='x', image_size=8)
  with pytest.raises(ValueError, match='num_subjects'):
    builder_lib.SyntheticFacesConfig(name='x', num_subjects=4)


TINY = dict(image_size=32, num_subjects=12, frames_per_subject=6, seed=1, num_workers=1)


@pytest.fixture(scope='module')
def tiny_builder(tmp_path_factory):
  tfds.disable_progress_bar()
  cfg = builder_lib.SyntheticFacesConfig(name='bp4d_tiny', au_set='bp4d', **TINY)
  b = builder_lib.SyntheticFaces(config=cfg, data_dir=str(tmp_path_factory.mktemp('tfds')))
  b.download_and_prepare()
  return b


def _read(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_builder_features_and_exact_examples(tiny_builder):
  exs = _read(tiny_builder, 'part1')
  idx = [AU[a] for a in labels.BP4D_AUS]
  for ex in exs[:4]:
    assert ex['image'].shape == (32, 32, 3) and ex['image'].dtype == np.uint8
    assert ex['landmarks'].shape == (68, 2) and ex['au'].shape == (12,)
    np.testing.assert_array_equal(ex['au_mask'], np.ones(12))
    # Find the frame: the stored example equals the pure function's output (PNG is lossless).
    matches = []
    for f in range(TINY['frames_per_subject']):
      ref = examples.make_example(TINY['seed'], int(ex['subject']), f, 32)
      if np.array_equal(ref['image'], ex['image']):
        matches.append(ref)
    assert len(matches) == 1
    ref = matches[0]
    np.testing.assert_array_equal(ex['landmarks'], ref['landmarks'])
    np.testing.assert_array_equal(ex['au'], ref['au'][idx])
    np.testing.assert_array_equal(ex['au_intensity'], ref['au_intensity'][idx])
    assert ex['expression'] == ref['expression']


def test_splits_are_subject_exclusive(tiny_builder):
  subjects = {name: {int(e['subject']) for e in _read(tiny_builder, name)}
              for name in splits.PHYSICAL_SPLITS}
  names = list(subjects)
  for i, a in enumerate(names):
    assert subjects[a], a
    for b in names[i + 1:]:
      assert not subjects[a] & subjects[b], (a, b)
  assert set().union(*subjects.values()) == set(range(TINY['num_subjects']))
  assert subjects == {k: set(v) for k, v in tiny_builder.info.metadata['subjects'].items()}
  tpf = tiny_builder.TEST_PART_OF_FOLD
  test_sets = []
  for fold in splits.FOLDS:
    per = {s: set().union(*(subjects[p] for p in splits.split_parts(fold, s, tpf)))
           for s in splits.LOGICAL_SPLITS}
    assert not per['train'] & per['test'] and not per['validation'] & per['test']
    assert not per['train'] & per['validation']
    assert per['train'] | per['validation'] | per['test'] == set(range(TINY['num_subjects']))
    test_sets.append(per['test'])
  assert set().union(*test_sets) == set(range(TINY['num_subjects']))  # every subject tested once
  assert sum(len(t) for t in test_sets) == TINY['num_subjects']


def test_metadata_rates_match_the_training_labels(tiny_builder):
  tpf = tiny_builder.TEST_PART_OF_FOLD
  for fold in splits.FOLDS:
    exs = _read(tiny_builder, splits.resolve_split(fold, 'train', tpf))
    rates = np.mean([e['au'] for e in exs], axis=0)
    np.testing.assert_allclose(
        tiny_builder.info.metadata['train_occurrence_rates'][f'fold{fold}'], rates, atol=1e-6)
    # Task 'au': class_counts are the positive AU labels of the fold's training split.
    counts = np.sum([e['au'] for e in exs], axis=0).astype(np.int64)
    np.testing.assert_array_equal(tiny_builder.info.metadata['class_counts'][f'fold{fold}'], counts)
  meta = tiny_builder.info.metadata
  assert meta['task'] == 'au' and meta['label_names'] == labels.au_label_names(labels.BP4D_AUS)
  assert meta['multi_label_names'] == list(labels.BASIC_6)


@pytest.mark.parametrize('task, names', [
    ('expression', labels.EXPRESSIONS_7), ('expression_multi', labels.BASIC_6)])
def test_label_statistics_of_the_expression_tasks(task, names):
  """Per-fold statistics of the task's labels equal those of the rendered training examples."""
  cfg = builder_lib.SyntheticFacesConfig(name=f'{task}_stats', au_set='all', task=task,
                                         image_size=24, num_subjects=6, frames_per_subject=3)
  tpf = builder_lib.SyntheticFaces.TEST_PART_OF_FOLD
  stats = builder_lib.label_statistics(cfg, tpf)
  assert builder_lib.label_names(cfg) == list(names)
  for fold in splits.FOLDS:
    subjects = [s for part in splits.split_parts(fold, 'train', tpf)
                for s in stats['subjects'][part]]
    exs = [examples.make_example(cfg.seed, s, f, 24) for s in subjects for f in range(3)]
    if task == 'expression':
      y = np.eye(7)[[int(e['expression']) for e in exs]]
    else:
      y = np.stack([e['expression_multi'] for e in exs])
    np.testing.assert_array_equal(stats['class_counts'][f'fold{fold}'], y.sum(0))
    np.testing.assert_allclose(stats['train_occurrence_rates'][f'fold{fold}'], y.mean(0),
                               atol=1e-12)


def test_build_prints_no_download_banner(tmp_path, capfd):
  """tfds' "Downloading and preparing dataset Unknown size ..." banner is not printed."""
  cfg = builder_lib.SyntheticFacesConfig(name='banner', au_set='disfa', image_size=24,
                                         num_subjects=6, frames_per_subject=1, num_workers=1)
  builder_lib.SyntheticFaces(config=cfg, data_dir=str(tmp_path)).download_and_prepare()
  out, err = capfd.readouterr()
  assert 'Unknown size' not in out + err and 'Downloading' not in out + err
  assert 'Dl Size' not in out + err


def test_registered_configs():
  b = tfds.builder_cls('synthetic_faces')
  names = {c.name: c for c in b.BUILDER_CONFIGS}
  assert {'bp4d', 'disfa', 'emotionet', 'expression'} <= set(names)
  assert names['disfa'].aus == labels.DISFA_AUS
  assert names['emotionet'].aus == labels.EMOTIONET_AUS
  assert names['expression'].aus == labels.ALL_AUS and names['expression'].task == 'expression'
  assert names['expression_multi'].task == 'expression_multi'
  assert names['expression_multi'].aus == labels.ALL_AUS
  with pytest.raises(ValueError, match='task must be one of'):
    builder_lib.SyntheticFacesConfig(name='x', task='va')

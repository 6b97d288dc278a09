"""Tests of the Emotion-GCN model (faujax.models.emotion_gcn), its loss, variants and figures."""

from __future__ import annotations

import importlib.util
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import config_base
from faujax import config_schema
from faujax import labels
from faujax import model_state
from faujax import models
from faujax import relations
from faujax import tasks
from faujax.models import emotion_gcn
from faujax.models import emotion_gcn_figures

SIZE = 32
WIDTHS = (8, 16)  # small_cnn: 32 px -> 8 x 8 x 16


def _info(expr, val, aro, **extra):
  train = {'expression': np.asarray(expr), 'valence': np.asarray(val, np.float32),
           'arousal': np.asarray(aro, np.float32), **extra}
  counts = np.bincount(np.asarray(expr)[np.asarray(expr) >= 0], minlength=7)
  return types.SimpleNamespace(task='expression', num_labels=7,
                               label_names=list(labels.EXPRESSIONS_7), class_counts=counts,
                               train_labels=train)


def _random_info(n=120, seed=0, **extra):
  rng = np.random.default_rng(seed)
  expr = np.concatenate([np.arange(7), rng.integers(0, 7, n - 7)])
  centre_v = np.array([0.0, 0.8, -0.7, 0.2, -0.6, -0.6, -0.5])
  centre_a = np.array([0.0, 0.3, -0.4, 0.8, 0.7, 0.3, 0.7])
  val = np.clip(centre_v[expr] + 0.2 * rng.normal(size=n), -1, 1)
  aro = np.clip(centre_a[expr] + 0.2 * rng.normal(size=n), -1, 1)
  return _info(expr, val, aro, **extra)


SMALL = {'name': 'small_cnn', 'widths': WIDTHS}


def _model(info, dtype=jnp.float32, **kwargs):
  """Emotion-GCN with its constants prepared from ``info`` (``faujax.models.prepare``)."""
  constants = models.prepare({'name': 'emotion_gcn', **kwargs}, info)
  return emotion_gcn.EmotionGCN(info, constants=constants, backbone=SMALL, dtype=dtype,
                                rngs=nnx.Rngs(0), **kwargs)


def _adjacency(info, **kwargs):
  return emotion_gcn.build_adjacency(info, **kwargs)


@pytest.fixture(scope='module')
def built():
  info = _random_info()
  model = _model(info)
  images = jax.random.normal(jax.random.key(1), (3, SIZE, SIZE, 3))
  return info, model, model_state.variables(model), images


# ------------------------------------------------------------------------------ adjacency


def test_adjacency_matches_hand_computed_example():
  # Happy = [1, 1, 0, 0] (centred ranks [1, 1, -1, -1]); valence ranks [4, 3, 2, 1] (centred
  # [1.5, .5, -.5, -1.5]): rho = 4 / sqrt(4 * 5) = 0.894 for happy and (negated) neutral.
  # Arousal ranks [1, 4, 3, 2]: rho(happy, arousal) = 0. Absent classes are constant: rho = 0.
  # The 5th example has no expression and the 6th no VA (-2, AffectNet): both are dropped.
  info = _info([1, 1, 0, 0, -1, 3], [0.9, 0.8, 0.1, 0.0, 0.5, -2.0],
               [0.1, 0.5, 0.3, 0.2, 0.5, -2.0])
  a = _adjacency(info)
  # eq. 5 (tau 0.1): edges neutral-valence and happy-valence; eq. 6 (p 0.7).
  expected = np.diag([0.3] * 9)
  v = 7
  expected[0, v] = expected[1, v] = 0.7
  expected[v, 0] = expected[v, 1] = 0.35
  np.testing.assert_allclose(a, expected, atol=1e-12)
  np.testing.assert_allclose(relations.emotion_gcn_correlation(
      np.array([1, 1, 0, 0]), np.array([[0.9, .1], [.8, .5], [.1, .3], [0., .2]]))[1, 7],
      4 / np.sqrt(20), atol=1e-12)
  # tau above the correlation: no edges, only the self weights 1 - p.
  np.testing.assert_allclose(_adjacency(info, tau=0.95),
                             np.diag([0.3] * 9), atol=1e-12)


def test_adjacency_is_fixed_constant_not_parameter(built):
  _, model, variables, _ = built
  flat = jax.tree_util.tree_leaves_with_path(variables['params']['label_gcn'])
  assert sorted(jax.tree_util.keystr(p) for p, _ in flat) == ["['gcn0']['kernel']",
                                                              "['gcn1']['kernel']"]
  assert model.adjacency.shape == (9, 9)
  # Constants are neither trained nor checkpointed: not in params or batch_stats.
  assert 'adjacency' not in model_state.flatten(variables['params'])


def test_conditional_variant_uses_multilabel_cooccurrence():
  rng = np.random.default_rng(3)
  multi = (rng.random((120, 6)) < 0.3).astype(np.float32)
  info = _random_info(expression_multi=multi)
  a = _adjacency(info, kind='conditional', p=0.5)
  # BASIC_6 order -> EXPRESSIONS_7 order, neutral = no basic expression.
  seven = np.zeros((120, 7))
  for k, name in enumerate(labels.EXPRESSIONS_7[1:], start=1):
    seven[:, k] = multi[:, labels.BASIC_6.index(name)]
  seven[:, 0] = multi.sum(1) == 0
  tr = info.train_labels
  expected = relations.emotion_gcn_adjacency(
      tr['expression'], np.stack([tr['valence'], tr['arousal']], 1), tau=0.1, p=0.5,
      expression_labels=seven, normalize=False)
  np.testing.assert_allclose(a, expected, atol=1e-12)
  assert np.count_nonzero(a[1:7, 1:7] - np.diag(np.diag(a[1:7, 1:7]))) > 0
  with pytest.raises(ValueError, match='expression_multi'):
    _adjacency(_random_info(), kind='conditional')


def test_conditional_variant_from_file(tmp_path):
  y = np.zeros((4, 7))
  y[0, [1, 3]] = 1
  y[1, [1]] = 1
  y[2, [4, 2]] = 1
  y[3, 0] = 1
  path = tmp_path / 'emotic7.txt'
  np.savetxt(path, y, fmt='%d', delimiter=',')
  info = _random_info()
  got = emotion_gcn.cooccurrence_labels_from(str(path), info)
  np.testing.assert_array_equal(got, y)
  np.save(tmp_path / 'e.npy', y)
  np.testing.assert_array_equal(emotion_gcn.cooccurrence_labels_from(str(tmp_path / 'e.npy'), info), y)
  np.save(tmp_path / 'bad.npy', y[:, :6])
  with pytest.raises(ValueError, match='bad.npy'):
    emotion_gcn.cooccurrence_labels_from(str(tmp_path / 'bad.npy'), info)


def test_config_errors():
  info = _random_info()
  with pytest.raises(ValueError, match='config.model.adjacency'):
    _adjacency(info, kind='pearson')
  with pytest.raises(ValueError, match='gcn_layers'):
    _model(info, gcn_layers=0)
  with pytest.raises(ValueError, match='config.model.classifier'):
    _model(info, classifier='mlp')
  no_labels = types.SimpleNamespace(**{**vars(info), 'train_labels': None})
  with pytest.raises(ValueError, match='train_labels'):
    _model(no_labels)
  _model(no_labels, classifier='linear')  # free classifiers need no training labels


# ------------------------------------------------------------------------------ GCN generator


def _leaky(x, slope=0.2):
  return np.where(x >= 0, x, slope * x)


def _mlgcn_norm(a):
  d = a.sum(1) ** -0.5
  return d[:, None] * a.T * d[None, :]


def test_outputs_equal_numpy_reference(built):
  info, model, variables, images = built
  out = model({'image': images}, train=False)
  assert out['expression_logits'].shape == (3, 7) and out['va'].shape == (3, 2)
  assert out['expression_logits'].dtype == jnp.float32 and out['va'].dtype == jnp.float32
  x = np.asarray(model.features(images, train=False), np.float64)
  assert x.shape == (3, WIDTHS[-1])
  # x is the global MAX pool of the trunk map (eq. 1).
  fmap = model.backbone(images, train=False)
  np.testing.assert_allclose(x, np.asarray(fmap).max(axis=(1, 2)), rtol=1e-6)
  z = np.asarray(model.label_gcn.embeddings, np.float64)
  a_hat = _mlgcn_norm(np.asarray(model.adjacency, np.float64))
  p = variables['params']['label_gcn']
  w0 = np.asarray(p['gcn0']['kernel'], np.float64)
  w1 = np.asarray(p['gcn1']['kernel'], np.float64)
  assert w0.shape == (384, 512) and w1.shape == (512, WIDTHS[-1])
  w = a_hat @ _leaky(a_hat @ z @ w0) @ w1  # eq. 2, no activation after the last layer
  np.testing.assert_allclose(model.classifier_weights(), w, rtol=1e-4, atol=1e-6)
  scores = x @ w.T
  np.testing.assert_allclose(out['expression_logits'], scores[:, :7], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['va'], scores[:, 7:], rtol=1e-4, atol=1e-5)


def test_gcn_init_bounds_and_layer_counts():
  info = _random_info()
  for layers, shapes in [(1, [(9, 16)]), (3, [(9, 512), (512, 512), (512, 16)])]:
    model = nnx.eval_shape(lambda: _model(info, gcn_layers=layers, embeddings='onehot'))
    params = model_state.variables(model)['params']
    got = [params['label_gcn'][f'gcn{i}']['kernel'].shape for i in range(layers)]
    assert got == shapes
  model = _model(info, embeddings='onehot')
  gcn = emotion_gcn.LabelGCN(model.label_gcn.embeddings[...], model.adjacency, 1024,
                             rngs=nnx.Rngs(2))
  for name, out in (('gcn0', 512), ('gcn1', 1024)):
    k = np.asarray(getattr(gcn, name).kernel[...])
    assert np.abs(k).max() <= 1 / np.sqrt(out) and np.abs(k).max() > 0.9 / np.sqrt(out)
  assert gcn().shape == (9, 1024)


def test_gradients_reach_gcn_and_trunk(built):
  _, model, variables, images = built
  fn = model_state.ModelFn.from_model(model)

  def loss(params):
    out, _ = fn({**variables, 'params': params}, {'image': images}, train=True)
    return jnp.sum(out['expression_logits'] ** 2) + jnp.sum(out['va'] ** 2)

  grads = jax.jit(jax.grad(loss))(variables['params'])
  for path in (('label_gcn', 'gcn0', 'kernel'), ('label_gcn', 'gcn1', 'kernel')):
    g = grads
    for k in path:
      g = g[k]
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
  assert max(np.abs(g).max() for g in jax.tree.leaves(grads['backbone'])) > 0


def test_bfloat16_trunk_gives_float32_outputs():
  model = _model(_random_info(), dtype=jnp.bfloat16, embeddings='onehot')
  out = model({'image': jnp.ones((2, SIZE, SIZE, 3))}, train=False)
  assert out['expression_logits'].dtype == jnp.float32 and out['va'].shape == (2, 2)
  assert np.all(np.isfinite(out['expression_logits']))


def test_linear_classifier_is_the_table_one_baseline():
  """``classifier='linear'``: free heads on the same max-pooled feature, W = their kernels."""
  model = _model(_random_info(), classifier='linear')
  images = jax.random.normal(jax.random.key(3), (2, SIZE, SIZE, 3))
  out = model({'image': images}, train=False)
  x = model.features(images, train=False)
  w = model.classifier_weights()
  assert w.shape == (9, WIDTHS[-1])
  np.testing.assert_allclose(out['expression_logits'], x @ w[:7].T + model.head.bias[...],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out['va'], x @ w[7:].T + model.va_head.bias[...], rtol=1e-5,
                             atol=1e-5)
  assert model.adjacency is None


# ------------------------------------------------------------------------------ loss


def _numpy_ccc(x, y):
  mx, my = x.mean(), y.mean()
  return 2 * np.mean((x - mx) * (y - my)) / (x.var() + y.var() + (mx - my) ** 2)


def test_expression_task_loss_is_weighted_ce_plus_ccc():
  """L = L^c + L^r: eq. 8-9 (w_i = f_min / f_i, torch weighted-mean normalisation) + eq. 11-12."""
  info = _random_info()
  info.class_counts = np.array([50, 200, 30, 25, 10, 5, 40])
  task = tasks.build(info, tasks.LossConfig(class_weighted=True, va='ccc', va_weight=1.0))
  rng = np.random.default_rng(7)
  b = 6
  logits = rng.normal(size=(b, 7)).astype(np.float32)
  va_pred = rng.normal(size=(b, 2)).astype(np.float32)
  batch = {'expression': np.array([0, 1, 5, 5, 3, 6], np.int32),
           'valence': rng.uniform(-1, 1, b).astype(np.float32),
           'arousal': rng.uniform(-1, 1, b).astype(np.float32),
           'valid': np.ones(b, np.float32)}
  total, aux = task.loss({'expression_logits': jnp.asarray(logits), 'va': jnp.asarray(va_pred)},
                         task.targets({k: jnp.asarray(v) for k, v in batch.items()}))
  w = 5.0 / info.class_counts  # the rarest class (disgust, 5) weighs 1
  y = batch['expression']
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  ce = -np.sum(w[y] * logp[np.arange(b), y]) / np.sum(w[y])
  va_true = np.stack([batch['valence'], batch['arousal']], 1)
  l_r = 1 - (_numpy_ccc(va_pred[:, 0].astype(np.float64), va_true[:, 0])
             + _numpy_ccc(va_pred[:, 1].astype(np.float64), va_true[:, 1])) / 2
  np.testing.assert_allclose(aux['ce'], ce, rtol=1e-5)
  np.testing.assert_allclose(aux['va_loss'], l_r, rtol=1e-5)
  np.testing.assert_allclose(total, ce + l_r, rtol=1e-5)


# ------------------------------------------------------------------------------ variants


def _load_config(name):
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'emotion_gcn', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'egcn_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('name', ['synthetic', 'affectnet', 'aff_wild2'])
def test_configs_and_variants(name):
  module = _load_config(name)
  expected = {'single_task': ('linear', 'none'), 'mtl_mse': ('linear', 'mse'),
              'mtl_ccc': ('linear', 'ccc'), 'emotion_gcn': ('gcn', 'ccc'),
              'conditional': ('gcn', 'ccc')}
  assert set(expected) == set(emotion_gcn.ABLATIONS)
  for variant, (classifier, va) in expected.items():
    c = config_base.resolve_config(module.get_config(variant))
    assert (c.model.name, c.model.classifier, c.loss.va) == ('emotion_gcn', classifier, va)
    if name != 'synthetic':  # the paper's optimiser; the synthetic config trains from scratch
      assert c.optim.name == 'sgd' and c.optim.momentum == 0.9 and c.schedule.name == 'step'
      assert c.schedule.decay_every_epochs == 10 and c.schedule.decay_factor == 0.1
  assert config_base.resolve_config(module.get_config()).model.classifier == 'gcn'
  conditional = config_base.resolve_config(module.get_config('conditional'))
  assert conditional.model.adjacency == 'conditional' and conditional.model.p == 0.5
  assert config_base.resolve_config(module.get_config()).model.p == 0.7  # the paper
  if name != 'synthetic':
    c = module.get_config()
    assert (c.train.batch_size, c.train.num_epochs, c.optim.learning_rate,
            c.optim.weight_decay, c.augment.image_size, c.model.backbone.name,
            c.augment.rotation_deg) == (35, 10, 1e-3, 1e-3, 227, 'densenet121', 30.0)
  with pytest.raises(config_schema.ConfigError, match='multi_gcn'):
    config_base.resolve_config(module.get_config('multi_gcn'))


def test_synthetic_config_builds_a_model():
  c = _load_config('synthetic').get_config()
  from faujax import models  # pylint: disable=g-import-not-at-top
  model = models.build(config_base.resolve_config(c).model, _random_info(), rngs=nnx.Rngs(0))
  assert model.backbone.num_features == 128 and model.label_gcn.num_layers == 2
  assert np.asarray(model.label_gcn.embeddings).shape == (9, 384)


# ------------------------------------------------------------------------------ figures


def _is_png(path):
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_figures_written_as_png(built, tmp_path):
  info, model, variables, _ = built
  confusion = np.arange(49).reshape(7, 7)
  paths = emotion_gcn_figures.write_figures(str(tmp_path), model, None, confusion,
                                            info.label_names)
  assert set(paths) == {'adjacency', 'confusion', 'cosine'}
  for p in paths.values():
    assert os.path.dirname(p) == str(tmp_path) and _is_png(p)
  sim = emotion_gcn_figures.cosine_similarity(emotion_gcn_figures.classifier_vectors(model))
  np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
  np.testing.assert_allclose(emotion_gcn_figures.normalized_confusion(confusion).sum(1), 1.0)


def test_figures_for_baseline(tmp_path):
  """Baselines have free linear heads (``head`` (C, 7), ``va_head`` (C, 2), ``models.baseline``)."""
  from faujax.models.baseline import Baseline  # pylint: disable=g-import-not-at-top
  info = types.SimpleNamespace(task='expression', num_labels=7)
  model = Baseline(info, backbone=SMALL, pooling='max', rngs=nnx.Rngs(0))
  paths = emotion_gcn_figures.write_figures(str(tmp_path), model, None, None,
                                            labels.EXPRESSIONS_7)
  assert set(paths) == {'cosine'} and _is_png(paths['cosine'])
  vec = emotion_gcn_figures.classifier_vectors(model)
  np.testing.assert_allclose(vec[:7], np.asarray(model.head.kernel[...]).T)
  np.testing.assert_allclose(vec[7:], np.asarray(model.va_head.kernel[...]).T)
  with pytest.raises(ValueError, match='va_head'):
    emotion_gcn_figures.classifier_vectors(object())


@pytest.mark.parametrize('kwargs,match', [
    ({'tau': 1.5}, r'config\.model\.tau=1\.5'), ({'p': -0.1}, r'config\.model\.p=-0\.1'),
    ({'hidden_dim': 0}, r'config\.model\.hidden_dim=0'),
    ({'leaky_slope': -1.0}, r'config\.model\.leaky_slope=-1\.0'),
])
def test_numeric_options_are_range_checked_naming_the_key(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _model(_random_info(), **kwargs)

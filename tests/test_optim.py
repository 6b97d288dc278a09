"""Optimiser and schedule construction (faujax.optim)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from faujax import config_schema
from faujax import optim


def _config(**overrides):
  """(OptimConfig, ScheduleConfig) read from config sections with ``overrides`` applied."""
  c = ml_collections.ConfigDict({
      'optim': config_schema.section(optim.OptimConfig),
      'schedule': config_schema.section(optim.ScheduleConfig)})
  c.optim.update({'name': 'sgd', 'learning_rate': 0.1, 'momentum': 0.0})
  c.schedule.update({'name': 'constant', 'decay_every_epochs': 2.0})
  for key, value in overrides.items():
    section, name = key.split('.')
    c[section][name] = value
  return (config_schema.read(optim.OptimConfig, c.optim, 'optim'),
          config_schema.read(optim.ScheduleConfig, c.schedule, 'schedule'))


def _optimizer(cfg, params, **kwargs):
  return optim.create_optimizer(cfg[0], cfg[1], params, **kwargs)


def test_step_schedule_decays_every_interval():
  sched = optim.create_schedule(_config(**{'schedule.name': 'step'})[1], base_lr=1.0,
                                steps_per_epoch=5, total_steps=40)
  # decay every 2 epochs = 10 steps.
  np.testing.assert_allclose([sched(0), sched(9), sched(10), sched(19), sched(20), sched(35)],
                             [1.0, 1.0, 0.1, 0.1, 0.01, 0.001], rtol=1e-6)


def test_cosine_with_warmup():
  cfg = _config(**{'schedule.name': 'cosine', 'schedule.warmup_epochs': 1.0})
  sched = optim.create_schedule(cfg[1], base_lr=2.0, steps_per_epoch=10, total_steps=110)
  assert float(sched(0)) == 0.0
  np.testing.assert_allclose(float(sched(5)), 1.0, rtol=1e-6)   # halfway through warm-up
  np.testing.assert_allclose(float(sched(10)), 2.0, rtol=1e-6)  # peak
  np.testing.assert_allclose(float(sched(60)), 1.0, rtol=1e-5)  # half of the cosine
  np.testing.assert_allclose(float(sched(110)), 0.0, atol=1e-7)


def test_lr_multiplier_scales_backbone_updates():
  params = {'backbone': {'w': jnp.ones(3)}, 'head': {'w': jnp.ones(3)}}
  cfg = _config(**{'optim.lr_multipliers': {'backbone': 0.1}})
  tx, _ = _optimizer(cfg, params, steps_per_epoch=1, total_steps=1)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['head']['w'], -0.1)
  np.testing.assert_allclose(updates['backbone']['w'], -0.01)


def test_sgd_weight_decay_is_l2_in_the_gradient():
  params = {'w': jnp.full(2, 2.0)}
  cfg = _config(**{'optim.weight_decay': 0.5})
  tx, _ = _optimizer(cfg, params, steps_per_epoch=1, total_steps=1)
  updates, _ = tx.update({'w': jnp.zeros(2)}, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], -0.1 * 0.5 * 2.0)


def test_nesterov_matches_pytorch_formula():
  # PyTorch SGD(nesterov): b = mu b + g; step = g + mu b.
  params = {'w': jnp.zeros(1)}
  cfg = _config(**{'optim.momentum': 0.9, 'optim.nesterov': True, 'optim.learning_rate': 1.0})
  tx, _ = _optimizer(cfg, params, steps_per_epoch=1, total_steps=2)
  state = tx.init(params)
  b = 0.0
  for g in (1.0, 2.0):
    updates, state = tx.update({'w': jnp.array([g])}, state, params)
    b = 0.9 * b + g
    np.testing.assert_allclose(updates['w'], [-(g + 0.9 * b)], rtol=1e-6)


def test_adam_matches_torch_adam_with_l2_weight_decay():
  """'adam' is torch.optim.Adam: weight decay enters the gradient (SVML-RGCN's Adam, wd 2e-4)."""
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=5).astype(np.float32)
  grads = [rng.normal(size=5).astype(np.float32) for _ in range(4)]
  cfg = _config(**{'optim.name': 'adam', 'optim.learning_rate': 0.01,
                   'optim.weight_decay': 0.3})
  params = {'w': jnp.asarray(w0)}
  tx, _ = _optimizer(cfg, params, steps_per_epoch=1, total_steps=4)
  state = tx.init(params)
  tw = torch.nn.Parameter(torch.tensor(w0))
  topt = torch.optim.Adam([tw], lr=0.01, weight_decay=0.3)
  for g in grads:
    updates, state = tx.update({'w': jnp.asarray(g)}, state, params)
    params = {'w': params['w'] + updates['w']}
    tw.grad = torch.tensor(g)
    topt.step()
  np.testing.assert_allclose(params['w'], tw.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_gradient_clipping():
  params = {'w': jnp.zeros(2)}
  cfg = _config(**{'optim.grad_clip_norm': 1.0, 'optim.learning_rate': 1.0})
  tx, _ = _optimizer(cfg, params, steps_per_epoch=1, total_steps=1)
  updates, _ = tx.update({'w': jnp.array([3.0, 4.0])}, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize('key,value', [('optim.name', 'rmsprop'), ('schedule.name', 'linear')])
def test_unknown_names_are_clear_errors(key, value):
  with pytest.raises(ValueError, match=key.replace('.', r'\.')):
    _optimizer(_config(**{key: value}), {'w': jnp.zeros(1)}, steps_per_epoch=1, total_steps=1)


def test_step_schedule_works_from_the_declared_defaults():
  """``--config.schedule.name=step`` alone used to crash (no decay_every_epochs declared)."""
  sched = optim.create_schedule(config_schema.read(optim.ScheduleConfig, {'name': 'step'},
                                                   'schedule'),
                                base_lr=1.0, steps_per_epoch=2, total_steps=50)
  assert float(sched(19)) == 1.0 and abs(float(sched(20)) - 0.1) < 1e-7


@pytest.mark.parametrize('section,cls,key,value,match', [
    ('optim', optim.OptimConfig, 'learning_rate', -1e-3, r'config\.optim\.learning_rate=-0\.001'),
    ('optim', optim.OptimConfig, 'learnig_rate', 1e-3, r'Did you mean learning_rate'),
    ('schedule', optim.ScheduleConfig, 'decay_factor', 0.0, r'decay_factor=0\.0'),
])
def test_bad_values_and_unknown_keys_name_the_key(section, cls, key, value, match):
  with pytest.raises(config_schema.ConfigError, match=match):
    config_schema.read(cls, {key: value}, section)


def test_lr_multiplier_that_matches_no_parameter_is_an_error():
  cfg = _config(**{'optim.lr_multipliers': {'bakbone': 0.1}})
  with pytest.raises(config_schema.ConfigError, match='lr_multipliers.bakbone'):
    _optimizer(cfg, {'backbone': {'w': jnp.ones(1)}}, steps_per_epoch=1, total_steps=1)

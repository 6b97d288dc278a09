"""Optimiser and schedule construction (faujax.optim)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from faujax import optim


def _config(**overrides):
  c = ml_collections.ConfigDict({
      'optim': {'name': 'sgd', 'learning_rate': 0.1, 'momentum': 0.0, 'nesterov': False,
                'weight_decay': 0.0, 'grad_clip_norm': 0.0, 'lr_multipliers': {}},
      'schedule': {'name': 'constant', 'warmup_epochs': 0.0, 'decay_every_epochs': 2.0,
                   'decay_factor': 0.1, 'end_factor': 0.0},
  })
  c.update_from_flattened_dict(overrides)
  return c


def test_step_schedule_decays_every_interval():
  sched = optim.create_schedule(_config(**{'schedule.name': 'step'}), base_lr=1.0,
                                steps_per_epoch=5, total_steps=40)
  # decay every 2 epochs = 10 steps.
  np.testing.assert_allclose([sched(0), sched(9), sched(10), sched(19), sched(20), sched(35)],
                             [1.0, 1.0, 0.1, 0.1, 0.01, 0.001], rtol=1e-6)


def test_cosine_with_warmup():
  cfg = _config(**{'schedule.name': 'cosine', 'schedule.warmup_epochs': 1.0})
  sched = optim.create_schedule(cfg, base_lr=2.0, steps_per_epoch=10, total_steps=110)
  assert float(sched(0)) == 0.0
  np.testing.assert_allclose(float(sched(5)), 1.0, rtol=1e-6)   # halfway through warm-up
  np.testing.assert_allclose(float(sched(10)), 2.0, rtol=1e-6)  # peak
  np.testing.assert_allclose(float(sched(60)), 1.0, rtol=1e-5)  # half of the cosine
  np.testing.assert_allclose(float(sched(110)), 0.0, atol=1e-7)


def test_lr_multiplier_scales_backbone_updates():
  params = {'backbone': {'w': jnp.ones(3)}, 'head': {'w': jnp.ones(3)}}
  cfg = _config(**{'optim.lr_multipliers': {'backbone': 0.1}})
  tx, _ = optim.create_optimizer(cfg, params, steps_per_epoch=1, total_steps=1)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['head']['w'], -0.1)
  np.testing.assert_allclose(updates['backbone']['w'], -0.01)


def test_sgd_weight_decay_is_l2_in_the_gradient():
  params = {'w': jnp.full(2, 2.0)}
  cfg = _config(**{'optim.weight_decay': 0.5})
  tx, _ = optim.create_optimizer(cfg, params, steps_per_epoch=1, total_steps=1)
  updates, _ = tx.update({'w': jnp.zeros(2)}, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], -0.1 * 0.5 * 2.0)


def test_nesterov_matches_pytorch_formula():
  # PyTorch SGD(nesterov): b = mu b + g; step = g + mu b.
  params = {'w': jnp.zeros(1)}
  cfg = _config(**{'optim.momentum': 0.9, 'optim.nesterov': True, 'optim.learning_rate': 1.0})
  tx, _ = optim.create_optimizer(cfg, params, steps_per_epoch=1, total_steps=2)
  state = tx.init(params)
  b = 0.0
  for g in (1.0, 2.0):
    updates, state = tx.update({'w': jnp.array([g])}, state, params)
    b = 0.9 * b + g
    np.testing.assert_allclose(updates['w'], [-(g + 0.9 * b)], rtol=1e-6)


def test_gradient_clipping():
  params = {'w': jnp.zeros(2)}
  cfg = _config(**{'optim.grad_clip_norm': 1.0, 'optim.learning_rate': 1.0})
  tx, _ = optim.create_optimizer(cfg, params, steps_per_epoch=1, total_steps=1)
  updates, _ = tx.update({'w': jnp.array([3.0, 4.0])}, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize('key,value', [('optim.name', 'rmsprop'), ('schedule.name', 'linear')])
def test_unknown_names_are_clear_errors(key, value):
  with pytest.raises(ValueError, match=key.replace('.', r'\.')):
    optim.create_optimizer(_config(**{key: value}), {'w': jnp.zeros(1)}, steps_per_epoch=1,
                           total_steps=1)

"""Optimisers and learning-rate schedules built from a config (optax).

Reads ``config.optim`` and ``config.schedule``:

  optim.name            'sgd' (with ``momentum`` and ``nesterov``) or 'adamw' (``b1``, ``b2``, ``eps``).
  optim.learning_rate   base (peak) learning rate.
  optim.weight_decay    SGD: L2 added to the gradient (PyTorch semantics); AdamW: decoupled.
  optim.grad_clip_norm  global-norm clipping before the update; 0 or None disables it.
  optim.lr_multipliers  {path substring: factor}, e.g. {'backbone': 0.1}: parameters whose path
                        contains the substring train at factor x the base rate (first match wins).
  schedule.name         'constant', 'cosine' (per-step cosine decay to ``end_factor`` x lr),
                        'step' (x ``decay_factor`` every ``decay_every_epochs`` epochs).
  schedule.warmup_epochs linear warm-up from 0 before the schedule.

The schedules are defined per step; ``steps_per_epoch`` converts the epoch-valued keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import ml_collections
import optax

OPTIMIZERS = ('sgd', 'adamw')
SCHEDULES = ('constant', 'cosine', 'step')


def create_schedule(config: ml_collections.ConfigDict, *, base_lr: float, steps_per_epoch: int,
                    total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step, including warm-up."""
  sched = config.schedule
  warmup = int(round(sched.get('warmup_epochs', 0.0) * steps_per_epoch))
  decay_steps = max(total_steps - warmup, 1)
  if sched.name == 'constant':
    main = optax.constant_schedule(base_lr)
  elif sched.name == 'cosine':
    main = optax.cosine_decay_schedule(base_lr, decay_steps, alpha=sched.get('end_factor', 0.0))
  elif sched.name == 'step':
    every = int(round(sched.decay_every_epochs * steps_per_epoch))
    if every <= 0:
      raise ValueError(f'config.schedule.decay_every_epochs={sched.decay_every_epochs} gives '
                       f'a decay interval of {every} steps; expected at least 1.')
    boundaries = {k * every: sched.decay_factor for k in range(1, total_steps // every + 1)}
    main = optax.piecewise_constant_schedule(base_lr, boundaries)
  else:
    raise ValueError(f'Unknown config.schedule.name {sched.name!r}; expected one of {SCHEDULES}.')
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), main], [warmup])


def _base_optimizer(config: ml_collections.ConfigDict,
                    lr: optax.Schedule) -> optax.GradientTransformation:
  opt = config.optim
  if opt.name == 'sgd':
    parts = []
    if opt.get('weight_decay', 0.0):
      parts.append(optax.add_decayed_weights(opt.weight_decay))
    parts.append(optax.sgd(lr, momentum=opt.get('momentum', 0.9) or None,
                           nesterov=opt.get('nesterov', False)))
    return optax.chain(*parts)
  if opt.name == 'adamw':
    return optax.adamw(lr, b1=opt.get('b1', 0.9), b2=opt.get('b2', 0.999), eps=opt.get('eps', 1e-8),
                       weight_decay=opt.get('weight_decay', 0.0))
  raise ValueError(f'Unknown config.optim.name {opt.name!r}; expected one of {OPTIMIZERS}.')


def param_groups(params: Any, multipliers: Mapping[str, float]) -> Any:
  """Labels every parameter with the first ``multipliers`` key its path contains, else 'base'."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep='/')
  labels = {}
  for path in flat:
    labels[path] = next((key for key in multipliers if key in path), 'base')
  return flax.traverse_util.unflatten_dict(labels, sep='/')


def create_optimizer(config: ml_collections.ConfigDict, params: Any, *, steps_per_epoch: int,
                     total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optimizer, base learning-rate schedule) for ``params``.

  Parameter groups with a learning-rate multiplier get their own copy of the optimiser with the
  scaled schedule (``optax.multi_transform``); clipping is applied to the global gradient first.
  """
  base_lr = config.optim.learning_rate
  multipliers = dict(config.optim.get('lr_multipliers', None) or {})
  schedule = create_schedule(config, base_lr=base_lr, steps_per_epoch=steps_per_epoch,
                             total_steps=total_steps)
  if multipliers:
    transforms = {'base': _base_optimizer(config, schedule)}
    for key, factor in multipliers.items():
      scaled = (lambda f: (lambda step: f * schedule(step)))(float(factor))
      transforms[key] = _base_optimizer(config, scaled)
    tx = optax.multi_transform(transforms, param_groups(params, multipliers))
  else:
    tx = _base_optimizer(config, schedule)
  clip = config.optim.get('grad_clip_norm', None)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx, schedule


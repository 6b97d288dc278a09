"""Optimisers and learning-rate schedules (optax), declared as ``config.optim`` / ``config.schedule``.

  optim.name            'sgd' (``momentum``, ``nesterov``; PyTorch semantics), 'adam' (PyTorch's
                        ``torch.optim.Adam``: weight decay is L2 added to the gradient, SVML-RGCN
                        sec. 4.2) or 'adamw' (decoupled weight decay); ``b1``, ``b2``, ``eps``.
  optim.learning_rate   base (peak) learning rate.
  optim.weight_decay    SGD and Adam: L2 added to the gradient (PyTorch semantics); AdamW: decoupled.
  optim.grad_clip_norm  global-norm clipping before the update; 0 disables it.
  optim.lr_multipliers  {path substring: factor}, e.g. {'backbone': 0.1}: parameters whose path
                        contains the substring train at factor x the base rate (first match wins).
  schedule.name         'constant', 'cosine' (per-step cosine decay to ``end_factor`` x lr),
                        'step' (x ``decay_factor`` every ``decay_every_epochs`` epochs).
  schedule.warmup_epochs linear warm-up from 0 before the schedule.

The schedules are defined per step; ``steps_per_epoch`` converts the epoch-valued keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import optax

from faujax import config_schema
from faujax import model_state

OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'cosine', 'step')
_check = config_schema.check


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """``config.optim`` (see the module docstring)."""
  name: str = 'adamw'
  learning_rate: float = 1e-3
  weight_decay: float = 0.0
  momentum: float = 0.9
  nesterov: bool = False
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  grad_clip_norm: float = 0.0
  lr_multipliers: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    _check(self.name in OPTIMIZERS, 'name', self.name, f'one of {OPTIMIZERS}')
    _check(self.learning_rate > 0, 'learning_rate', self.learning_rate, 'a value > 0')
    _check(self.weight_decay >= 0, 'weight_decay', self.weight_decay, 'a value >= 0')
    _check(0 <= self.momentum < 1, 'momentum', self.momentum, 'a value in [0, 1)')
    _check(0 <= self.b1 < 1 and 0 <= self.b2 < 1, 'b1/b2', (self.b1, self.b2),
           'values in [0, 1)')
    _check(self.eps > 0, 'eps', self.eps, 'a value > 0')
    _check(self.grad_clip_norm >= 0, 'grad_clip_norm', self.grad_clip_norm, 'a value >= 0 (0: off)')
    for key, factor in self.lr_multipliers.items():
      _check(factor >= 0, f'lr_multipliers.{key}', factor, 'a factor >= 0')


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """``config.schedule`` (see the module docstring)."""
  name: str = 'cosine'
  warmup_epochs: float = 0.0
  end_factor: float = 0.0
  decay_every_epochs: float = 10.0
  decay_factor: float = 0.1

  def __post_init__(self):
    _check(self.name in SCHEDULES, 'name', self.name, f'one of {SCHEDULES}')
    _check(self.warmup_epochs >= 0, 'warmup_epochs', self.warmup_epochs, 'a value >= 0')
    _check(0 <= self.end_factor <= 1, 'end_factor', self.end_factor, 'a value in [0, 1]')
    _check(self.decay_every_epochs > 0, 'decay_every_epochs', self.decay_every_epochs,
           'a value > 0')
    _check(0 < self.decay_factor <= 1, 'decay_factor', self.decay_factor, 'a value in (0, 1]')


def create_schedule(sched: ScheduleConfig, *, base_lr: float, steps_per_epoch: int,
                    total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step, including warm-up."""
  warmup = int(round(sched.warmup_epochs * steps_per_epoch))
  decay_steps = max(total_steps - warmup, 1)
  if sched.name == 'constant':
    main = optax.constant_schedule(base_lr)
  elif sched.name == 'cosine':
    main = optax.cosine_decay_schedule(base_lr, decay_steps, alpha=sched.end_factor)
  else:  # 'step'
    every = int(round(sched.decay_every_epochs * steps_per_epoch))
    if every <= 0:
      raise config_schema.ConfigError(
          f'config.schedule.decay_every_epochs={sched.decay_every_epochs} gives a decay interval '
          f'of {every} steps at {steps_per_epoch} steps per epoch; expected at least 1.')
    boundaries = {k * every: sched.decay_factor for k in range(1, total_steps // every + 1)}
    main = optax.piecewise_constant_schedule(base_lr, boundaries)
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), main], [warmup])


def _base_optimizer(opt: OptimConfig, lr: optax.Schedule) -> optax.GradientTransformation:
  if opt.name in ('sgd', 'adam'):  # PyTorch: weight decay is L2 added to the gradient first
    parts = []
    if opt.weight_decay:
      parts.append(optax.add_decayed_weights(opt.weight_decay))
    if opt.name == 'sgd':
      parts.append(optax.sgd(lr, momentum=opt.momentum or None, nesterov=opt.nesterov))
    else:
      parts.append(optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps))
    return optax.chain(*parts)
  return optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)


def param_groups(params: Any, multipliers: Mapping[str, float]) -> Any:
  """Labels every parameter with the first ``multipliers`` key its path contains, else 'base'."""
  def label(tree: Any, prefix: str) -> Any:
    if isinstance(tree, Mapping):
      return {k: label(v, f'{prefix}/{k}' if prefix else str(k)) for k, v in tree.items()}
    return next((key for key in multipliers if key in prefix), 'base')
  return label(params, '')


def create_optimizer(opt: OptimConfig, sched: ScheduleConfig, params: Any, *,
                     steps_per_epoch: int,
                     total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optimizer, base learning-rate schedule) for ``params`` (nested dicts).

  Parameter groups with a learning-rate multiplier get their own copy of the optimiser with the
  scaled schedule (``optax.multi_transform``); clipping is applied to the global gradient first.
  """
  schedule = create_schedule(sched, base_lr=opt.learning_rate, steps_per_epoch=steps_per_epoch,
                             total_steps=total_steps)
  multipliers = dict(opt.lr_multipliers)
  if multipliers:
    paths = model_state.flatten(params)
    for key in multipliers:
      if not any(key in path for path in paths):
        raise config_schema.ConfigError(
            f'config.optim.lr_multipliers.{key}: no parameter path contains {key!r} (paths look '
            f'like {sorted(paths)[:3]}).')
    transforms = {'base': _base_optimizer(opt, schedule)}
    for key, factor in multipliers.items():
      scaled = (lambda f: (lambda step: f * schedule(step)))(float(factor))
      transforms[key] = _base_optimizer(opt, scaled)
    tx = optax.multi_transform(transforms, param_groups(params, multipliers))
  else:
    tx = _base_optimizer(opt, schedule)
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx, schedule

"""Training stages: a run made of consecutive parts that train different parameters and losses.

``config.train.stage_order`` names the stages in order and ``config.train.stages.<name>`` says,
for each (``StageConfig``), how long it runs (``epochs``, or ``steps`` > 0), which parameters train
(``params``: parameter-path substrings, e.g. ``('autoencoders',)``; empty = all) and which loss
terms make up its loss (``losses``: names of the task's ``Task.loss_terms``; empty = all). With no
stages a run is one stage of ``train.num_epochs`` / ``train.num_steps`` that trains everything.

AU-GCN sec. 4.1 is two stages: the ROI auto-encoders alone on L_ROI (eq. 3) for 12 epochs, then
every module on every loss for 40 epochs (``configs/au_gcn/bp4d.py``):

  config.train.stage_order = ('autoencoders', 'joint')
  config.train.stages = {'autoencoders': {'epochs': 12, 'params': ('autoencoders',),
                                          'losses': ('roi', 'reconstruction')},
                         'joint': {'epochs': 40}}

Semantics (``faujax.train``): steps are numbered over the whole run, stage k covering
[start_k, end_k). Each stage starts from the previous stage's final parameters and batch
statistics with a fresh optimiser state and its own learning-rate schedule (``config.schedule``
counted from the stage's first step), as when stage 2 is a new run initialised from stage 1's
checkpoint. Parameters outside ``params`` get neither gradient nor update (weight decay
included), so they are exactly unchanged during the stage. A resumed run continues in the stage of
its checkpoint's step. The best-by-validation checkpoint is chosen in the last stage only (the
earlier stages do not train the whole model).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from faujax import config_schema
from faujax import model_state

_check = config_schema.check


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """``config.train.stages.<name>`` (see the module docstring)."""
  epochs: float = 0.0
  steps: int = 0
  params: tuple[str, ...] = ()
  losses: tuple[str, ...] = ()

  def __post_init__(self):
    _check(self.epochs >= 0, 'epochs', self.epochs, 'a value >= 0')
    _check(self.steps >= 0, 'steps', self.steps, 'an int >= 0 (0: use epochs)')
    _check(self.epochs > 0 or self.steps > 0, 'epochs/steps', (self.epochs, self.steps),
           'a stage length: epochs > 0 or steps > 0')
    for key in ('params', 'losses'):
      value = getattr(self, key)
      _check(isinstance(value, (tuple, list)) and all(isinstance(v, str) and v for v in value),
             key, value, 'a tuple of non-empty strings')


def stage(**values: Any) -> dict[str, Any]:
  """A ``config.train.stages`` entry holding every ``StageConfig`` key (its default unless given),
  so that each can be overridden on the command line (``--config.train.stages.joint.steps=50``)."""
  names = [f.name for f in dataclasses.fields(StageConfig)]
  for key in values:
    if key not in names:
      raise config_schema.unknown_key_error(key, 'train.stages.<name>', names)
  cfg = StageConfig(**values)
  return {name: getattr(cfg, name) for name in names}


@dataclasses.dataclass(frozen=True)
class Stage:
  """One resolved stage: steps [start, end) of the run, what trains, which loss terms count."""
  name: str
  start: int
  end: int
  params: tuple[str, ...] = ()
  losses: tuple[str, ...] | None = None   # None: every term

  @property
  def num_steps(self) -> int:
    return self.end - self.start


def read_stages(order: Sequence[str], specs: Mapping[str, Any]) -> dict[str, StageConfig]:
  """``config.train.stage_order`` / ``stages`` -> {name: StageConfig}, checked."""
  order = tuple(order)
  specs = dict(specs or {})
  _check(len(set(order)) == len(order), 'stage_order', order, 'distinct stage names')
  _check(set(order) == set(specs), 'stage_order', order,
         f'the names of config.train.stages ({sorted(specs)}), each once')
  return {name: config_schema.read(StageConfig, specs[name], f'train.stages.{name}')
          for name in order}


def plan(order: Sequence[str], specs: Mapping[str, Any], *, steps_per_epoch: int,
         single_stage_steps: int, loss_terms: Sequence[str] = ()) -> list[Stage]:
  """The stages of a run, with their step ranges.

  Args:
    order, specs: ``config.train.stage_order`` and ``config.train.stages``.
    steps_per_epoch: converts ``epochs``.
    single_stage_steps: the run's length when there are no stages.
    loss_terms: the task's loss terms; a stage naming another one raises ConfigError.
  """
  configs = read_stages(order, specs)
  if not configs:
    return [Stage('train', 0, int(single_stage_steps))]
  stages, start = [], 0
  for name, cfg in configs.items():
    n = cfg.steps or max(int(round(cfg.epochs * steps_per_epoch)), 1)
    unknown = [t for t in cfg.losses if t not in loss_terms]
    if unknown:
      raise config_schema.ConfigError(
          f'config.train.stages.{name}.losses names {unknown}; the task\'s loss terms are '
          f'{tuple(loss_terms)}.')
    stages.append(Stage(name, start, start + n, tuple(cfg.params),
                        tuple(cfg.losses) if cfg.losses else None))
    start += n
  return stages


def stage_of_step(stages: Sequence[Stage], step: int) -> int:
  """Index of the stage that runs step ``step`` (0-based; the step that makes state.step = step
  + 1). Steps past the end belong to the last stage."""
  for i, stage in enumerate(stages):
    if step < stage.end:
      return i
  return len(stages) - 1


def trainable_mask(params: Mapping[str, Any], patterns: Sequence[str], where: str) -> Any:
  """A tree like ``params`` of bools: True where the path contains one of ``patterns`` (all True
  for no patterns). Raises ConfigError for a pattern that matches no parameter."""
  if not patterns:
    return _map_paths(params, '', lambda path: True)
  paths = model_state.flatten(params)
  for pattern in patterns:
    if not any(pattern in path for path in paths):
      raise config_schema.ConfigError(
          f'{where}: no parameter path contains {pattern!r} (paths look like '
          f'{sorted(paths)[:4]}).')
  return _map_paths(params, '', lambda path: any(p in path for p in patterns))


def _map_paths(tree: Any, prefix: str, fn) -> Any:
  if isinstance(tree, Mapping):
    return {k: _map_paths(v, f'{prefix}/{k}' if prefix else str(k), fn) for k, v in tree.items()}
  return fn(prefix)

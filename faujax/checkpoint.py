"""Atomic checkpoints with orbax: periodic (resume) and best-by-validation, config stored beside.

Layout of a workdir::

  workdir/config.json          the config of the run (written once, compared on resume)
  workdir/checkpoints/<step>/  periodic checkpoints (``state`` + ``config``), the newest resumes
  workdir/best/<step>/         the checkpoint with the best validation metric (``state``, metrics)

orbax writes each step into a temporary directory and renames it when complete, so a run killed
while saving (even with SIGKILL) leaves the previous checkpoints intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from faujax import config_schema

# Config sections that change the shapes or meaning of the parameters: a checkpoint written under
# one value cannot be restored under another.
_STRUCTURAL_KEYS = ('model', 'data.name', 'data.builder_config', 'augment.image_size')


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """``config.checkpoint``: a periodic checkpoint every ``every`` steps (and at the end or on
  SIGTERM), of which the newest ``keep`` are kept; the best-by-validation one is kept beside."""
  every: int = 500
  keep: int = 2

  def __post_init__(self):
    config_schema.check(self.every >= 1, 'every', self.every, 'an int >= 1 (steps)')
    config_schema.check(self.keep >= 1, 'keep', self.keep, 'an int >= 1')


class CheckpointError(ValueError):
  """A checkpoint that cannot be restored into the current run."""


def _lookup(d: dict, dotted: str) -> Any:
  for part in dotted.split('.'):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d


def check_compatible(saved: dict, current: dict, where: str) -> None:
  """Raises CheckpointError naming the config keys whose values differ from the saved run."""
  diffs = []
  for key in _STRUCTURAL_KEYS:
    a, b = _lookup(saved, key), _lookup(current, key)
    if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
      diffs.append(f'config.{key}: checkpoint has {a!r}, this run has {b!r}')
  if diffs:
    raise CheckpointError(
        f'The checkpoint in {where} was written with an incompatible config:\n  ' + '\n  '.join(diffs)
        + '\nUse a new --workdir, or the config the checkpoint was written with.')


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


class Checkpointer:
  """Periodic + best checkpoints of a host pytree ``state`` (numpy arrays)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, keep: int = 2,
               best_metric: str | None = None, best_mode: str = 'max'):
    self.workdir = os.path.abspath(workdir)
    self.config_json = config_to_json(config)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._periodic = ocp.CheckpointManager(
        os.path.join(self.workdir, 'checkpoints'), options=options, item_names=('state', 'config'))
    self._best = None
    if best_metric is not None:
      self.best_metric = best_metric
      best_options = ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, best_fn=lambda m: float(m[best_metric]), best_mode=best_mode,
          keep_checkpoints_without_metrics=False, enable_async_checkpointing=False)
      self._best = ocp.CheckpointManager(
          os.path.join(self.workdir, 'best'), options=best_options, item_names=('state', 'config'))
    self._write_config()

  def _write_config(self) -> None:
    path = os.path.join(self.workdir, 'config.json')
    if os.path.exists(path):
      try:
        with open(path) as f:
          saved = json.load(f)
      except json.JSONDecodeError as e:
        raise CheckpointError(f'{path} is not valid JSON ({e}); the workdir is corrupt.') from None
      check_compatible(saved, self.config_json, path)
    if jax.process_index() == 0:
      tmp = path + '.tmp'
      with open(tmp, 'w') as f:
        json.dump(self.config_json, f, indent=2, sort_keys=True)
      os.replace(tmp, path)

  @property
  def latest_step(self) -> int | None:
    return self._periodic.latest_step()

  def save(self, step: int, state: Any, *, force: bool = False) -> None:
    self._periodic.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self.config_json)), force=force)

  def save_best(self, step: int, state: Any, metrics: dict[str, float]) -> None:
    if self._best is None:
      return
    value = metrics.get(self.best_metric)
    if value is None or not np.isfinite(value):
      return
    self._best.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self.config_json)),
                    metrics={k: float(v) for k, v in metrics.items() if np.isscalar(v)})

  def _restore(self, manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
    where = os.path.join(str(manager.directory), str(step))
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), config=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for unreadable or mismatched trees
      raise CheckpointError(
          f'Cannot restore the checkpoint in {where}: {type(e).__name__}: {e}') from e
    check_compatible(restored['config'], self.config_json, where)
    return restored['state']

  def restore_latest(self, target: Any) -> Any | None:
    step = self.latest_step
    return None if step is None else self._restore(self._periodic, step, target)

  def restore_best(self, target: Any) -> tuple[Any, int] | None:
    if self._best is None or self._best.best_step() is None:
      return None
    step = self._best.best_step()
    return self._restore(self._best, step, target), step

  def wait(self) -> None:
    self._periodic.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    self._periodic.close()
    if self._best is not None:
      self._best.close()

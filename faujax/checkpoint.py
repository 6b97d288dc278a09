"""Verified, atomic checkpoints with orbax: periodic (resume) and best-by-validation.

Layout of a workdir::

  workdir/config.json          the config the run was started with (written once, never replaced)
  workdir/config_history.json  every config the run has had, with the step it took effect
  workdir/checkpoints/<step>/  periodic checkpoints, the newest good one resumes
  workdir/best/<step>/         the checkpoint with the best validation metric
  workdir/damaged/             checkpoints that failed verification, moved aside (never deleted)
  workdir/writer.lock          held by the one training that writes the workdir (faujax.workdir_lock)

Each step directory holds the orbax items ``state`` (the arrays: step, params, batch_stats,
constants, opt_state; ``faujax.model_state``), ``config`` (the run's config), ``dataset`` (the label
space and statistics the model and the task read, ``DatasetInfo.to_record``), ``history`` (the
validation history up to that step; periodic checkpoints only) and ``checksums``: for every array
its dtype, shape and the SHA-256 of its bytes, and the SHA-256 of the other items. orbax writes all
items into a temporary directory and renames it when complete, so the checksums are as atomic as the
checkpoint: a run killed while saving (even with SIGKILL) leaves the previous checkpoints intact.
A save that fails for lack of room (full disk, quota) is one line naming the checkpoint and the
newest intact one (``faujax.files.NoRoomError``).

A best checkpoint's validation metrics are recorded in its checksums too. orbax keeps its own
copy (``best/<step>/metrics/metrics``) and chooses, and deletes, by it; a training that opens
the workdir makes that copy equal to the record (rewritten, with a warning, when missing or
changed), so an intact best checkpoint is never replaced by a worse one. The training saves a
best checkpoint only when no validation in the run's history beat it, and names a best
checkpoint the history has but ``best/`` lacks.

Restoring verifies everything: the checkpoint must be readable, every array must have the dtype,
shape and checksum recorded at save time, the tree must be the model's, the stored step must be the
directory's and every value finite. A checkpoint that fails is reported by path (one line), moved to
``workdir/damaged/`` and the next older one is tried (by the training only: readers, ``read``,
change nothing). A checkpoint whose optimiser state differs from the config's (a changed
optimiser) is not damaged: the resume is refused naming the changed config keys. If checkpoints exist but none passes, the run
is refused with the list of them (starting over would silently lose the run); only a workdir with
no checkpoint at all starts from step 0.

The config record (``config.json``, ``config_history.json``) and the resume policy for changed
configs are ``faujax.run_record``; a ``Checkpointer`` holds its workdir's ``RunRecord``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging as py_logging
import os
import shutil
import sys
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from faujax import files
from faujax import reporting
from faujax import run_record
from faujax.run_record import CheckpointError, ConfigChangeError  # noqa: F401  (raised here)

DAMAGED_DIR = 'damaged'
CHECKSUM_FORMAT = 'faujax-checksums-v1'
_PERIODIC_ITEMS = ('state', 'config', 'dataset', 'history', 'checksums')
_BEST_ITEMS = ('state', 'config', 'dataset', 'checksums')
# Items a checkpoint written by an earlier faujax may lack (then read as None / empty).
_OPTIONAL_ITEMS = ('dataset',)
METRICS_FILE = ('metrics', 'metrics')  # orbax's copy of a best checkpoint's metrics
CONSTANTS = 'constants'  # the state's sub-tree of model constants (absent before they existed)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A checkpoint that passed verification (``dataset`` None: written before it was stored)."""
  state: Any
  step: int
  path: str
  history: list[dict[str, Any]]
  config: dict[str, Any]
  dataset: dict[str, Any] | None = None


class _Bad(Exception):
  """Why a checkpoint failed verification (internal)."""


class _OtherOptimizer(_Bad):
  """The checkpoint's arrays differ from the target's only in the optimiser state: an intact
  checkpoint of a run whose optimiser settings have changed since (internal)."""


OPT_STATE = 'opt_state'  # the state's sub-tree of the optimiser state


# ------------------------------------------------------------------------------------------------
# Checksums.


def _leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path, simple=True, separator='/'), np.asarray(x))
          for path, x in flat]


def _array_digest(x: np.ndarray) -> str:
  h = hashlib.sha256()
  h.update(f'{x.dtype.str}|{tuple(x.shape)}|'.encode())
  h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()


def _json_digest(x: Any) -> str:
  return hashlib.sha256(run_record.canonical(x).encode()).hexdigest()


def checksums(step: int, state: Any, items: dict[str, Any],
              metrics: dict[str, float] | None = None) -> dict[str, Any]:
  """The ``checksums`` item of a checkpoint of ``state`` (and the JSON ``items``) at ``step``;
  a best checkpoint's validation ``metrics`` are recorded in it too (orbax keeps its own copy,
  ``<step>/metrics/metrics``, which decides what the best is: ``Checkpointer`` checks that copy
  against this record)."""
  record = {'format': CHECKSUM_FORMAT, 'algorithm': 'sha256', 'step': int(step),
            'arrays': {key: {'dtype': x.dtype.str, 'shape': list(x.shape),
                             'sha256': _array_digest(x)} for key, x in _leaves(state)},
            'items': {name: _json_digest(value) for name, value in items.items()}}
  if metrics is not None:
    record['metrics'] = dict(metrics)
  return record


def best_in_history(history: list[dict[str, Any]], metric: str, *, after: int = 0,
                    mode: str = 'max') -> dict[str, Any] | None:
  """The validation entry (``{'step', metric, ...}``) with the best finite ``metric`` among
  those of steps > ``after``, the latest one on a tie (as the best checkpoint keeps); None
  when there is none."""
  best = None
  for entry in history:
    value = entry.get(metric)
    if entry.get('step', 0) <= after or value is None or not np.isfinite(value):
      continue
    if best is None or (value >= best[metric] if mode == 'max' else value <= best[metric]):
      best = entry
  return best


def _first_line(e: BaseException, limit: int = 240) -> str:
  text = str(e).strip().splitlines()
  first = (text[0] if text else '').split(' [tensorstore_spec=')[0]
  line = f'{type(e).__name__}: {first}'
  return line if len(line) <= limit else line[:limit - 3] + '...'


def _finite(x: np.ndarray) -> bool:
  return not np.issubdtype(x.dtype, np.inexact) or bool(np.all(np.isfinite(x)))


def nonfinite_leaves(state: Any) -> list[str]:
  """The keys of the floating-point leaves of ``state`` that hold a NaN or an Inf (the model
  constants are data, where NaN may mark an undefined entry, e.g. SVML-RGCN's P_ij)."""
  return [key for key, x in _leaves(state)
          if not key.startswith(CONSTANTS + '/') and not _finite(x)]


# ------------------------------------------------------------------------------------------------
# Quiet orbax: its errors are reported here as one line per checkpoint.


class _DropOrbaxRecords(py_logging.Filter):

  def filter(self, record: py_logging.LogRecord) -> bool:
    path = record.pathname.replace('\\', '/')
    return not ('/orbax/' in path or '/tensorstore/' in path)


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
  """Drops orbax's log records (it logs each failure it raises) while trying a checkpoint."""
  record_filter = _DropOrbaxRecords()
  targets = [py_logging.getLogger('absl'), *py_logging.getLogger().handlers]
  for t in targets:
    t.addFilter(record_filter)
  try:
    yield
  finally:
    for t in targets:
      t.removeFilter(record_filter)


class _DropAbandonedTensorstoreTasks(py_logging.Filter):
  """asyncio's ``Task exception was never retrieved`` for tensorstore reads that orbax abandoned
  after the first error (the error itself is reported, once, by the Checkpointer)."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    message = str(record.msg)
    return not ('exception was never retrieved' in message and 'tensorstore_spec' in message)


def _install_event_loop_filter() -> None:
  """Drops the noise of an unreadable checkpoint that arrives after orbax gave up on it: the
  ``RuntimeError: Event loop is closed`` that tensorstore reports (as an unraisable exception,
  from its own threads) and asyncio's log of the reads it abandoned. Both arrive some time later,
  so these filters stay installed; they match only these two messages."""
  asyncio_logger = py_logging.getLogger('asyncio')
  if not any(isinstance(f, _DropAbandonedTensorstoreTasks) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_DropAbandonedTensorstoreTasks())
  previous = sys.unraisablehook
  if getattr(previous, '_faujax_event_loop_filter', False):
    return

  def hook(unraisable):
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == 'Event loop is closed':
      return
    previous(unraisable)

  hook._faujax_event_loop_filter = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def verify(manager: ocp.CheckpointManager, step: int, items: tuple[str, ...],
           target: Any = None) -> Restored:
  """The checkpoint of ``step`` of ``manager`` after every check, or _Bad with the reason.

  ``target``: the tree (shapes, dtypes) the state must have, e.g. the model's; None restores
  the arrays as saved (numpy), checked against the checksum record alone. A checkpoint written
  before model constants were stored restores into a target with constants, keeping the
  target's.
  """
  path = os.path.join(str(manager.directory), str(step))
  if not os.path.isdir(path):
    raise _Bad('the directory is missing')
  present = tuple(n for n in items
                  if n not in _OPTIONAL_ITEMS or os.path.isdir(os.path.join(path, n)))
  missing = [name for name in present if not os.path.isdir(os.path.join(path, name))]
  if missing:
    raise _Bad(f'item{"s" if len(missing) > 1 else ""} {", ".join(missing)} missing'
               + (' (written without checksums?)' if 'checksums' in missing else ''))
  kept_constants = None
  with _quiet_orbax():
    try:
      record = manager.restore(step, args=ocp.args.Composite(
          checksums=ocp.args.JsonRestore()))['checksums']
    except Exception as e:  # pylint: disable=broad-except
      raise _Bad(f'unreadable checksums: {_first_line(e)}') from None
    if not isinstance(record, dict) or record.get('format') != CHECKSUM_FORMAT or not all(
        isinstance(record.get(k), dict) for k in ('arrays', 'items')):
      raise _Bad(f'the checksums item is not in the {CHECKSUM_FORMAT} format')
    arrays = record['arrays']
    try:
      metadata = manager.item_metadata(step)['state']
      stored = {key: m for key, m in _leaves_of_metadata(metadata)}
    except Exception as e:  # pylint: disable=broad-except
      raise _Bad(f'unreadable array metadata: {_first_line(e)}') from None
    if target is None:
      wanted = {key: np.zeros(e['shape'], np.dtype(e['dtype'])) for key, e in arrays.items()
                if isinstance(e, dict) and 'shape' in e and 'dtype' in e}
    else:
      tree = getattr(metadata, 'tree', metadata)
      if (isinstance(target, dict) and CONSTANTS in target and hasattr(tree, 'keys')
          and CONSTANTS not in tree.keys()):
        kept_constants = target[CONSTANTS]  # a checkpoint written before constants were saved
        target = {k: v for k, v in target.items() if k != CONSTANTS}
      wanted = {key: x for key, x in _leaves(target)}
    if set(arrays) != set(wanted):
      extra, lacking = sorted(set(arrays) - set(wanted)), sorted(set(wanted) - set(arrays))
      if all(k.startswith(OPT_STATE + '/') for k in extra + lacking):
        raise _OtherOptimizer(f'its optimiser state has other arrays ({len(extra)} not in this '
                              f'config\'s optimiser state, {len(lacking)} missing)')
      raise _Bad('its arrays are not the model\'s' + (f'; not in the model: {extra[:3]}'
                                                      if extra else '')
                 + (f'; not in the checkpoint: {lacking[:3]}' if lacking else ''))
    for key, x in wanted.items():
      entry = arrays[key]
      if not isinstance(entry, dict):
        raise _Bad(f'the checksum entry of {key} is malformed')
      if entry.get('dtype') != x.dtype.str or entry.get('shape') != list(x.shape):
        if key.startswith(OPT_STATE + '/'):
          raise _OtherOptimizer(f'its optimiser state holds {key} as {entry.get("dtype")} '
                                f'{entry.get("shape")}; this config\'s has {x.dtype.str} '
                                f'{list(x.shape)}')
        raise _Bad(f'{key} was saved as {entry.get("dtype")} {entry.get("shape")}; the model '
                   f'has {x.dtype.str} {list(x.shape)}')
    for key, x in wanted.items():
      m = stored.get(key)
      if m is None:
        raise _Bad(f'the stored array metadata (state/_METADATA) does not list {key}')
      if tuple(m.shape) != tuple(x.shape) or np.dtype(m.dtype) != x.dtype:
        raise _Bad(f'{key} is stored as {np.dtype(m.dtype).str} {list(m.shape)}; its checksum '
                   f'record says {x.dtype.str} {list(x.shape)}')
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target),
          **{name: ocp.args.JsonRestore() for name in present if name not in ('state',
                                                                             'checksums')}))
    except Exception as e:  # pylint: disable=broad-except
      raise _Bad(f'unreadable: {_first_line(e)}') from None
  state = restored['state']
  got = dict(_leaves(state))
  if set(got) != set(wanted):
    raise _Bad('the restored tree is not the model\'s')
  for key, x in got.items():
    entry = arrays[key]
    if x.dtype.str != entry['dtype'] or list(x.shape) != entry['shape']:
      raise _Bad(f'{key} restored as {x.dtype.str} {list(x.shape)}, saved as '
                 f'{entry["dtype"]} {entry["shape"]}')
    if _array_digest(x) != entry.get('sha256'):
      raise _Bad(f'checksum mismatch in {key} (the array bytes changed after saving)')
  for name in present:
    if name in ('state', 'checksums'):
      continue
    if _json_digest(restored[name]) != record['items'].get(name):
      raise _Bad(f'checksum mismatch in the {name} item')
  if record.get('step') != step or int(np.asarray(state['step'])) != step:
    raise _Bad(f'it holds step {int(np.asarray(state["step"]))} (checksums: '
               f'{record.get("step")}), not {step}')
  bad = nonfinite_leaves(state)
  if bad:
    raise _Bad(f'non-finite values in {", ".join(bad[:3])}{" ..." if len(bad) > 3 else ""}')
  if 'nonfinite_step' in state and int(np.asarray(state['nonfinite_step'])) >= 0:
    raise _Bad(f'it was saved after a non-finite step ({int(state["nonfinite_step"])})')
  config = restored['config']
  if not isinstance(config, dict):
    raise _Bad('the config item is not a dict')
  history = restored.get('history', [])
  if not isinstance(history, list):
    raise _Bad('the history item is not a list')
  dataset = restored.get('dataset')
  if dataset is not None and not isinstance(dataset, dict):
    raise _Bad('the dataset item is not a dict')
  if kept_constants is not None:
    state = {**state, CONSTANTS: kept_constants}
  return Restored(state=state, step=step, path=path, history=history, config=config,
                  dataset=dataset or None)


# ------------------------------------------------------------------------------------------------


class Checkpointer:
  """Periodic + best checkpoints of a host pytree ``state`` (numpy arrays), verified at restore.

  Raises ConfigChangeError when ``workdir`` holds a run with a different config (see the module
  docstring); ``allow_config_change`` accepts the changes that are not structural.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, keep: int = 2,
               best_metric: str | None = None, best_mode: str = 'max',
               allow_config_change: bool = False, dataset: dict[str, Any] | None = None):
    _install_event_loop_filter()
    self.workdir = os.path.abspath(workdir)
    self.config_json = run_record.config_to_json(config)
    self.dataset_json = reporting.jsonable(dict(dataset or {}))
    self.best_failure: str | None = None
    with _quiet_orbax():
      options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False)
      self._periodic = ocp.CheckpointManager(
          os.path.join(self.workdir, 'checkpoints'), options=options,
          item_handlers=_handlers(_PERIODIC_ITEMS))
      self._best = None
      self.best_metric = best_metric
      if best_metric is not None:
        self._check_best_metrics(os.path.join(self.workdir, 'best'))
        best_options = ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=self._best_value, best_mode=best_mode,
            keep_checkpoints_without_metrics=False, enable_async_checkpointing=False)
        self._best = ocp.CheckpointManager(
            os.path.join(self.workdir, 'best'), options=best_options,
            item_handlers=_handlers(_BEST_ITEMS))
    self.record = run_record.RunRecord(self.workdir, self.config_json,
                                       allow_config_change=allow_config_change,
                                       has_checkpoints=bool(self._periodic.all_steps()))

  def _check_best_metrics(self, best_dir: str) -> None:
    """Makes each best checkpoint's orbax metrics file (which decides the best, and whose loss
    would let orbax delete the checkpoint) equal to the metrics recorded in its checksums:
    a missing, unreadable or edited file is rewritten from the record, with a warning.

    Raises:
      CheckpointError: the file is unreadable and the checksums record no metrics (a
        checkpoint written before they did), naming it.
    """
    if jax.process_index() == 0 and os.path.isdir(best_dir):
      for name in sorted(os.listdir(best_dir)):
        step_dir = os.path.join(best_dir, name)
        if not name.isdigit() or not os.path.isdir(step_dir):
          continue
        record = _json_or_none(os.path.join(step_dir, 'checksums', 'metadata'))
        expected = record.get('metrics') if isinstance(record, dict) else None
        path = os.path.join(step_dir, *METRICS_FILE)
        current = _json_or_none(path)
        if expected is None:
          if os.path.exists(path) and not isinstance(current, dict):
            raise CheckpointError(
                f'{path} (the validation metrics of the best checkpoint) is not readable, and '
                'its checksums hold no copy (written by an older faujax). Restore it from a '
                f'backup, or move {step_dir} out of {best_dir} (the best is then chosen from '
                'the next validations).')
          continue
        if current is not None and run_record.canonical(current) == run_record.canonical(
            expected):
          continue
        state = ('missing' if not os.path.exists(path) else
                 'not readable' if current is None else 'changed since it was saved')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.write_atomic(path, lambda f, m=expected: json.dump(m, f))
        reporting.warn(f'{path} was {state}; rewritten from the checksum record of its '
                       f'checkpoint ({self.best_metric} {expected.get(self.best_metric)}).')
    _barrier('faujax_check_best_metrics')

  def _best_value(self, metrics: Any) -> float:
    try:
      value = float(metrics[self.best_metric])
    except (KeyError, TypeError, ValueError):
      return float('nan')
    return value

  # ---------------------------------------------------------------------------------------------
  # Saving.

  @property
  def latest_step(self) -> int | None:
    return self._periodic.latest_step()

  @property
  def periodic_steps(self) -> list[int]:
    """Steps of the periodic checkpoints, newest first."""
    return self._steps(self._periodic)

  @property
  def best_steps(self) -> list[int]:
    """Step of the best checkpoint (a list of at most one; empty without validation)."""
    return [] if self._best is None else self._steps(self._best)

  def _items(self, step: int, state: Any, json_items: dict[str, Any],
             metrics: dict[str, float] | None = None) -> ocp.args.Composite:
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        checksums=ocp.args.JsonSave(checksums(step, state, json_items, metrics)),
        **{name: ocp.args.JsonSave(value) for name, value in json_items.items()})

  def save(self, step: int, state: Any, *, history: list[dict[str, Any]] | None = None,
           force: bool = False) -> None:
    """A periodic checkpoint of ``state`` with the validation ``history`` up to ``step``."""
    history = reporting.jsonable(list(history or []))
    with self._room_for(self._periodic, step):
      self._periodic.save(step, args=self._items(step, state, {
          'config': self.config_json, 'dataset': self.dataset_json, 'history': history}),
                          force=force)

  def save_best(self, step: int, state: Any, metrics: dict[str, float]) -> None:
    """Saves ``state`` as the best checkpoint (replacing the previous best, which orbax deletes
    when ``metrics`` beat its recorded ones); the caller decides that it is the best so far."""
    if self._best is None:
      return
    value = metrics.get(self.best_metric)
    if value is None or not np.isfinite(value):
      return
    metrics = {k: float(v) for k, v in metrics.items() if np.isscalar(v)}
    with self._room_for(self._best, step):
      self._best.save(step, args=self._items(
          step, state, {'config': self.config_json, 'dataset': self.dataset_json}, metrics),
                      metrics=metrics)

  @contextlib.contextmanager
  def _room_for(self, manager: ocp.CheckpointManager, step: int) -> Iterator[None]:
    """A save that fails for lack of room becomes ``files.NoRoomError`` naming the checkpoint
    and the newest one that is intact."""
    try:
      with _quiet_orbax():  # orbax logs each failed write with its traceback
        yield
    except Exception as e:  # pylint: disable=broad-except  # orbax / tensorstore errors
      if not files.no_room(e):
        raise
      kept = self.periodic_steps
      intact = (f'the previous checkpoint, {self._step_dir(self._periodic, kept[0])}, is intact'
                if kept else 'no earlier checkpoint exists')
      raise files.NoRoomError(
          f'cannot write the checkpoint {self._step_dir(manager, step)}: {files.no_room(e)} '
          f'(no room on its disk); {intact}. Free some space and run the same command to '
          'resume.') from None

  # ---------------------------------------------------------------------------------------------
  # Verified restore.

  def _step_dir(self, manager: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(manager.directory), str(step))

  def _verify(self, manager: ocp.CheckpointManager, step: int, target: Any) -> Restored:
    """The checkpoint of ``step``, or _Bad with the reason it cannot be used."""
    items = _PERIODIC_ITEMS if manager is self._periodic else _BEST_ITEMS
    try:
      restored = verify(manager, step, items, target)
    except _OtherOptimizer as e:
      history = self.record.config_history
      changed = [] if not history else [
          f'config.{k}' for k, _, _ in run_record.config_diff(history[-1]['config'],
                                                             self.config_json)
          if not run_record.under(k, run_record.RESULT_NEUTRAL_KEYS)]
      raise ConfigChangeError(
          f'{self._step_dir(manager, step)}: {e}. The optimiser settings changed since the run '
          f'last ran ({", ".join(changed) or "see its config_history.json"}); its checkpoints '
          'hold the optimiser state of the old settings and cannot resume under the new ones, '
          'even with --allow_config_change. Resume with the run\'s optimiser settings, or use '
          f'a new --workdir. Nothing was changed in {self.workdir}.') from None
    config = restored.config
    try:
      run_record.check_compatible(config, self.config_json, restored.path)
    except CheckpointError:
      raise _Bad('written for another model or input shape: '
                 + ', '.join(f'config.{k}' for k, _, _ in run_record.config_diff(
                     config, self.config_json) if run_record.under(k, run_record.STRUCTURAL_KEYS))
                 ) from None
    return restored

  def _move_aside(self, manager: ocp.CheckpointManager, step: int) -> str:
    """Moves a damaged step directory to workdir/damaged/ (kept for inspection, out of orbax's
    way so the step can be written again) and returns the new path."""
    src = self._step_dir(manager, step)
    kind = os.path.basename(str(manager.directory))
    dest = os.path.join(self.workdir, DAMAGED_DIR, f'{kind}-{step}')
    n = 1
    while os.path.exists(dest):
      n += 1
      dest = os.path.join(self.workdir, DAMAGED_DIR, f'{kind}-{step}.{n}')
    if jax.process_index() == 0 and os.path.exists(src):
      if not os.path.isdir(os.path.dirname(dest)) and os.path.exists(os.path.dirname(dest)):
        raise CheckpointError(
            f'{os.path.dirname(dest)} is a file; faujax moves damaged checkpoints ({src}: '
            'found damaged) into a directory of that name. Move the file away and run again.')
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      shutil.move(src, dest)
    _barrier(f'faujax_move_aside_{kind}_{step}')
    manager.reload()
    return dest

  def _steps(self, manager: ocp.CheckpointManager) -> list[int]:
    with _quiet_orbax():
      return sorted(manager.all_steps(), reverse=True)

  def restore_latest(self, target: Any) -> Restored | None:
    """The newest periodic checkpoint that passes verification; None when there is none at all.

    Each one that fails is reported by path and moved to ``workdir/damaged/``; when every
    checkpoint fails, raises CheckpointError naming each (and changes nothing in the workdir).
    """
    steps = self._steps(self._periodic)
    failures = []
    for step in steps:
      try:
        restored = self._verify(self._periodic, step, target)
      except _Bad as e:
        failures.append((step, str(e)))
        continue
      for bad_step, reason in failures:
        dest = self._move_aside(self._periodic, bad_step)
        reporting.warn(f'Checkpoint {self._step_dir(self._periodic, bad_step)} is damaged '
                       f'({reason}); moved to {dest}.')
      if failures:
        reporting.warn(f'Falling back to the newest good checkpoint, {restored.path} '
                       f'(step {step}).')
      return restored
    if failures:
      listing = '\n  '.join(f'{self._step_dir(self._periodic, s)}: {r}' for s, r in failures)
      raise CheckpointError(
          f'No checkpoint in {self._periodic.directory} can be restored; every one failed '
          f'verification:\n  {listing}\nNothing was changed. Restore them from a backup; or, to '
          f'start this run over from step 0, move these directories out of '
          f'{self._periodic.directory} (or use a new --workdir).')
    return None

  def last_good(self, target: Any) -> Restored | None:
    """The newest periodic checkpoint that passes verification (all values finite), or None;
    changes nothing."""
    for step in self._steps(self._periodic):
      try:
        return self._verify(self._periodic, step, target)
      except _Bad:
        continue
    return None

  def check_best(self, target: Any) -> None:
    """Verifies the best checkpoint of an earlier part of the run (at resume): a damaged one is
    reported and moved aside, so that the next validations choose a new one."""
    if self._best is None:
      return
    for step in self._steps(self._best):
      try:
        self._verify(self._best, step, target)
      except _Bad as e:
        dest = self._move_aside(self._best, step)
        reporting.warn(f'Best checkpoint {self._step_dir(self._best, step)} is damaged ({e}); '
                       f'moved to {dest}. The best checkpoint is chosen again from the next '
                       'validations.')

  def restore_best(self, target: Any) -> tuple[Any, int] | None:
    """(state, step) of the verified best checkpoint; None when there is none or it fails
    verification (then reported, with the failure in ``self.best_failure``)."""
    self.best_failure = None
    if self._best is None:
      return None
    with _quiet_orbax():
      step = self._best.best_step()
    if step is None:
      return None
    try:
      restored = self._verify(self._best, step, target)
    except _Bad as e:
      path = self._step_dir(self._best, step)
      dest = self._move_aside(self._best, step)
      self.best_failure = f'the best checkpoint {path} failed verification: {e}'
      reporting.warn(f'Best checkpoint {path} is damaged ({e}); moved to {dest}. Evaluating the '
                     'final state instead.')
      return None
    return restored.state, step

  def restore_step(self, step: int, target: Any, *, best: bool = False) -> Restored:
    """The checkpoint of ``step`` (periodic, or the best one with ``best``), verified; changes
    nothing in the workdir.

    Raises:
      CheckpointError: naming the steps there are, when ``step`` has no checkpoint; naming the
        reason, when it fails verification.
    """
    manager = self._best if best else self._periodic
    kind = 'best' if best else 'periodic'
    steps = [] if manager is None else self._steps(manager)
    if step not in steps:
      where = os.path.join(self.workdir, 'best' if best else 'checkpoints')
      raise CheckpointError(f'{where} holds no {kind} checkpoint of step {step}; it holds steps '
                            f'{sorted(steps) or "none"}.')
    try:
      return self._verify(manager, step, target)
    except _Bad as e:
      raise CheckpointError(f'{self._step_dir(manager, step)} failed verification: {e}.') from None

  def wait(self) -> None:
    self._periodic.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    self._periodic.close()
    if self._best is not None:
      self._best.close()


def _handlers(items: tuple[str, ...]) -> dict[str, Any]:
  """orbax handlers of the items (declared, so that metadata can be read before any restore)."""
  return {name: ocp.StandardCheckpointHandler() if name == 'state'
          else ocp.JsonCheckpointHandler() for name in items}


def _json_or_none(path: str) -> Any:
  """The JSON value in ``path``; None when it is missing or not JSON."""
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _leaves_of_metadata(metadata: Any) -> list[tuple[str, Any]]:
  tree = getattr(metadata, 'tree', metadata)
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path, simple=True, separator='/'), m) for path, m in flat]


# ------------------------------------------------------------------------------------------------
# Reading a run without changing it (evaluation, prediction, the tools).


def _read_only_manager(directory: str, items: tuple[str, ...]) -> ocp.CheckpointManager | None:
  if not os.path.isdir(directory):
    return None
  with _quiet_orbax():
    return ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(read_only=True,
                                                        lightweight_initialize=True),
        item_handlers=_handlers(items))


def read(workdir: str, which: str | int = 'best', *, kind: str | None = None) -> Restored:
  """A verified checkpoint of the run in ``workdir``, restored as saved (numpy arrays, no
  model needed); nothing in the workdir is moved, deleted or written.

  Args:
    workdir: the run's directory.
    which: 'best' (the best-by-validation checkpoint when there is one and it verifies, else the
      newest periodic one that verifies), 'latest' (the newest periodic one that verifies) or a
      step (that checkpoint: periodic, else best).
    kind: with a step, 'periodic' or 'best' to name the directory it is in.

  Raises:
    CheckpointError: no checkpoint, the named one does not exist, or every candidate fails
      verification (each is named with its reason).
  """
  workdir = os.path.abspath(workdir)
  periodic = _read_only_manager(os.path.join(workdir, 'checkpoints'), _PERIODIC_ITEMS)
  best = _read_only_manager(os.path.join(workdir, 'best'), _BEST_ITEMS)
  candidates: list[tuple[ocp.CheckpointManager, int, tuple[str, ...]]] = []

  def steps(manager):
    if manager is None:
      return []
    with _quiet_orbax():
      return sorted(manager.all_steps(), reverse=True)

  try:
    if which in ('best', 'latest'):
      if which == 'best':
        candidates += [(best, s, _BEST_ITEMS) for s in steps(best)[:1]]
      candidates += [(periodic, s, _PERIODIC_ITEMS) for s in steps(periodic)]
    else:
      step = int(which)
      for name, manager, items in (('periodic', periodic, _PERIODIC_ITEMS),
                                   ('best', best, _BEST_ITEMS)):
        if kind in (None, name) and step in steps(manager):
          candidates.append((manager, step, items))
          break
      if not candidates:
        raise CheckpointError(
            f'{workdir} holds no checkpoint of step {step}; periodic steps: '
            f'{sorted(steps(periodic)) or "none"}, best: {sorted(steps(best)) or "none"}.')
    if not candidates:
      raise CheckpointError(f'{workdir} holds no checkpoint.')
    failures = []
    for manager, step, items in candidates:
      try:
        restored = verify(manager, step, items)
      except _Bad as e:
        failures.append(f'{os.path.join(str(manager.directory), str(step))}: {e}')
        continue
      for failure in failures:
        reporting.warn(f'Checkpoint {failure} (fails verification; left as it is). Using '
                       f'{restored.path}.')
      return restored
    raise CheckpointError(f'No checkpoint of {workdir} passes verification:\n  '
                          + '\n  '.join(failures))
  finally:
    for manager in (periodic, best):
      if manager is not None:
        manager.close()

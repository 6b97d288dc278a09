"""Verified, atomic checkpoints with orbax: periodic (resume) and best-by-validation.

Layout of a workdir::

  workdir/config.json          the config the run was started with (written once, never replaced)
  workdir/config_history.json  every config the run has had, with the step it took effect
  workdir/checkpoints/<step>/  periodic checkpoints, the newest good one resumes
  workdir/best/<step>/         the checkpoint with the best validation metric
  workdir/damaged/             checkpoints that failed verification, moved aside (never deleted)

Each step directory holds the orbax items ``state`` (the arrays), ``config`` (the run's config),
``history`` (the validation history up to that step; periodic checkpoints only) and
``checksums``: for every array its dtype, shape and the SHA-256 of its bytes, and the SHA-256 of
the other items. orbax writes all items into a temporary directory and renames it when complete, so
the checksums are as atomic as the checkpoint: a run killed while saving (even with SIGKILL) leaves
the previous checkpoints intact.

Restoring verifies everything: the checkpoint must be readable, every array must have the dtype,
shape and checksum recorded at save time, the tree must be the model's, the stored step must be the
directory's and every value finite. A checkpoint that fails is reported by path (one line), moved to
``workdir/damaged/`` and the next older one is tried. If checkpoints exist but none passes, the run
is refused with the list of them (starting over would silently lose the run); only a workdir with
no checkpoint at all starts from step 0.

``config_history.json`` is a list of ``{"step": N, "config": {...}, "changed": [keys]}`` (and
a ``"note"`` where needed), oldest first; entries are only ever appended. A workdir's
``results.json`` holds the validation history of the whole run, kept in the checkpoints.

Resume policy: a run resumed with a config that differs from the one it last ran with is refused
with the list of changed keys, except for keys that cannot change the results
(``RESULT_NEUTRAL_KEYS``: where the files are, how often progress is printed and checkpoints are
written). ``allow_config_change=True`` (``--allow_config_change``) accepts the change and appends
the new config to ``config_history.json`` with the step from which it applies; changes of
``STRUCTURAL_KEYS`` (the model and the input shape) are refused even then, since the checkpoint
cannot be restored into them.
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

from faujax import config_schema
from faujax import files
from faujax import reporting

# Config keys that change the shapes or meaning of the parameters: a checkpoint written under one
# value cannot be restored under another (a key names itself and everything below it).
STRUCTURAL_KEYS = ('model', 'data.name', 'data.builder_config', 'augment.image_size')
_STRUCTURAL_KEYS = STRUCTURAL_KEYS  # the earlier name
# Config keys that cannot change the results of a run (resume is exact whatever their values):
# a resume may change them without --allow_config_change (the change is still recorded).
RESULT_NEUTRAL_KEYS = ('data.data_dir', 'data.manual_dir', 'train.log_every', 'checkpoint.every',
                       'checkpoint.keep')

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.json'
DAMAGED_DIR = 'damaged'
CHECKSUM_FORMAT = 'faujax-checksums-v1'
_PERIODIC_ITEMS = ('state', 'config', 'history', 'checksums')
_BEST_ITEMS = ('state', 'config', 'checksums')


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
  """A checkpoint or workdir that cannot be used for the current run."""


class ConfigChangeError(CheckpointError):
  """A resume with a config that differs from the run's."""


@dataclasses.dataclass(frozen=True)
class Restored:
  """A checkpoint that passed verification."""
  state: Any
  step: int
  path: str
  history: list[dict[str, Any]]
  config: dict[str, Any]


class _Bad(Exception):
  """Why a checkpoint failed verification (internal)."""


# ------------------------------------------------------------------------------------------------
# Config comparison.


def _lookup(d: dict, dotted: str) -> Any:
  for part in dotted.split('.'):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
  return any(key == p or key.startswith(p + '.') for p in prefixes)


def flatten_config(d: Any, prefix: str = '') -> dict[str, Any]:
  """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (lists and tuples are values)."""
  if not isinstance(d, dict) or (prefix and not d):
    return {prefix: d}
  out = {}
  for k, v in d.items():
    out.update(flatten_config(v, f'{prefix}.{k}' if prefix else str(k)))
  return out


_ABSENT = '<absent>'


def _canonical(x: Any) -> str:
  return json.dumps(x, sort_keys=True, default=str)


def config_diff(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
  """Every leaf key whose value differs, as (dotted key, old value, new value), sorted."""
  a, b = flatten_config(old), flatten_config(new)
  return [(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b))
          if _canonical(a.get(k, _ABSENT)) != _canonical(b.get(k, _ABSENT))]


def _describe(diffs: list[tuple[str, Any, Any]], old_name: str = 'the run has') -> str:
  return '\n  '.join(f'config.{k}: {old_name} {a!r}, this run has {b!r}' for k, a, b in diffs)


def check_compatible(saved: dict, current: dict, where: str) -> None:
  """Raises CheckpointError naming the structural config keys whose values differ."""
  diffs = []
  for key in STRUCTURAL_KEYS:
    a, b = _lookup(saved, key), _lookup(current, key)
    if _canonical(a) != _canonical(b):
      diffs.append(f'config.{key}: checkpoint has {a!r}, this run has {b!r}')
  if diffs:
    raise CheckpointError(
        f'The checkpoint in {where} was written with an incompatible config:\n  '
        + '\n  '.join(diffs) + '\nUse a new --workdir, or the config the checkpoint was written '
        'with.')


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


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
  return hashlib.sha256(_canonical(x).encode()).hexdigest()


def checksums(step: int, state: Any, items: dict[str, Any]) -> dict[str, Any]:
  """The ``checksums`` item of a checkpoint of ``state`` (and the JSON ``items``) at ``step``."""
  return {'format': CHECKSUM_FORMAT, 'algorithm': 'sha256', 'step': int(step),
          'arrays': {key: {'dtype': x.dtype.str, 'shape': list(x.shape), 'sha256': _array_digest(x)}
                     for key, x in _leaves(state)},
          'items': {name: _json_digest(value) for name, value in items.items()}}


def _first_line(e: BaseException, limit: int = 240) -> str:
  text = str(e).strip().splitlines()
  first = (text[0] if text else '').split(' [tensorstore_spec=')[0]
  line = f'{type(e).__name__}: {first}'
  return line if len(line) <= limit else line[:limit - 3] + '...'


def _finite(x: np.ndarray) -> bool:
  return not np.issubdtype(x.dtype, np.inexact) or bool(np.all(np.isfinite(x)))


def nonfinite_leaves(state: Any) -> list[str]:
  """The keys of the floating-point leaves of ``state`` that hold a NaN or an Inf."""
  return [key for key, x in _leaves(state) if not _finite(x)]


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


def _read_json(path: str, what: str) -> Any:
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(
        f'{path} is not valid JSON ({_first_line(e)}); it is the record of {what}. Restore it from '
        'a backup, or use a new --workdir.') from None


# ------------------------------------------------------------------------------------------------


class Checkpointer:
  """Periodic + best checkpoints of a host pytree ``state`` (numpy arrays), verified at restore.

  Raises ConfigChangeError when ``workdir`` holds a run with a different config (see the module
  docstring); ``allow_config_change`` accepts the changes that are not structural.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, keep: int = 2,
               best_metric: str | None = None, best_mode: str = 'max',
               allow_config_change: bool = False):
    _install_event_loop_filter()
    self.workdir = os.path.abspath(workdir)
    self.config_json = config_to_json(config)
    self.allow_config_change = allow_config_change
    self._reference_checked = False
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
        best_options = ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=self._best_value, best_mode=best_mode,
            keep_checkpoints_without_metrics=False, enable_async_checkpointing=False)
        self._best = ocp.CheckpointManager(
            os.path.join(self.workdir, 'best'), options=best_options,
            item_handlers=_handlers(_BEST_ITEMS))
    self._load_record()

  def _best_value(self, metrics: Any) -> float:
    try:
      value = float(metrics[self.best_metric])
    except (KeyError, TypeError, ValueError):
      return float('nan')
    return value

  # ---------------------------------------------------------------------------------------------
  # The config record and the resume policy.

  @property
  def config_path(self) -> str:
    return os.path.join(self.workdir, CONFIG_FILE)

  @property
  def history_path(self) -> str:
    return os.path.join(self.workdir, HISTORY_FILE)

  def _load_record(self) -> None:
    """Reads config.json / config_history.json and applies the resume policy to them."""
    self._history: list[dict[str, Any]] | None = None
    original = None
    if os.path.exists(self.config_path):
      original = _read_json(self.config_path, 'the config the run was started with')
    if os.path.exists(self.history_path):
      history = _read_json(self.history_path, 'the configs the run has had')
      if (not isinstance(history, list) or not history
          or not all(isinstance(e, dict) and isinstance(e.get('config'), dict)
                     and isinstance(e.get('step'), int) for e in history)):
        raise CheckpointError(
            f'{self.history_path} is not a list of {{"step": int, "config": {{...}}}} entries; it '
            'is the record of the configs the run has had. Restore it from a backup, or use a new '
            '--workdir.')
      self._history = history
    elif original is not None:  # a workdir written before config_history.json existed
      self._history = [{'step': 0, 'config': original, 'changed': []}]
    if self._history is not None:
      self._check_policy(self._history[-1]['config'], self.history_path
                         if os.path.exists(self.history_path) else self.config_path)
      self._reference_checked = True
      if original is None and jax.process_index() == 0:  # put the original record back
        files.write_json(self.config_path, self._history[0]['config'])
    elif not self._periodic.all_steps():
      # A new run: its config is the original one.
      self._history = [{'step': 0, 'config': self.config_json, 'changed': []}]
      self._reference_checked = True
      if jax.process_index() == 0:
        os.makedirs(self.workdir, exist_ok=True)
        files.write_json(self.config_path, self.config_json)
        files.write_json(self.history_path, self._history)
    # Otherwise checkpoints exist but the record is gone: the policy is applied to the config of
    # the checkpoint that resumes (``record_config``).

  def _check_policy(self, reference: dict, where: str) -> list[tuple[str, Any, Any]]:
    diffs = config_diff(reference, self.config_json)
    structural = [d for d in diffs if _under(d[0], STRUCTURAL_KEYS)]
    relevant = [d for d in diffs if not _under(d[0], RESULT_NEUTRAL_KEYS)]
    if structural:
      raise ConfigChangeError(
          f'{self.workdir} holds a run whose model or input shape differs from this config '
          f'({where}):\n  {_describe(structural)}\nIts checkpoints cannot be restored into this '
          'model, even with --allow_config_change. Use a new --workdir, or the run\'s config.')
    if relevant and not self.allow_config_change:
      raise ConfigChangeError(
          f'{self.workdir} holds a run made with a different config ({where}); resuming would '
          f'mix two configs without a record. Changed keys:\n  {_describe(relevant)}\n'
          'Pass --allow_config_change (train_and_evaluate(..., allow_config_change=True)) to '
          f'resume with these changes (they are recorded in {HISTORY_FILE}), or use a new '
          '--workdir, or the run\'s config.')
    return diffs

  def record_config(self, start_step: int, restored: Restored | None = None) -> None:
    """Appends this run's config to config_history.json when it differs from the last entry or
    takes effect at an earlier step (a resume that fell back past a recorded change)."""
    if not self._reference_checked:  # the record was lost: use the resumed checkpoint's config
      if restored is None:  # nothing was restored after all: a new run
        self._history = [{'step': 0, 'config': self.config_json, 'changed': []}]
      else:
        self._check_policy(restored.config, restored.path)
        self._history = [{'step': 0, 'config': restored.config, 'changed': [],
                          'note': f'{CONFIG_FILE} and {HISTORY_FILE} were missing; this is the '
                                  f'config stored in {restored.path}'}]
      self._reference_checked = True
      if jax.process_index() == 0:
        files.write_json(self.config_path, self._history[0]['config'])
    last = self._history[-1]
    diffs = config_diff(last['config'], self.config_json)
    if not diffs and start_step >= last['step']:
      if not os.path.exists(self.history_path) and jax.process_index() == 0:
        files.write_json(self.history_path, self._history)
      return
    entry = {'step': int(start_step), 'config': self.config_json,
             'changed': [k for k, _, _ in diffs]}
    if start_step < last['step']:
      entry['note'] = (f'resumed from step {start_step}, before the step ({last["step"]}) of the '
                       'previous entry')
    self._history = [*self._history, entry]
    if jax.process_index() == 0:
      files.write_json(self.history_path, self._history)
    if diffs:
      reporting.say(f'Config changed at step {start_step} (recorded in {self.history_path}): '
                    + ', '.join(f'config.{k}' for k, _, _ in diffs))

  @property
  def config_history(self) -> list[dict[str, Any]]:
    return list(self._history or [])

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

  def _items(self, step: int, state: Any, json_items: dict[str, Any]) -> ocp.args.Composite:
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        checksums=ocp.args.JsonSave(checksums(step, state, json_items)),
        **{name: ocp.args.JsonSave(value) for name, value in json_items.items()})

  def save(self, step: int, state: Any, *, history: list[dict[str, Any]] | None = None,
           force: bool = False) -> None:
    """A periodic checkpoint of ``state`` with the validation ``history`` up to ``step``."""
    history = reporting.jsonable(list(history or []))
    self._periodic.save(step, args=self._items(step, state, {'config': self.config_json,
                                                             'history': history}), force=force)

  def save_best(self, step: int, state: Any, metrics: dict[str, float]) -> None:
    if self._best is None:
      return
    value = metrics.get(self.best_metric)
    if value is None or not np.isfinite(value):
      return
    self._best.save(step, args=self._items(step, state, {'config': self.config_json}),
                    metrics={k: float(v) for k, v in metrics.items() if np.isscalar(v)})

  # ---------------------------------------------------------------------------------------------
  # Verified restore.

  def _step_dir(self, manager: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(manager.directory), str(step))

  def _verify(self, manager: ocp.CheckpointManager, step: int, target: Any) -> Restored:
    """The checkpoint of ``step``, or _Bad with the reason it cannot be used."""
    path = self._step_dir(manager, step)
    items = _PERIODIC_ITEMS if manager is self._periodic else _BEST_ITEMS
    if not os.path.isdir(path):
      raise _Bad('the directory is missing')
    missing = [name for name in items if not os.path.isdir(os.path.join(path, name))]
    if missing:
      raise _Bad(f'item{"s" if len(missing) > 1 else ""} {", ".join(missing)} missing'
                 + (' (written without checksums?)' if 'checksums' in missing else ''))
    wanted = {key: x for key, x in _leaves(target)}
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
      if set(arrays) != set(wanted):
        extra, lacking = sorted(set(arrays) - set(wanted)), sorted(set(wanted) - set(arrays))
        raise _Bad('its arrays are not the model\'s' + (f'; not in the model: {extra[:3]}'
                                                        if extra else '')
                   + (f'; not in the checkpoint: {lacking[:3]}' if lacking else ''))
      for key, x in wanted.items():
        entry = arrays[key]
        if not isinstance(entry, dict):
          raise _Bad(f'the checksum entry of {key} is malformed')
        if entry.get('dtype') != x.dtype.str or entry.get('shape') != list(x.shape):
          raise _Bad(f'{key} was saved as {entry.get("dtype")} {entry.get("shape")}; the model '
                     f'has {x.dtype.str} {list(x.shape)}')
      try:
        stored = manager.item_metadata(step)['state']
        stored = {key: m for key, m in _leaves_of_metadata(stored)}
      except Exception as e:  # pylint: disable=broad-except
        raise _Bad(f'unreadable array metadata: {_first_line(e)}') from None
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
            **{name: ocp.args.JsonRestore() for name in items if name not in ('state',
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
    for name in items:
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
    try:
      check_compatible(config, self.config_json, path)
    except CheckpointError:
      raise _Bad('written for another model or input shape: '
                 + ', '.join(f'config.{k}' for k, _, _ in config_diff(config, self.config_json)
                             if _under(k, STRUCTURAL_KEYS))) from None
    history = restored.get('history', [])
    if not isinstance(history, list):
      raise _Bad('the history item is not a list')
    return Restored(state=state, step=step, path=path, history=history, config=config)

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


def _leaves_of_metadata(metadata: Any) -> list[tuple[str, Any]]:
  tree = getattr(metadata, 'tree', metadata)
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path, simple=True, separator='/'), m) for path, m in flat]

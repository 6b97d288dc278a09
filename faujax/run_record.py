"""A run's config record and resume policy: ``config.json`` and ``config_history.json``.

``config.json`` is the config the run was started with (written once, never replaced);
``config_history.json`` is a list of ``{"step": N, "config": {...}, "changed": [keys]}`` (and a
``"note"`` where needed), oldest first, only ever appended: every config the run has had, with
the step from which it applies.

Resume policy: a run resumed with a config that differs from the one it last ran with is refused
with the list of changed keys, except for keys that cannot change the results
(``RESULT_NEUTRAL_KEYS``: where the files are, how often progress is printed and checkpoints are
written). ``allow_config_change=True`` (``--allow_config_change``) accepts the change and appends
the new config to ``config_history.json`` with the step from which it applies; changes of
``STRUCTURAL_KEYS`` (the model and the input shape) are refused even then, since the checkpoints
cannot be restored into them. ``faujax.checkpoint.Checkpointer`` holds a workdir's record.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from faujax import files
from faujax import reporting

# Config keys that change the shapes or meaning of the parameters: a checkpoint written under one
# value cannot be restored under another (a key names itself and everything below it).
STRUCTURAL_KEYS = ('model', 'data.name', 'data.builder_config', 'augment.image_size')
# Config keys that cannot change the results of a run (resume is exact whatever their values):
# a resume may change them without --allow_config_change (the change is still recorded).
RESULT_NEUTRAL_KEYS = ('data.data_dir', 'data.manual_dir', 'train.log_every', 'checkpoint.every',
                       'checkpoint.keep')

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.json'


class CheckpointError(ValueError):
  """A checkpoint or workdir that cannot be used for the current run."""


class ConfigChangeError(CheckpointError):
  """A resume with a config that differs from the run's."""


def _lookup(d: dict, dotted: str) -> Any:
  for part in dotted.split('.'):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d


def under(key: str, prefixes: tuple[str, ...]) -> bool:
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


def canonical(x: Any) -> str:
  """A deterministic JSON text of ``x`` (for comparing and hashing records)."""
  return json.dumps(x, sort_keys=True, default=str)


def config_diff(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
  """Every leaf key whose value differs, as (dotted key, old value, new value), sorted."""
  a, b = flatten_config(old), flatten_config(new)
  return [(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b))
          if canonical(a.get(k, _ABSENT)) != canonical(b.get(k, _ABSENT))]


def _describe(diffs: list[tuple[str, Any, Any]], old_name: str = 'the run has') -> str:
  return '\n  '.join(f'config.{k}: {old_name} {a!r}, this run has {b!r}' for k, a, b in diffs)


def check_compatible(saved: dict, current: dict, where: str) -> None:
  """Raises CheckpointError naming the structural config keys whose values differ."""
  diffs = []
  for key in STRUCTURAL_KEYS:
    a, b = _lookup(saved, key), _lookup(current, key)
    if canonical(a) != canonical(b):
      diffs.append(f'config.{key}: checkpoint has {a!r}, this run has {b!r}')
  if diffs:
    raise CheckpointError(
        f'The checkpoint in {where} was written with an incompatible config:\n  '
        + '\n  '.join(diffs) + '\nUse a new --workdir, or the config the checkpoint was written '
        'with.')


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _read_json(path: str, what: str) -> Any:
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(
        f'{path} is not valid JSON ({type(e).__name__}: {str(e).splitlines()[0]}); it is the '
        f'record of {what}. Restore it from '
        'a backup, or use a new --workdir.') from None


class RunRecord:
  """The config record of a workdir and the resume policy (module docstring).

  Args:
    workdir: the run's directory.
    config_json: this run's config (``config_to_json``).
    allow_config_change: accept changed keys that are not structural (recorded).
    has_checkpoints: the workdir already holds checkpoints (a lost record is then rebuilt from
      the checkpoint that resumes, ``record_config``).

  Raises:
    ConfigChangeError: the workdir holds a run with a different config (see the module
      docstring); CheckpointError: a damaged record.
  """

  def __init__(self, workdir: str, config_json: dict[str, Any], *, allow_config_change: bool,
               has_checkpoints: bool):
    self.workdir = workdir
    self.config_json = config_json
    self.allow_config_change = allow_config_change
    self.has_checkpoints = has_checkpoints
    self._reference_checked = False
    self._load()

  @property
  def config_path(self) -> str:
    return os.path.join(self.workdir, CONFIG_FILE)

  @property
  def history_path(self) -> str:
    return os.path.join(self.workdir, HISTORY_FILE)

  def _load(self) -> None:
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
      self.check_policy(self._history[-1]['config'], self.history_path
                         if os.path.exists(self.history_path) else self.config_path)
      self._reference_checked = True
      if original is None and jax.process_index() == 0:  # put the original record back
        files.write_json(self.config_path, self._history[0]['config'])
    elif not self.has_checkpoints:
      # A new run: its config is the original one.
      self._history = [{'step': 0, 'config': self.config_json, 'changed': []}]
      self._reference_checked = True
      if jax.process_index() == 0:
        os.makedirs(self.workdir, exist_ok=True)
        files.write_json(self.config_path, self.config_json)
        files.write_json(self.history_path, self._history)
    # Otherwise checkpoints exist but the record is gone: the policy is applied to the config of
    # the checkpoint that resumes (``record_config``).

  def check_policy(self, reference: dict, where: str) -> list[tuple[str, Any, Any]]:
    diffs = config_diff(reference, self.config_json)
    structural = [d for d in diffs if under(d[0], STRUCTURAL_KEYS)]
    relevant = [d for d in diffs if not under(d[0], RESULT_NEUTRAL_KEYS)]
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

  def record_config(self, start_step: int, restored: Any = None) -> None:
    """Appends this run's config to config_history.json when it differs from the last entry or
    takes effect at an earlier step (a resume that fell back past a recorded change).

    ``restored`` is the ``checkpoint.Restored`` the run resumes from (None: a new run)."""
    if not self._reference_checked:  # the record was lost: use the resumed checkpoint's config
      if restored is None:  # nothing was restored after all: a new run
        self._history = [{'step': 0, 'config': self.config_json, 'changed': []}]
      else:
        self.check_policy(restored.config, restored.path)
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

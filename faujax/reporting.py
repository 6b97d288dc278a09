"""What a run tells its user: metric writers, a progress line and the final results files."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
from faujax import files


class _LazyWriter:
  """Creates the TensorBoard writer at the first write, so a run (or a resume) that writes no
  scalar leaves no empty events file. ``clu.metric_writers`` imports TensorFlow (several
  seconds), so it is imported there too, not when ``faujax.train`` is."""

  def __init__(self, workdir: str):
    self._workdir = workdir
    self._writer: Any = None

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if not scalars:
      return
    if self._writer is None:
      from clu import metric_writers  # pylint: disable=g-import-not-at-top
      self._writer = metric_writers.create_default_writer(
          self._workdir, just_logging=jax.process_index() > 0, asynchronous=False)
    self._guarded(self._writer.write_scalars, step, scalars)

  def flush(self) -> None:
    if self._writer is not None:
      self._guarded(self._writer.flush)

  def _guarded(self, fn, *args) -> None:
    """``fn(*args)``; a full disk becomes ``files.NoRoomError`` naming the events files."""
    try:
      fn(*args)
    except Exception as e:  # pylint: disable=broad-except  # TensorFlow's errors
      if not files.no_room(e):
        raise
      raise files.NoRoomError(
          f'cannot write the TensorBoard events file in {self._workdir}: {files.no_room(e)} '
          '(no room on its disk); the checkpoints written so far are intact: free some space '
          'and run the same command to resume.') from None


def create_writer(workdir: str) -> _LazyWriter:
  """TensorBoard event files in ``workdir`` plus the console (process 0 only)."""
  return _LazyWriter(workdir)


def say(line: str) -> None:
  """A line for the user: printed by process 0 and logged."""
  logging.info('%s', line)
  if jax.process_index() == 0:
    print(line, flush=True)


def warn(line: str) -> None:
  """A warning for the user, one line: printed to stderr by process 0 (``WARNING: ...``) and
  logged at INFO (so that absl's console handler does not print it a second time)."""
  logging.info('WARNING: %s', line)
  if jax.process_index() == 0:
    print(f'WARNING: {line}', file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


class Progress:
  """Prints ``step 120/1000  loss 0.4120  3.21 steps/s  ETA 4m35s`` lines."""

  def __init__(self, total_steps: int, start_step: int = 0):
    self.total = total_steps
    self._last_step = start_step
    self._last_time = time.perf_counter()

  def report(self, step: int, loss: float) -> str:
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    line = (f'step {step}/{self.total}  loss {loss:.4f}  {rate:.2f} steps/s  '
            f'ETA {_duration((self.total - step) / max(rate, 1e-9))}')
    say(line)
    return line


def jsonable(x: Any) -> Any:
  """x with numpy values as plain Python (NaN and Inf as None), for json.dump."""
  if isinstance(x, dict):
    return {k: jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return jsonable(x.tolist())
  if isinstance(x, (np.floating, float)):
    return None if not np.isfinite(x) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  return x


def write_results(workdir: str, *, config: ml_collections.ConfigDict, task: Any, info: Any,
                  metrics: dict[str, Any], split: str, selected: str,
                  history: list[dict[str, float]], trivial: dict[str, float],
                  evals: dict[str, Any] | None = None) -> dict[str, Any]:
  """Writes ``results.json`` and ``results.md`` (a paper-style table) and prints the table.

  ``history`` is the validation history of the whole run (kept in the checkpoints across
  resumes, see ``faujax.checkpoint``); ``evals`` the evaluators' results
  (``faujax.evaluators``)."""
  table = task.table(metrics)
  key = task.selection_metric
  ablation = config.get('ablation', '')
  model = f'{config.model.name} ({ablation})' if ablation else config.model.name
  lines = [
      f'# Results: {model} on {info.name}/{info.builder_config} '
      f'(fold {config.data.get("fold", 1)}, {split} split)', '',
      f'Checkpoint: {selected}.', '', table, '',
      f'Trivial baseline ({trivial["name"]}): {key} = {100 * trivial[key]:.1f}; '
      f'this model: {100 * metrics[key]:.1f}.', '']
  markdown = '\n'.join(lines)
  results = {
      'model': config.model.name, 'ablation': ablation,
      'dataset': f'{info.name}/{info.builder_config}',
      'fold': config.data.get('fold', 1), 'split': split, 'checkpoint': selected,
      'label_names': list(info.label_names), 'metrics': metrics, 'trivial_baseline': trivial,
      'validation_history': history, 'evals': dict(evals or {}),
  }
  if jax.process_index() == 0:
    files.write_text(os.path.join(workdir, 'results.json'),
                     json.dumps(jsonable(results), indent=2))
    files.write_text(os.path.join(workdir, 'results.md'), markdown)
    print(markdown, flush=True)
  return results

"""A trained (or imported) run, loaded for evaluation and prediction: ``load_run``.

  run = load_run('/tmp/faujax/default')           # or a step directory inside the workdir
  outputs = run.predict_batch(batch)               # the run's own evaluation step
  model = run.model()                              # the NNX module, e.g. for its figures

Everything comes from the checkpoint itself: the config it was written with (its ``config``
item), the label space and statistics (its ``dataset`` item, ``DatasetInfo.from_record``), the
parameters, the batch statistics and the model's constants (its ``state`` item:
``faujax.model_state``); the optimiser state is read and dropped. So a workdir copied to another
machine predicts and evaluates with no dataset and no side files, and an imported checkpoint
(``faujax.tools.import_checkpoint``) is a run like any other. Reading verifies every checksum and
changes nothing in the workdir (``faujax.checkpoint.read``).

A workdir written before checkpoints held the dataset record falls back to its
``dataset_info.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from faujax import config_base
from faujax import checkpoint as ckpt_lib
from faujax import model_state
from faujax import models
from faujax import tasks
from faujax import train
from faujax.data import augment
from faujax.data import dataset_info

LEGACY_INFO_FILE = 'dataset_info.json'


@dataclasses.dataclass
class TrainedRun:
  """The model of a checkpoint, ready for evaluation (see the module docstring).

  Attributes:
    config: the run's config (resolved), as stored in the checkpoint.
    info: the dataset's label space and training statistics.
    task: the task built from them (its evaluation outputs and metrics).
    aug_config: the evaluation preprocessing (``config.augment``).
    apply_fn: the model's pure apply function.
    variables: ``{'params', 'batch_stats', 'constants'}`` of the checkpoint.
    face_template: the mean five points of the training faces (inference alignment), or None.
    step: the checkpoint's step; path: its directory; workdir: the run's.
  """
  config: ml_collections.ConfigDict
  info: dataset_info.DatasetInfo
  task: tasks.Task
  aug_config: augment.AugmentConfig
  apply_fn: model_state.ModelFn
  variables: dict[str, Any]
  face_template: np.ndarray | None
  step: int
  path: str
  workdir: str

  def model(self) -> nnx.Module:
    """The NNX module holding the checkpoint's variables (to call its methods)."""
    return self.apply_fn.module(self.variables)

  def outputs(self, split: str, keys: tuple[str, ...], batch_size: int = 64) -> dict[str, Any]:
    """The model's eval-mode outputs over a split of the run's configured dataset
    (``train.split_outputs``: ``batch/<key>`` names a preprocessed batch entry)."""
    return train.split_outputs(self.apply_fn, self.variables, data_config=self.config.data,
                               aug_config=self.aug_config, split=split, keys=keys,
                               batch_size=batch_size)

  def evaluate(self, split: str = 'test', *, data_dir: str | None = None,
               batch_size: int = 64) -> dict[str, Any]:
    """The task's metrics over a split of the run's configured dataset (one process), built in
    ``data_dir`` when given (else where the run's config says)."""
    from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top  # TensorFlow
    data = ml_collections.ConfigDict(self.config.data.to_dict())
    if data_dir is not None:
      data.data_dir = data_dir
    step = jax.jit(lambda v, b: train.predict_batch(self.apply_fn, v, b, task=self.task,
                                                    aug_config=self.aug_config))
    accumulator = self.task.accumulator()
    for batch in input_pipeline.create_split(data, split, batch_size=batch_size, train=False):
      accumulator.add(jax.device_get(step(self.variables, batch)))
    return accumulator.compute()

  def predict_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
    """The task's evaluation outputs of a uint8 batch (``train.predict_batch``), unjitted."""
    return train.predict_batch(self.apply_fn, self.variables, batch, task=self.task,
                               aug_config=self.aug_config)


def locate(path: str) -> tuple[str, tuple[str, int] | None]:
  """(workdir, None) for a run's directory; (workdir, (kind, step)) for a step directory
  ``workdir/{checkpoints,best}/<step>``.

  Raises:
    CheckpointError: ``path`` is neither.
  """
  p = os.path.abspath(path)
  if not os.path.exists(p):
    raise ckpt_lib.CheckpointError(f'{path}: no such file or directory; expected the --workdir '
                                   'of a training run or of python -m '
                                   'faujax.tools.import_checkpoint.')
  parent, name = os.path.split(p)
  workdir, kind = os.path.split(parent)
  if name.isdigit() and kind in ('checkpoints', 'best') and os.path.isdir(p):
    return workdir, ('best' if kind == 'best' else 'periodic', int(name))
  if any(os.path.isdir(os.path.join(p, d)) for d in ('checkpoints', 'best')):
    return p, None
  raise ckpt_lib.CheckpointError(
      f'{path}: not a faujax run (no checkpoints/ or best/ in it, and not a step directory '
      'inside one); expected the --workdir of a training run or of '
      'python -m faujax.tools.import_checkpoint.')


def _step_of(which: str | int) -> str | int:
  """'best', 'latest' or the step that ``which`` names."""
  if which in ('best', 'latest'):
    return which
  if isinstance(which, (int, np.integer)) and not isinstance(which, bool) and which >= 0:
    return int(which)
  if isinstance(which, str) and which.isdigit():
    return int(which)
  raise ValueError(f"which: expected 'best', 'latest' or a step (an int >= 0), got {which!r}.")


def _legacy_info(workdir: str) -> tuple[dict[str, Any], str]:
  path = os.path.join(workdir, LEGACY_INFO_FILE)
  if not os.path.exists(path):
    raise ckpt_lib.CheckpointError(
        f'{workdir}: its checkpoint holds no dataset record (written by an older faujax) and '
        f'there is no {LEGACY_INFO_FILE} beside it; resume the run once with this faujax to '
        'store it.')
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f), path
  except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ckpt_lib.CheckpointError(f'{path}: not readable JSON ({e}).') from None


def load_run(path: str, which: str | int = 'best') -> TrainedRun:
  """The model of the run ``path`` ready for evaluation (module docstring).

  Args:
    path: a workdir, or one checkpoint's step directory inside it (that checkpoint, whatever
      ``which`` says).
    which: 'best' (the best-by-validation checkpoint, else the newest periodic one), 'latest'
      (the newest periodic one) or a step.

  Raises:
    CheckpointError: no usable checkpoint (each failure named); ValueError: a damaged record.
  """
  workdir, step_dir = locate(path)
  if step_dir is None:
    restored = ckpt_lib.read(workdir, _step_of(which))
  else:
    restored = ckpt_lib.read(workdir, step_dir[1], kind=step_dir[0])
  config = config_base.resolve_config(ml_collections.ConfigDict(restored.config))
  record, where = restored.dataset, f'{restored.path} (its dataset item)'
  if record is None:
    record, where = _legacy_info(workdir)
  info = dataset_info.DatasetInfo.from_record(record, where)
  template = record.get('face_template')
  sections = config_base.config_sections(config)
  task = train.build_task(config, info)
  state = restored.state
  constants = state.get('constants', {})
  model = models.build(config.model, info, rngs=nnx.Rngs(params=jax.random.key(0)),
                       constants=_nested(constants))
  variables = {k: state.get(k, {}) for k in ('params', 'batch_stats')}
  variables['constants'] = constants
  model_state.load_variables(model, variables)  # checks every path and shape
  return TrainedRun(config=config, info=info, task=task, aug_config=sections['augment'],
                    apply_fn=model_state.ModelFn.from_model(model),
                    variables=model_state.variables(model),
                    face_template=None if template is None else np.asarray(template, np.float32),
                    step=restored.step, path=restored.path, workdir=workdir)


def _nested(constants: dict[str, Any]) -> dict[str, Any]:
  """The constants tree -> the ``{name: array}`` a model constructor takes.

  A model's constants live at their module paths (e.g. ``label_gcn/embeddings``); the
  constructor takes them by the names its ``prepare`` gives them, which are the leaf names.
  """
  flat = model_state.flatten(constants)
  out: dict[str, Any] = {}
  for key, value in flat.items():
    name = key.rsplit('/', 1)[-1]
    if name in out:
      raise ValueError(f'two model constants are named {name!r}; cannot pass them by name.')
    out[name] = np.asarray(value)
  return out

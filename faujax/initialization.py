"""A model's initial variables: built from its config, then a pretrained trunk, then a run.

``create_model`` builds ``config.model`` for the label space (``faujax.models.build``, its
constants prepared from the data unless given), draws its parameters from the seed, and then
overwrites:
  * ``config.pretrained_backbone``: the trunk's variables from an ImageNet conversion
    (``python -m faujax.tools.import_weights``, ``faujax.backbones.pretrained``);
  * ``config.init_from``: every variable whose path and shape a run's checkpoint also has (a
    workdir or a step directory; e.g. ME-GraphAU's stage 2 from its stage 1, DISFA from BP4D),
    as the public codes' ``load_state_dict(strict=False)``.
Under ``config.parallelism='pmap'`` its BatchNorms are synced over the devices; with
``config.unbiased_running_var`` their running variances track PyTorch's unbiased estimate
(``faujax.layers.batch_norm``).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from faujax import checkpoint as ckpt_lib
from faujax import config_schema
from faujax import model_state
from faujax import models
from faujax import parallel
from faujax import reporting
from faujax.data import dataset_info
from faujax.layers.batch_norm import use_unbiased_running_var

Array = jax.Array


def create_model(config: ml_collections.ConfigDict, info: dataset_info.DatasetInfo,
                 rng: Array, constants: dict[str, Any] | None = None) -> nnx.Module:
  """``config.model`` for ``info``, initialised from ``rng`` (then ``config.pretrained_backbone``
  and ``config.init_from``), its BatchNorms synced over the pmap axis when
  ``config.parallelism == 'pmap'``. ``constants``: the model's (None: prepared from the data,
  ``faujax.models.prepare``)."""
  model = models.build(config.model, info, rngs=nnx.Rngs(params=rng), constants=constants)
  path = config.get('pretrained_backbone', '')
  if path:
    from faujax.backbones import pretrained  # orbax restore; only needed with a checkpoint
    variables = model_state.variables(model)
    loaded = pretrained.load_pretrained(path, config.model.backbone.name)
    for collection, tree in loaded.items():
      if 'backbone' not in variables[collection]:
        raise config_schema.ConfigError(
            f'config.pretrained_backbone={path!r}: the model has no {collection}/backbone '
            'sub-tree to load it into.')
      model_state.check_same_structure(variables[collection]['backbone'], tree,
                                       f'config.pretrained_backbone={path!r} ({collection})')
      variables[collection]['backbone'] = tree
    model_state.load_variables(model, variables)
  if config.get('init_from', ''):
    _init_from(model, config.init_from)
  if config.get('parallelism', 'jit') == 'pmap':
    parallel.sync_batch_norm(model, parallel.PMAP_AXIS)
  if config.get('unbiased_running_var', False):
    use_unbiased_running_var(model)
  return model


def _init_from(model: nnx.Module, source: str) -> None:
  """``config.init_from``: every variable whose path and shape the verified best (else newest)
  checkpoint of the run ``source`` (a workdir or a step directory) also has takes its value; the
  rest keeps its initialisation (as the public code's ``load_state_dict(strict=False)``: e.g.
  ME-GraphAU's stage 2 from its stage 1, DISFA from a BP4D model). Both lists are printed."""
  workdir, step = _checkpoint_of(source)
  try:
    saved = ckpt_lib.read(workdir, 'best' if step is None else step[1], kind=None if step is None
                          else step[0]).state
  except ckpt_lib.CheckpointError as e:
    raise config_schema.ConfigError(f'config.init_from={source!r}: {e}') from None
  variables = model_state.variables(model)
  taken, kept = [], []
  for collection in ('params', 'batch_stats'):
    flat = model_state.flatten(variables[collection])
    given = model_state.flatten(saved.get(collection, {}))
    for key, value in flat.items():
      if key in given and np.shape(given[key]) == np.shape(value):
        flat[key] = np.asarray(given[key], np.asarray(value).dtype)
        taken.append(f'{collection}/{key}')
      else:
        kept.append(f'{collection}/{key}')
    variables[collection] = model_state.unflatten(flat)
  if not taken:
    raise config_schema.ConfigError(
        f'config.init_from={source!r}: no variable of this model has a path and shape in that '
        'run; is it a run of another model?')
  model_state.load_variables(model, variables)
  reporting.say(f'Initialised {len(taken)} variables from {source}; {len(kept)} keep their '
                f'initialisation' + (f': {", ".join(_module_names(kept))}.' if kept else '.'))


def _module_names(paths: list[str]) -> list[str]:
  """The distinct top-level modules of variable paths 'collection/module/...'."""
  return sorted({'/'.join(p.split('/')[1:2]) for p in paths})


def _checkpoint_of(path: str) -> tuple[str, tuple[str, int] | None]:
  """(workdir, None) for a run directory; (workdir, (kind, step)) for
  ``workdir/{checkpoints,best}/<step>``."""
  p = os.path.abspath(path)
  parent, name = os.path.split(p)
  workdir, kind = os.path.split(parent)
  if name.isdigit() and kind in ('checkpoints', 'best'):
    return workdir, ('best' if kind == 'best' else 'periodic', int(name))
  return p, None

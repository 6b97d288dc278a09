"""Model registry: ``config.model`` -> a Flax NNX module ``model(batch, *, train, rngs) -> outputs``.

Every model takes the dataset's label space first and its options as keyword arguments with their
defaults, written once, in its constructor: ``default_config(name)`` reads them from the
signature (plus the options of the named trunk), so ``config.model`` declares every key a model
reads and config files write only what differs. ``build`` is ``Model(info, constants=...,
**config.model)``.

What a model derives from the data (graphs from the training labels, label embeddings, class
means) is its ``constants``: a model class that has any defines ``prepare(info, **options) ->
{name: array}`` (its options are a subset of the constructor's, by name), ``prepare(cfg, info)``
below calls it once before training, and the model holds them as ``model_state.Constant``
variables, which are checkpointed with the run (``faujax.model_state``). Restoring a run passes
the checkpoint's constants instead, so nothing is recomputed from the data. Every model takes the
preprocessed batch (``image`` (B, S, S, 3) float,
``landmarks`` (B, P, 2)) and returns a dict of float32 outputs that the task's loss reads
(``au_logits`` or ``au_probs``, ``expression_logits``, ``va``, ``expression_multi_logits``, ...).

A paper's ablation rows are ``ABLATIONS`` in its model module: row name -> the config keys it sets
(``faujax.config_base.resolve`` applies ``config.ablation``), one mechanism for every model. A
model trained with auxiliary losses names them in ``LOSS_TERMS`` (``faujax.tasks`` computes
them: MGRR-Net's landmark alignment, AU-GCN's ROI terms, ME-GraphAU's edge classification), and
the evaluators it comes with in ``EVALUATORS`` (``faujax.evaluators``: its figures, extra
metrics).

A model's constants are held at their module paths (``label_gcn/adjacency``); each ``Constant``
attribute is named as the ``prepare`` key it holds, so that a restored run passes them back by
their leaf names (``faujax.trained_run``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from faujax import backbones
from faujax import config_schema

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# config.model.name -> (module, class). A model's module is imported when the model is used, so a
# command pays only for the model it runs; the module's ``ABLATIONS`` (if any) are its rows.
MODELS: dict[str, tuple[str, str]] = {
    'baseline': ('faujax.models.baseline', 'Baseline'),
    'au_gcn': ('faujax.models.au_gcn', 'AUGCN'),
    'mgrr_net': ('faujax.models.mgrr_net', 'MGRRNet'),
    'macg': ('faujax.models.macg', 'MACG'),
    'emotion_gcn': ('faujax.models.emotion_gcn', 'EmotionGCN'),
    'svml_rgcn': ('faujax.models.svml_rgcn', 'SVMLRGCN'),
    'me_graphau': ('faujax.models.me_graphau', 'MEGraphAU'),
}
# Constructor arguments that are not config keys.
_NOT_CONFIG = ('info', 'constants', 'dtype', 'rngs', 'self')


def _module(name: str):
  if name not in MODELS:
    raise config_schema.ConfigError(f'Unknown config.model.name {name!r}; expected one of '
                                    f'{tuple(MODELS)}.')
  return importlib.import_module(MODELS[name][0])


def _check_name(name: str) -> type[nnx.Module]:
  return getattr(_module(name), MODELS[name][1])


def _options(cls: type) -> dict[str, inspect.Parameter]:
  return {p.name: p for p in inspect.signature(cls.__init__).parameters.values()
          if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_CONFIG}


def backbone_config(name: str, **overrides: Any) -> ml_collections.ConfigDict:
  """``config.model.backbone`` for the trunk ``name``: its name and every option's default."""
  if name not in backbones.ARCHS:
    raise config_schema.ConfigError(f'Unknown config.model.backbone.name {name!r}; expected one '
                                    f'of {backbones.ARCHS}.')
  section = ml_collections.ConfigDict({'name': name, **backbones.default_kwargs(name)})
  for key, value in overrides.items():
    if key not in section:
      raise config_schema.unknown_key_error(key, 'model.backbone', section.keys())
    section[key] = value
  return section


def default_config(name: str) -> ml_collections.ConfigDict:
  """``config.model`` of model ``name`` with every key it reads and the constructor's default."""
  cls = _check_name(name)
  section = ml_collections.ConfigDict({'name': name, 'dtype': 'float32'})
  for key, param in _options(cls).items():
    if key == 'backbone':
      section.backbone = backbone_config(param.default['name'])
    else:
      section[key] = param.default
  return section


def loss_terms(name: str) -> tuple[str, ...]:
  """The auxiliary loss terms model ``name`` trains with (its module's ``LOSS_TERMS``, names of
  ``faujax.tasks.AUXILIARY_TERMS``; may be empty)."""
  return tuple(getattr(_module(name), 'LOSS_TERMS', ()))


def evaluators(name: str) -> tuple[str, ...]:
  """The evaluators model ``name`` comes with (its module's ``EVALUATORS``: module paths,
  ``faujax.evaluators``; may be empty)."""
  return tuple(getattr(_module(name), 'EVALUATORS', ()))


def ablations(name: str) -> Mapping[str, Mapping[str, Any]]:
  """The ablation rows of model ``name``: {row: {dotted config key: value}} (may be empty)."""
  return getattr(_module(name), 'ABLATIONS', {})


def prepare(cfg: Any, info: Any) -> dict[str, np.ndarray]:
  """The constants model ``cfg.name`` derives from the data described by ``info`` (its
  ``prepare`` with the options it names, from ``cfg``); ``{}`` for a model without any."""
  values = config_schema.to_plain(cfg)
  cls = _check_name(values.get('name'))
  fn = getattr(cls, 'prepare', None)
  if fn is None:
    return {}
  wanted = inspect.signature(fn).parameters
  options = {k: v for k, v in values.items() if k in wanted and k != 'info'}
  return {k: np.asarray(v) for k, v in fn(info, **options).items()}


def build(cfg: Any, info: Any, *, rngs: nnx.Rngs,
          constants: Mapping[str, Any] | None = None) -> nnx.Module:
  """``MODELS[cfg.name](info, constants=constants, **options)`` for the label space ``info``.

  ``constants`` None: ``prepare(cfg, info)`` (reads the data); a restored run passes its own.

  Raises:
    ConfigError: an unknown model, dtype, trunk or key (naming it and the valid ones).
  """
  values = config_schema.to_plain(cfg)
  name = values.pop('name', None)
  cls = _check_name(name)
  dtype = values.pop('dtype', 'float32')
  if dtype not in DTYPES:
    raise config_schema.ConfigError(f'Unknown config.model.dtype {dtype!r}; expected one of '
                                    f'{tuple(DTYPES)}.')
  known = _options(cls)
  for key in values:
    if key not in known:
      raise config_schema.unknown_key_error(key, 'model', list(known) + ['name', 'dtype'])
  if 'backbone' in values:
    trunk = dict(values['backbone'])
    declared = backbone_config(trunk.get('name', ''))
    for key in trunk:
      if key not in declared:
        raise config_schema.unknown_key_error(key, 'model.backbone', declared.keys())
  if constants is None:
    constants = prepare(cfg, info)
  if 'constants' in inspect.signature(cls.__init__).parameters:
    values['constants'] = dict(constants)
  elif constants:
    raise ValueError(f'model {name!r} takes no constants; got {sorted(constants)}.')
  return cls(info, **values, dtype=DTYPES[dtype], rngs=rngs)

"""Model registry: ``config.model`` -> a Flax module ``model(batch, *, train) -> outputs``.

Every model takes the preprocessed batch (``image`` (B, S, S, 3) float, ``landmarks`` (B, P, 2))
and returns a dict of float32 outputs that the task's loss reads (``au_logits`` or ``au_probs``,
``expression_logits``, ``va``, ``landmarks``, ...).

Config keys: ``model.name`` (one of ``MODELS``), ``model.dtype`` ('float32' | 'bfloat16'),
``model.backbone.name``, ``model.backbone.init_from`` (an orbax checkpoint written by
``python -m faujax.tools.import_weights``), and the model's own keys.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax.numpy as jnp
import ml_collections

from faujax import backbones
from faujax.models import emotion_gcn
from faujax.models import macg
from faujax.models.baseline import Baseline

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def _baseline(cfg: ml_collections.ConfigDict, info: Any, dtype: Any, bn_axis_name: str | None):
  return Baseline(task=info.task, num_labels=info.num_labels, backbone=cfg.backbone.name,
                  backbone_kwargs=dict(cfg.backbone.get('kwargs', None) or {}),
                  pooling=cfg.get('pooling', 'avg'), dropout=cfg.get('dropout', 0.0),
                  dtype=dtype, bn_axis_name=bn_axis_name)


_BUILDERS: dict[str, Callable[..., Any]] = {
    'baseline': _baseline,
    'emotion_gcn': emotion_gcn.from_config,
    'macg': macg.from_config,
}
MODELS: tuple[str, ...] = tuple(_BUILDERS)


def check_config(cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the config key of an unknown model, dtype or backbone."""
  if cfg.name not in _BUILDERS:
    raise ValueError(f'Unknown config.model.name {cfg.name!r}; expected one of {MODELS}.')
  if cfg.get('dtype', 'float32') not in DTYPES:
    raise ValueError(f'Unknown config.model.dtype {cfg.dtype!r}; expected one of {tuple(DTYPES)}.')
  if 'backbone' in cfg and cfg.backbone.name not in backbones.ARCHS:
    raise ValueError(f'Unknown config.model.backbone.name {cfg.backbone.name!r}; expected one of '
                     f'{backbones.ARCHS}.')


def build(cfg: ml_collections.ConfigDict, info: Any, *, bn_axis_name: str | None = None) -> Any:
  """The Flax module named by ``cfg.name`` for the dataset described by ``info``."""
  check_config(cfg)
  return _BUILDERS[cfg.name](cfg, info, DTYPES[cfg.get('dtype', 'float32')], bn_axis_name)


def load_pretrained_backbone(cfg: ml_collections.ConfigDict, variables: Any) -> Any:
  """Replaces the ``backbone`` sub-tree of ``variables`` by ``cfg.backbone.init_from`` if set."""
  path = cfg.get('backbone', {}).get('init_from', None) if 'backbone' in cfg else None
  if not path:
    return variables
  from faujax.backbones import pretrained  # orbax restore; only needed with init_from
  loaded = pretrained.load_pretrained(path, cfg.backbone.name)
  variables = flax.core.unfreeze(variables)
  for collection, tree in loaded.items():
    if 'backbone' not in variables.get(collection, {}):
      raise ValueError(f'config.model.backbone.init_from={path!r}: the model has no '
                       f'{collection}/backbone sub-tree to load it into.')
    _check_same_shapes(variables[collection]['backbone'], tree, f'{path} ({collection})')
    variables[collection]['backbone'] = tree
  return variables


def _check_same_shapes(expected: Any, got: Any, where: str) -> None:
  flat_e = flax.traverse_util.flatten_dict(expected, sep='/')
  flat_g = flax.traverse_util.flatten_dict(got, sep='/')
  missing = sorted(set(flat_e) - set(flat_g))
  extra = sorted(set(flat_g) - set(flat_e))
  shapes = [f'{k}: model {flat_e[k].shape}, checkpoint {flat_g[k].shape}'
            for k in sorted(set(flat_e) & set(flat_g)) if flat_e[k].shape != flat_g[k].shape]
  if missing or extra or shapes:
    raise ValueError(f'Pretrained backbone {where} does not fit the model: missing {missing[:10]}, '
                     f'unexpected {extra[:10]}, shape mismatches {shapes[:10]}.')

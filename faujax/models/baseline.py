"""The relation-free reference model: a CNN trunk, global pooling and a linear head.

This is the "ResNet50" row of the AU papers' ablation tables (MACG Table 4, MGRR-Net Table 5), the
ResNet-50 baseline of SVML-RGCN Table 2, and the single/multi-task baseline of Emotion-GCN Table I
(there as ``EmotionGCN(classifier='linear')``), with any trunk from ``faujax.backbones``.

Outputs (float32), by the dataset's task:
  'au':               ``au_logits`` (B, N).
  'expression':       ``expression_logits`` (B, K) and ``va`` (B, 2) (valence, arousal).
  'expression_multi': ``expression_multi_logits`` (B, C).
"""

from __future__ import annotations

from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.config_schema import frozen_mapping
from faujax.models import trunk as trunk_lib

POOLINGS = ('avg', 'max')
_OUTPUT = {'au': 'au_logits', 'expression': 'expression_logits',
           'expression_multi': 'expression_multi_logits'}


class Baseline(nnx.Module):
  """Trunk -> global average (or max) pooling -> dropout -> linear head(s).

  Args:
    info: the dataset (``task``, ``num_labels``).
    backbone: ``config.model.backbone`` (trunk name and options).
    pooling: 'avg' or 'max' (Emotion-GCN eq. 1 uses max).
    dropout: dropout rate before the head.
    dtype: compute dtype; parameters float32.
    rngs: parameter initialisation.
  """

  def __init__(self, info: Any, *,
               backbone: Mapping[str, Any] = frozen_mapping({'name': 'small_cnn'}),
               pooling: str = 'avg', dropout: float = 0.0, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    if info.task not in _OUTPUT:
      raise ValueError(f'config.model.name=baseline has no head for task {info.task!r}; '
                       f'expected one of {tuple(_OUTPUT)}.')
    if pooling not in POOLINGS:
      raise ValueError(f'config.model.pooling={pooling!r}; expected one of {POOLINGS}.')
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f'config.model.dropout={dropout!r}; expected a rate in [0, 1).')
    self.task = info.task
    self.pooling = pooling
    self.dtype = dtype
    self.backbone = trunk_lib.build(backbone, dtype=dtype, rngs=rngs)
    c = self.backbone.num_features
    self.dropout = nnx.Dropout(dropout)
    self.head = nnx.Linear(c, int(info.num_labels), dtype=dtype, rngs=rngs)
    self.va_head = nnx.Linear(c, 2, dtype=dtype, rngs=rngs) if info.task == 'expression' else None

  def __call__(self, batch: dict[str, jax.Array], *, train: bool,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
    images = batch['image']
    chex.assert_rank(images, 4)
    fmap = self.backbone(images, train=train)
    x = fmap.max(axis=(1, 2)) if self.pooling == 'max' else fmap.mean(axis=(1, 2))
    x = self.dropout(x, deterministic=not train or self.dropout.rate == 0.0, rngs=rngs)
    out = {_OUTPUT[self.task]: self.head(x).astype(jnp.float32)}
    if self.va_head is not None:
      out['va'] = self.va_head(x).astype(jnp.float32)
    return out

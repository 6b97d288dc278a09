"""The relation-free reference model: a CNN trunk, global pooling and a linear head.

This is the "ResNet50" row of the AU papers' ablation tables (MACG Table 4, MGRR-Net Table 5) and
the single/multi-task baseline of Emotion-GCN Table I, with any trunk from ``faujax.backbones``.

Outputs (float32):
  AU task:         ``au_logits`` (B, N).
  expression task: ``expression_logits`` (B, 7) and ``va`` (B, 2) (valence, arousal).
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faujax import backbones


class Baseline(nn.Module):
  """Trunk -> global average (or max) pooling -> dropout -> linear head(s).

  Attributes:
    task: 'au' or 'expression'.
    num_labels: N AUs (AU task) or expression classes (expression task).
    backbone: trunk name (``faujax.backbones.ARCHS``).
    backbone_kwargs: extra trunk attributes.
    pooling: 'avg' or 'max'.
    dropout: dropout rate before the head.
    dtype: compute dtype.
    bn_axis_name: pmap axis for synced BatchNorm statistics.
  """

  task: str
  num_labels: int
  backbone: str = 'small_cnn'
  backbone_kwargs: Any = None
  pooling: str = 'avg'
  dropout: float = 0.0
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, batch: dict[str, jax.Array], *, train: bool) -> dict[str, jax.Array]:
    images = batch['image']
    chex.assert_rank(images, 4)
    trunk = backbones.build(self.backbone, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                            **dict(self.backbone_kwargs or {})).clone(parent=self, name='backbone')
    fmap = trunk(images, train=train)
    x = fmap.max(axis=(1, 2)) if self.pooling == 'max' else fmap.mean(axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    if self.task == 'au':
      return {'au_logits': nn.Dense(self.num_labels, dtype=self.dtype, name='head')(x)
                           .astype(jnp.float32)}
    logits = nn.Dense(self.num_labels, dtype=self.dtype, name='head')(x).astype(jnp.float32)
    va = nn.Dense(2, dtype=self.dtype, name='va_head')(x).astype(jnp.float32)
    return {'expression_logits': logits, 'va': va}

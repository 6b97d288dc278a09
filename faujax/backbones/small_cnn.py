"""A small, fast CNN trunk for tests, smoke runs and the default tiny configs.

Not from any paper: four stages of conv3x3(stride 2)-BN-ReLU with (32, 64, 96, 128) channels, so a
64-128 px input gives a 4x4 to 8x8 map with 128 channels, the same interface as the ResNet and
DenseNet trunks. ``(B, H, W, 3) -> (B, ceil(H/16), ceil(W/16), widths[-1])``.
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faujax.backbones.resnet import batch_norm, conv

Dtype = Any


class SmallCNN(nn.Module):
  """Four conv-BN-ReLU stages, each halving the resolution.

  Attributes:
    widths: channels per stage.
    extra_convs: stride-1 conv-BN-ReLU layers added to every stage (depth at the same cost of
      resolution).
    dtype: compute dtype; params float32.
    bn_axis_name: mapped axis name for cross-device BatchNorm statistics under ``jax.pmap``.
  """

  widths: Sequence[int] = (32, 64, 96, 128)
  extra_convs: int = 0  # stride-1 conv-BN-ReLU layers after each stage's stride-2 one
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @property
  def num_features(self) -> int:
    """Channels of the final map."""
    return self.widths[-1]

  @nn.compact
  def __call__(
      self, x: jax.Array, *, train: bool, return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the trunk; intermediates are ``{'stage1', ..., 'stageN'}``."""
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != 3:
      raise ValueError(f'SmallCNN input x: expected 3 channels (NHWC), got shape {x.shape}')
    x = x.astype(self.dtype)
    intermediates: dict[str, jax.Array] = {}
    for i, width in enumerate(self.widths):
      x = conv(width, 3, 2, 1, name=f'conv{i + 1}', dtype=self.dtype)(x)
      x = batch_norm(train, name=f'bn{i + 1}', dtype=self.dtype, axis_name=self.bn_axis_name)(x)
      x = nn.relu(x)
      for j in range(self.extra_convs):
        x = conv(width, 3, 1, 1, name=f'conv{i + 1}_{j + 1}', dtype=self.dtype)(x)
        x = batch_norm(train, name=f'bn{i + 1}_{j + 1}', dtype=self.dtype,
                       axis_name=self.bn_axis_name)(x)
        x = nn.relu(x)
      intermediates[f'stage{i + 1}'] = x
    if return_intermediates:
      return x, intermediates
    return x

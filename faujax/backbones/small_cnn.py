"""A small, fast CNN trunk for tests, smoke runs and the default tiny configs (Flax NNX).

Not from any paper: four stages of conv3x3(stride 2)-BN-ReLU with (32, 64, 96, 128) channels, so a
64-128 px input gives a 4x4 to 8x8 map with 128 channels, the same interface as the ResNet and
DenseNet trunks. ``(B, H, W, 3) -> (B, ceil(H/16), ceil(W/16), widths[-1])``.
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.backbones.resnet import batch_norm, conv

Dtype = Any


class SmallCNN(nnx.Module):
  """Conv-BN-ReLU stages, each halving the resolution.

  Variables: ``conv{i}`` / ``bn{i}`` (stride 2) and ``conv{i}_{j}`` / ``bn{i}_{j}`` (the extra
  stride-1 layers), i, j from 1.

  Args:
    widths: channels per stage.
    extra_convs: stride-1 conv-BN-ReLU layers added to every stage (depth at the same cost of
      resolution).
    dtype: compute dtype; params float32.
    rngs: random streams for the initialisation.

  Attributes:
    num_features: channels of the final map (``widths[-1]``).
  """

  def __init__(self, *, widths: Sequence[int] = (32, 64, 96, 128), extra_convs: int = 0,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
      raise ValueError(f'SmallCNN widths: expected a non-empty tuple of positive channel counts, '
                       f'got {widths}')
    if extra_convs < 0:
      raise ValueError(f'SmallCNN extra_convs: expected >= 0, got {extra_convs}')
    self.widths = widths
    self.extra_convs = int(extra_convs)
    self.dtype = dtype
    cin = 3
    for i, width in enumerate(widths):
      setattr(self, f'conv{i + 1}', conv(cin, width, 3, 2, 1, dtype=dtype, rngs=rngs))
      setattr(self, f'bn{i + 1}', batch_norm(width, dtype=dtype, rngs=rngs))
      for j in range(self.extra_convs):
        setattr(self, f'conv{i + 1}_{j + 1}', conv(width, width, 3, 1, 1, dtype=dtype, rngs=rngs))
        setattr(self, f'bn{i + 1}_{j + 1}', batch_norm(width, dtype=dtype, rngs=rngs))
      cin = width
    self.num_features = widths[-1]

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
    for i in range(len(self.widths)):
      x = getattr(self, f'conv{i + 1}')(x)
      x = jax.nn.relu(getattr(self, f'bn{i + 1}')(x, train=train))
      for j in range(self.extra_convs):
        x = getattr(self, f'conv{i + 1}_{j + 1}')(x)
        x = jax.nn.relu(getattr(self, f'bn{i + 1}_{j + 1}')(x, train=train))
      intermediates[f'stage{i + 1}'] = x
    if return_intermediates:
      return x, intermediates
    return x

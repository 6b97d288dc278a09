"""JAA-Net hierarchical multi-scale region-learning stem and landmark branch (Shao et al., 2018).

MGRR-Net sec. 3.1 extracts the global feature O_G (64 x 44 x 44 at 176 px) and the 49 landmarks S
with the stem of JAA-Net; its layer layout is given in reference-facts ("JAA-Net stem"):

* Two hierarchical multi-scale region (HMR) layers, 3 -> 32 then 32 -> 64 channels. Each: a 3x3 conv
  to C channels, then patch-wise branches on grids of 8x8, 4x4 and 2x2 patches; every patch has its
  own BN-ReLU-conv3x3 (independent weights and statistics, zero padding at the patch border),
  producing C/2, C/4 and C/4 channels. The three outputs are concatenated (C channels), added to the
  conv output, then BN, ReLU and 2x2 max-pool. 176 px -> 88x88x32 -> 44x44x64.
* ``hierarchical=True`` (default, JAA-Net's "hierarchical" region learning as in its public code):
  the 8x8 branch reads the conv output, the 4x4 branch reads the 8x8 output and the 2x2 branch
  the 4x4 output. ``hierarchical=False``: the three branches all read the conv output in parallel
  (the wording of reference-facts), same channel counts.
* Landmark branch on O_G: conv3x3-BN-ReLU 96, 96, max-pool 2, 128, 128, pool, 160, 160, pool
  (44 -> 5), flatten 160*5*5 -> Linear 512 -> ReLU -> Linear 2 * num_landmarks, (x, y) interleaved
  (loss: MGRR-Net eq. 10).

Convolutions and linears use PyTorch's default initialisation (MGRR-Net sec. 4.2: "the default
initializer of PyTorch"), i.e. U(+-1/sqrt(fan_in)) for weights and biases.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faujax.backbones.resnet import batch_norm

Dtype = Any

_torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def _torch_default_bias_init(fan_in: int):
  """torch's default bias init for Conv2d / Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_conv3x3(features: int, in_features: int, *, name: str | None, dtype: Dtype) -> nn.Conv:
  """torch ``Conv2d(in, out, 3, padding=1)`` with bias and torch's default init, NHWC."""
  return nn.Conv(
      features, (3, 3), padding=((1, 1), (1, 1)), use_bias=True, dtype=dtype,
      param_dtype=jnp.float32, kernel_init=_torch_default_kernel_init,
      bias_init=_torch_default_bias_init(9 * in_features), name=name)


def torch_linear(features: int, in_features: int, *, name: str, dtype: Dtype) -> nn.Dense:
  """torch ``Linear(in, out)`` with torch's default init."""
  return nn.Dense(
      features, dtype=dtype, param_dtype=jnp.float32, kernel_init=_torch_default_kernel_init,
      bias_init=_torch_default_bias_init(in_features), name=name)


class PatchBNReLUConv(nn.Module):
  """BN-ReLU-conv3x3 applied to one patch ``(B, ph, pw, Cin) -> (B, ph, pw, features)``."""

  features: int
  train: bool
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(batch_norm(self.train, name='bn', dtype=self.dtype, axis_name=self.bn_axis_name)(x))
    return torch_conv3x3(self.features, x.shape[-1], name='conv', dtype=self.dtype)(y)


def split_patches(x: jax.Array, grid: int) -> jax.Array:
  """``(B, H, W, C) -> (grid*grid, B, H/grid, W/grid, C)``, patches in row-major grid order."""
  b, h, w, c = x.shape
  if h % grid or w % grid:
    raise ValueError(
        f'JAA-Net region layer: feature map {h}x{w} is not divisible into a {grid}x{grid} grid of '
        'patches (the stem needs an input size divisible by 32, e.g. 176)')
  x = x.reshape(b, grid, h // grid, grid, w // grid, c)
  return x.transpose(1, 3, 0, 2, 4, 5).reshape(grid * grid, b, h // grid, w // grid, c)


def merge_patches(p: jax.Array, grid: int) -> jax.Array:
  """Inverse of :func:`split_patches`: ``(grid*grid, B, ph, pw, C) -> (B, grid*ph, grid*pw, C)``."""
  _, b, ph, pw, c = p.shape
  p = p.reshape(grid, grid, b, ph, pw, c).transpose(2, 0, 3, 1, 4, 5)
  return p.reshape(b, grid * ph, grid * pw, c)


class LocalConv(nn.Module):
  """Patch-wise independent BN-ReLU-conv3x3 on a ``grid x grid`` partition of the map.

  Parameters and batch statistics of the per-patch module are stacked on a leading axis of size
  ``grid * grid`` (row-major patch order). ``(B, H, W, Cin) -> (B, H, W, features)``.
  """

  grid: int
  features: int
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    patches = split_patches(x, self.grid)
    per_patch = nn.vmap(
        PatchBNReLUConv,
        in_axes=0,
        out_axes=0,
        variable_axes={'params': 0, 'batch_stats': 0},
        split_rngs={'params': True},
    )
    out = per_patch(self.features, train, self.dtype, self.bn_axis_name, name='patches')(patches)
    return merge_patches(out, self.grid)


class HMRLayer(nn.Module):
  """Hierarchical multi-scale region layer: conv, patch branches (C/2, C/4, C/4), add, BN-ReLU-pool.

  ``(B, H, W, Cin) -> (B, H/2, W/2, features)``.
  """

  features: int
  grids: Sequence[int] = (8, 4, 2)
  hierarchical: bool = True
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = self.features
    if c % 4:
      raise ValueError(f'HMRLayer features must be divisible by 4, got {c}')
    x = torch_conv3x3(c, x.shape[-1], name='conv', dtype=self.dtype)(x)
    widths = (c // 2, c // 4, c // 4)
    branch_outputs = []
    branch_in = x
    for k, (grid, width) in enumerate(zip(self.grids, widths)):
      out = LocalConv(grid, width, self.dtype, self.bn_axis_name, name=f'region{k + 1}')(
          branch_in, train=train)
      branch_outputs.append(out)
      if self.hierarchical:
        branch_in = out
    x = jnp.concatenate(branch_outputs, axis=-1) + x
    x = nn.relu(batch_norm(train, name='bn', dtype=self.dtype, axis_name=self.bn_axis_name)(x))
    return nn.max_pool(x, (2, 2), strides=(2, 2))


class LandmarkBranch(nn.Module):
  """JAA-Net face-alignment branch: ``(B, 44, 44, 64) -> (B, 2 * num_landmarks)``, (x, y) pairs."""

  num_landmarks: int = 49
  widths: Sequence[int] = (96, 128, 160)
  hidden: int = 512
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    k = 0
    for width in self.widths:
      for _ in range(2):
        k += 1
        x = torch_conv3x3(width, x.shape[-1], name=f'conv{k}', dtype=self.dtype)(x)
        x = batch_norm(train, name=f'bn{k}', dtype=self.dtype, axis_name=self.bn_axis_name)(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(torch_linear(self.hidden, x.shape[-1], name='fc1', dtype=self.dtype)(x))
    return torch_linear(2 * self.num_landmarks, self.hidden, name='fc2', dtype=self.dtype)(x)


class JAANetStem(nn.Module):
  """JAA-Net region-learning stem (two HMR layers) plus optional landmark branch.

  Attributes:
    widths: channels of the two HMR layers (32, 64).
    grids: patch grids of the three region branches (8, 4, 2).
    hierarchical: branch wiring, see the module docstring.
    with_landmarks: also build and run the landmark branch.
    num_landmarks: landmarks predicted (49).
    dtype: compute dtype; params float32.
    bn_axis_name: mapped axis name for cross-device BatchNorm statistics under ``jax.pmap``.
  """

  widths: Sequence[int] = (32, 64)
  grids: Sequence[int] = (8, 4, 2)
  hierarchical: bool = True
  with_landmarks: bool = True
  num_landmarks: int = 49
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @property
  def num_features(self) -> int:
    """Channels of O_G (64)."""
    return self.widths[-1]

  @nn.compact
  def __call__(
      self, x: jax.Array, *, train: bool, return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the stem.

    Args:
      x: aligned faces ``(B, H, W, 3)``, H and W divisible by 32 (176 in the papers).
      train: batch statistics (and running-average updates, needs ``mutable=['batch_stats']``).
      return_intermediates: also return ``{'hmr1', 'hmr2'}`` maps and, with ``with_landmarks``,
        ``'landmarks'``: ``(B, 2 * num_landmarks)`` predicted (x, y) interleaved.

    Returns:
      O_G ``(B, H/4, W/4, 64)`` (44x44x64 at 176 px), or ``(O_G, intermediates)``.
    """
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != 3:
      raise ValueError(f'JAANetStem input x: expected 3 channels (NHWC), got shape {x.shape}')
    x = x.astype(self.dtype)
    intermediates: dict[str, jax.Array] = {}
    for i, width in enumerate(self.widths):
      x = HMRLayer(width, self.grids, self.hierarchical, self.dtype, self.bn_axis_name,
                   name=f'hmr{i + 1}')(x, train=train)
      intermediates[f'hmr{i + 1}'] = x
    if self.with_landmarks:
      intermediates['landmarks'] = LandmarkBranch(
          self.num_landmarks, dtype=self.dtype, bn_axis_name=self.bn_axis_name, name='landmark')(
              x, train=train)
    if return_intermediates:
      return x, intermediates
    return x

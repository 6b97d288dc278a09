"""JAA-Net hierarchical multi-scale region-learning stem and landmark branch (Shao et al., 2018).

MGRR-Net sec. 3.1 extracts the global feature O_G (64 x 44 x 44 at 176 px) and the 49 landmarks S
with the stem of JAA-Net; its layer layout is summarised in docs/reference/model_details.md,
"JAA-Net stem":

* Two hierarchical multi-scale region (HMR) layers, 3 -> 32 then 32 -> 64 channels. Each: a 3x3 conv
  to C channels, then patch-wise branches on grids of 8x8, 4x4 and 2x2 patches; every patch has its
  own BN-ReLU-conv3x3 (independent weights and statistics, zero padding at the patch border),
  producing C/2, C/4 and C/4 channels. The three outputs are concatenated (C channels), added to the
  conv output, then BN, ReLU and 2x2 max-pool. 176 px -> 88x88x32 -> 44x44x64.
* ``hierarchical=True`` (default, JAA-Net's "hierarchical" region learning as in its public code):
  the 8x8 branch reads the conv output, the 4x4 branch reads the 8x8 output and the 2x2 branch
  the 4x4 output. ``hierarchical=False``: the three branches all read the conv output in parallel
  (the other reading described in docs/reference/model_details.md, "JAA-Net stem"), same channel
  counts.
* Landmark branch on O_G: conv3x3-BN-ReLU 96, 96, max-pool 2, 128, 128, pool, 160, 160, pool
  (44 -> 5), flatten 160*5*5 -> Linear 512 -> ReLU -> Linear 2 * num_landmarks, (x, y) interleaved
  (loss: MGRR-Net eq. 10). The width of the first Linear depends on the input side, hence the
  stem's ``input_size`` option (176).

Convolutions and linears use PyTorch's default initialisation (MGRR-Net sec. 4.2: "the default
initializer of PyTorch"), i.e. U(+-1/sqrt(fan_in)) for weights and biases.

The per-patch BN-ReLU-conv of a region branch holds its variables stacked on a leading patch axis
(row-major grid order): BatchNorm statistics and affine parameters ``(G, Cin)``, conv kernel
``(G, 3, 3, Cin, Cout)`` and bias ``(G, Cout)``, at ``region{k}/patches/{bn,conv}/...``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.backbones.resnet import batch_norm

Dtype = Any

_torch_default_kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')
# The same per patch: the leading patch axis is a batch axis, not part of the fan-in.
_torch_default_stacked_kernel_init = nnx.initializers.variance_scaling(
    1.0 / 3.0, 'fan_in', 'uniform', batch_axis=(0,))


def _torch_default_bias_init(fan_in: int):
  """torch's default bias init for Conv2d / Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_conv3x3(in_features: int, features: int, *, dtype: Dtype, rngs: nnx.Rngs) -> nnx.Conv:
  """torch ``Conv2d(in, out, 3, padding=1)`` with bias and torch's default init, NHWC."""
  return nnx.Conv(
      in_features, features, (3, 3), padding=((1, 1), (1, 1)), use_bias=True, dtype=dtype,
      param_dtype=jnp.float32, kernel_init=_torch_default_kernel_init,
      bias_init=_torch_default_bias_init(9 * in_features), rngs=rngs)


def torch_linear(in_features: int, features: int, *, dtype: Dtype, rngs: nnx.Rngs) -> nnx.Linear:
  """torch ``Linear(in, out)`` with torch's default init."""
  return nnx.Linear(
      in_features, features, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=_torch_default_kernel_init, bias_init=_torch_default_bias_init(in_features),
      rngs=rngs)


def _stacked_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Zero-padded 3x3 cross-correlation of every patch with its own HWIO kernel.

  ``x (G, B, ph, pw, Cin)``, ``kernel (G, 3, 3, Cin, Cout)`` -> ``(G, B, ph, pw, Cout)``. Written
  as the nine shifted views times the kernel taps (one batched matmul over the patches): the same
  function as a vmapped ``lax.conv_general_dilated``, which XLA's CPU backend lowers to a grouped
  convolution roughly 50x slower (MGRR-Net's stem: 73 s per training step at 64 px, batch 32).
  """
  g, _, ph, pw, cin = x.shape
  xp = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
  cols = jnp.stack([xp[:, :, dy:dy + ph, dx:dx + pw, :] for dy in range(3) for dx in range(3)],
                   axis=4)                                         # (G, B, ph, pw, 9, Cin)
  return jnp.einsum('gbhwkc,gkco->gbhwo', cols, kernel.reshape(g, 9, cin, kernel.shape[-1]))


class StackedConv3x3(nnx.Module):
  """``G`` independent torch-style 3x3 convs (with bias), one per patch.

  ``(G, B, ph, pw, in_features) -> (G, B, ph, pw, features)``; variables ``kernel``
  ``(G, 3, 3, in_features, features)`` and ``bias`` ``(G, features)``, float32.
  """

  def __init__(self, num_patches: int, in_features: int, features: int, *,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self.dtype = dtype
    self.kernel = nnx.Param(_torch_default_stacked_kernel_init(
        rngs.params(), (num_patches, 3, 3, in_features, features), jnp.float32))
    self.bias = nnx.Param(_torch_default_bias_init(9 * in_features)(
        rngs.params(), (num_patches, features), jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.kernel[...].astype(self.dtype)
    bias = self.bias[...].astype(self.dtype)
    y = _stacked_conv3x3(x.astype(self.dtype), kernel)
    return y + bias[:, None, None, None, :]


class PatchBNReLUConv(nnx.Module):
  """BN-ReLU-conv3x3 of every patch, independently: ``(G, B, ph, pw, Cin) -> (G, B, ph, pw, out)``.

  ``bn`` normalises each (patch, channel) over (B, ph, pw) (``feature_axes=(0, -1)``), ``conv`` is a
  :class:`StackedConv3x3`; zero padding at each patch border.
  """

  def __init__(self, num_patches: int, in_features: int, features: int, *,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self.bn = batch_norm((num_patches, in_features), feature_axes=(0, -1), dtype=dtype, rngs=rngs)
    self.conv = StackedConv3x3(num_patches, in_features, features, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return self.conv(jax.nn.relu(self.bn(x, train=train)))


def split_patches(x: jax.Array, grid: int) -> jax.Array:
  """``(B, H, W, C) -> (grid*grid, B, H/grid, W/grid, C)``, patches in row-major grid order."""
  b, h, w, c = x.shape
  if h % grid or w % grid:
    raise ValueError(
        f'JAA-Net region layer: feature map {h}x{w} is not divisible into a {grid}x{grid} grid of '
        'patches (the stem needs an input side divisible by 2**(len(widths) - 1) * lcm(grids), '
        'i.e. by 16 with the defaults, e.g. 176)')
  x = x.reshape(b, grid, h // grid, grid, w // grid, c)
  return x.transpose(1, 3, 0, 2, 4, 5).reshape(grid * grid, b, h // grid, w // grid, c)


def merge_patches(p: jax.Array, grid: int) -> jax.Array:
  """Inverse of :func:`split_patches`: ``(grid*grid, B, ph, pw, C) -> (B, grid*ph, grid*pw, C)``."""
  _, b, ph, pw, c = p.shape
  p = p.reshape(grid, grid, b, ph, pw, c).transpose(2, 0, 3, 1, 4, 5)
  return p.reshape(b, grid * ph, grid * pw, c)


class LocalConv(nnx.Module):
  """Patch-wise independent BN-ReLU-conv3x3 on a ``grid x grid`` partition of the map.

  Variables of the per-patch BN-ReLU-conv (``patches``, a :class:`PatchBNReLUConv`) are stacked on
  a leading axis of size ``grid * grid`` (row-major patch order).
  ``(B, H, W, in_features) -> (B, H, W, features)``.
  """

  def __init__(self, grid: int, in_features: int, features: int, *, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    if grid < 1:
      raise ValueError(f'LocalConv grid: expected a positive patch-grid side, got {grid}')
    self.grid = grid
    self.patches = PatchBNReLUConv(grid * grid, in_features, features, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    out = self.patches(split_patches(x, self.grid), train=train)
    return merge_patches(out, self.grid)


class HMRLayer(nnx.Module):
  """Hierarchical multi-scale region layer: conv, patch branches (C/2, C/4, C/4), add, BN-ReLU-pool.

  ``(B, H, W, in_features) -> (B, H/2, W/2, features)``; variables ``conv``, ``region1..3``
  (:class:`LocalConv`), ``bn``.
  """

  def __init__(self, in_features: int, features: int, *, grids: Sequence[int] = (8, 4, 2),
               hierarchical: bool = True, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    c = features
    if c % 4:
      raise ValueError(f'HMRLayer features must be divisible by 4, got {c}')
    grids = tuple(int(g) for g in grids)
    if len(grids) != 3:
      raise ValueError(f'HMRLayer grids: expected three patch grids (for the C/2, C/4 and C/4 '
                       f'branches), got {grids}')
    self.grids = grids
    self.hierarchical = bool(hierarchical)
    self.conv = torch_conv3x3(in_features, c, dtype=dtype, rngs=rngs)
    widths = (c // 2, c // 4, c // 4)
    branch_in = c
    for k, (grid, width) in enumerate(zip(grids, widths)):
      setattr(self, f'region{k + 1}',
              LocalConv(grid, branch_in, width, dtype=dtype, rngs=rngs))
      if self.hierarchical:
        branch_in = width
    self.bn = batch_norm(c, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = self.conv(x)
    branch_outputs = []
    branch_in = x
    for k in range(len(self.grids)):
      out = getattr(self, f'region{k + 1}')(branch_in, train=train)
      branch_outputs.append(out)
      if self.hierarchical:
        branch_in = out
    x = jnp.concatenate(branch_outputs, axis=-1) + x
    x = jax.nn.relu(self.bn(x, train=train))
    return nnx.max_pool(x, (2, 2), strides=(2, 2))


class LandmarkBranch(nnx.Module):
  """JAA-Net face-alignment branch: ``(B, s, s, in_features) -> (B, 2 * num_landmarks)``, (x, y).

  Variables ``conv1..6`` / ``bn1..6`` (two conv3x3-BN-ReLU per width, max-pool 2 after each pair),
  ``fc1`` (``widths[-1] * (s // 8)**2 -> hidden``), ``fc2`` (``hidden -> 2 * num_landmarks``).
  ``input_side`` is s (44 at 176 px).
  """

  def __init__(self, in_features: int, input_side: int, *, num_landmarks: int = 49,
               widths: Sequence[int] = (96, 128, 160), hidden: int = 512,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    widths = tuple(int(w) for w in widths)
    side = input_side
    k, cin = 0, in_features
    for width in widths:
      for _ in range(2):
        k += 1
        setattr(self, f'conv{k}', torch_conv3x3(cin, width, dtype=dtype, rngs=rngs))
        setattr(self, f'bn{k}', batch_norm(width, dtype=dtype, rngs=rngs))
        cin = width
      side //= 2
    if side < 1:
      raise ValueError(f'LandmarkBranch input_side: a {input_side}x{input_side} map is too small '
                       f'for {len(widths)} 2x2 max-pools')
    self.widths = widths
    self.input_side = input_side
    self.fc1 = torch_linear(cin * side * side, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = torch_linear(hidden, 2 * num_landmarks, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    k = 0
    for _ in self.widths:
      for _ in range(2):
        k += 1
        x = getattr(self, f'conv{k}')(x)
        x = jax.nn.relu(getattr(self, f'bn{k}')(x, train=train))
      x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(self.fc1(x))
    return self.fc2(x)


class JAANetStem(nnx.Module):
  """JAA-Net region-learning stem (two HMR layers) plus optional landmark branch.

  Variables: ``hmr1``, ``hmr2`` (:class:`HMRLayer`) and, with ``with_landmarks``, ``landmark``
  (:class:`LandmarkBranch`).

  Args:
    widths: channels of the HMR layers (32, 64); each divisible by 4.
    grids: patch grids of the three region branches (8, 4, 2).
    hierarchical: branch wiring, see the module docstring.
    with_landmarks: also build and run the landmark branch.
    num_landmarks: landmarks predicted (49).
    input_size: side of the square input (176 in the papers); sizes the landmark branch's first
      Linear, and must be divisible by ``2**(len(widths) - 1) * lcm(grids)`` (16 by default) so
      that every HMR layer's map splits into whole patches.
    dtype: compute dtype; params float32.
    rngs: random streams for the initialisation.

  Attributes:
    num_features: channels of O_G (``widths[-1]``, 64).
  """

  def __init__(self, *, widths: Sequence[int] = (32, 64), grids: Sequence[int] = (8, 4, 2),
               hierarchical: bool = True, with_landmarks: bool = True, num_landmarks: int = 49,
               input_size: int = 176, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    widths = tuple(int(w) for w in widths)
    grids = tuple(int(g) for g in grids)
    if not widths:
      raise ValueError('JAANetStem widths: expected at least one HMR layer width, got ()')
    if not grids or min(grids) < 1:
      raise ValueError(f'JAANetStem grids: expected positive patch-grid sides, got {grids}')
    multiple = 2**(len(widths) - 1) * math.lcm(*grids)
    if not isinstance(input_size, int) or input_size < 1 or input_size % multiple:
      raise ValueError(
          f'JAANetStem input_size: expected a positive multiple of {multiple} (every HMR layer '
          f'splits its map into {"/".join(map(str, grids))} patch grids, at half the resolution '
          f'after each layer), got {input_size!r}')
    self.widths = widths
    self.with_landmarks = bool(with_landmarks)
    self.input_size = input_size
    self.dtype = dtype
    cin = 3
    for i, width in enumerate(widths):
      setattr(self, f'hmr{i + 1}', HMRLayer(cin, width, grids=grids, hierarchical=hierarchical,
                                            dtype=dtype, rngs=rngs))
      cin = width
    if self.with_landmarks:
      self.landmark = LandmarkBranch(cin, input_size // 2**len(widths),
                                     num_landmarks=num_landmarks, dtype=dtype, rngs=rngs)
    self.num_features = widths[-1]

  def __call__(
      self, x: jax.Array, *, train: bool, return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the stem.

    Args:
      x: aligned faces ``(B, H, W, 3)``; with the landmark branch H = W = ``input_size``
        (176 in the papers), without it any side divisible like ``input_size``.
      train: batch statistics (and running-average updates of the BatchNorm statistics).
      return_intermediates: also return ``{'hmr1', 'hmr2'}`` maps and, with ``with_landmarks``,
        ``'landmarks'``: ``(B, 2 * num_landmarks)`` predicted (x, y) interleaved.

    Returns:
      O_G ``(B, H/4, W/4, 64)`` (44x44x64 at 176 px), or ``(O_G, intermediates)``.
    """
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != 3:
      raise ValueError(f'JAANetStem input x: expected 3 channels (NHWC), got shape {x.shape}')
    if self.with_landmarks and x.shape[1:3] != (self.input_size, self.input_size):
      raise ValueError(
          f'JAANetStem input x: the landmark branch is sized for {self.input_size}x'
          f'{self.input_size} inputs (input_size={self.input_size}), got shape {x.shape}')
    x = x.astype(self.dtype)
    intermediates: dict[str, jax.Array] = {}
    for i in range(len(self.widths)):
      x = getattr(self, f'hmr{i + 1}')(x, train=train)
      intermediates[f'hmr{i + 1}'] = x
    if self.with_landmarks:
      intermediates['landmarks'] = self.landmark(x, train=train)
    if return_intermediates:
      return x, intermediates
    return x

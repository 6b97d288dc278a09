"""MAFG: multi-scale axial attention and per-AU node features (MACG eq. 1-4).

``MultiScaleAxialAttention`` (MACG eq. 1-3; reference-facts "MAFG"), on a map ``x`` (B, H, W, C):

  d    = dw5x5(x)                                  (depthwise 5x5, padding 2)
  M_k  = dw_x^k(dw_y^k(d))   for k in (7, 11, 21)  (eq. 1-2: depthwise k x 1 along y, then 1 x k
                                                    along x, padding k // 2, each with bias)
  attn = conv1x1(d + sum_k M_k)                    (eq. 3, full 1x1 conv mixing channels)
  out  = attn * x                                  (eq. 4's Attn * X; no norm, no activation)

``axial_order='yx'`` (default) follows the paper's text (vertical first); ``'xy'`` runs the 1 x k
convolution first, as SegNext / the public code's ``dw k x 1(dw 1 x k(.))``. Zero-padded
separable convolutions commute, so the two orders differ only through the convolution biases.

``MAFG`` (eq. 4): ``V = Cat_i(mean_tokens(phi_i(Attn * X)))``: the attended tokens go through one
LinearBlock per AU (``PerNodeLinearBlock``) and are averaged over the H * W tokens, giving the AU
nodes (B, N, C_out). ``use_attention=False`` skips eq. 1-3 (the "ResNet50" / "Baseline" ablation
rows of MACG Tables 4-5: the per-AU blocks read the map directly).
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faujax.models.parts.linear_block import PerNodeLinearBlock

AXIAL_ORDERS: tuple[str, ...] = ('yx', 'xy')

# MCANet / SegNext convention: conv weights from PyTorch's default Conv2d init (kaiming-uniform with
# a = sqrt(5), i.e. U(+-1/sqrt(fan_in))) as no special init is stated for MAFG.
_torch_conv_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def _torch_conv_bias_init(fan_in: int) -> Any:
  limit = 1.0 / fan_in ** 0.5

  def init(rng: chex.PRNGKey, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(rng, shape, dtype, -limit, limit)
  return init


def depthwise_conv(features: int, kernel: tuple[int, int], *, name: str, dtype: Any) -> nn.Conv:
  """A depthwise (groups = C) 'same' conv with bias, torch-style symmetric padding k // 2."""
  kh, kw = kernel
  return nn.Conv(features, (kh, kw), padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                 feature_group_count=features, use_bias=True, dtype=dtype,
                 param_dtype=jnp.float32, kernel_init=_torch_conv_init,
                 bias_init=_torch_conv_bias_init(kh * kw), name=name)


class MultiScaleAxialAttention(nn.Module):
  """MACG eq. 1-3 attention, returning ``attn * x``: ``(B, H, W, C) -> (B, H, W, C)``.

  Attributes:
    kernel_sizes: the axial scales (7, 11, 21 in the paper, after MCANet).
    square_kernel: the initial depthwise square kernel (5).
    axial_order: 'yx' (paper, default) or 'xy' (public code / SegNext).
    dtype: compute dtype; parameters float32.
  """

  kernel_sizes: Sequence[int] = (7, 11, 21)
  square_kernel: int = 5
  axial_order: str = 'yx'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if self.axial_order not in AXIAL_ORDERS:
      raise ValueError(f'MultiScaleAxialAttention.axial_order={self.axial_order!r}; expected one '
                       f'of {AXIAL_ORDERS}.')
    for k in (self.square_kernel, *self.kernel_sizes):
      if k <= 0 or k % 2 == 0:
        raise ValueError(f'MultiScaleAxialAttention kernel sizes must be positive and odd; got '
                         f'square_kernel={self.square_kernel}, kernel_sizes={self.kernel_sizes}.')
    c = x.shape[-1]
    x = x.astype(self.dtype)
    d = depthwise_conv(c, (self.square_kernel,) * 2, name='conv0', dtype=self.dtype)(x)
    total = d
    for i, k in enumerate(self.kernel_sizes):
      conv_y = depthwise_conv(c, (k, 1), name=f'conv{i + 1}_y', dtype=self.dtype)
      conv_x = depthwise_conv(c, (1, k), name=f'conv{i + 1}_x', dtype=self.dtype)
      m = conv_x(conv_y(d)) if self.axial_order == 'yx' else conv_y(conv_x(d))
      total = total + m
    attn = nn.Conv(c, (1, 1), use_bias=True, dtype=self.dtype, param_dtype=jnp.float32,
                   kernel_init=_torch_conv_init, bias_init=_torch_conv_bias_init(c),
                   name='mix')(total)
    return attn * x


class MAFG(nn.Module):
  """Multi-scale attention feature generator: map -> AU nodes (MACG eq. 1-4).

  Attributes:
    num_nodes: N AUs.
    features: node channels (512 in MACG).
    use_attention: apply eq. 1-3 before the per-AU blocks (False: ablation rows without MAFG).
    kernel_sizes, square_kernel, axial_order: see ``MultiScaleAxialAttention``.
    dtype: compute dtype; bn_axis_name: pmap axis of the BatchNorm statistics.
  """

  num_nodes: int
  features: int = 512
  use_attention: bool = True
  kernel_sizes: Sequence[int] = (7, 11, 21)
  square_kernel: int = 5
  axial_order: str = 'yx'
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """``x`` (B, H, W, C) -> AU nodes (B, N, features)."""
    chex.assert_rank(x, 4)
    b, h, w, c = x.shape
    if self.use_attention:
      x = MultiScaleAxialAttention(self.kernel_sizes, self.square_kernel, self.axial_order,
                                   dtype=self.dtype, name='attention')(x)
    tokens = x.reshape(b, h * w, c)
    per_au = PerNodeLinearBlock(self.num_nodes, self.features, shared_input=True,
                                dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                                name='au_blocks')(tokens, train=train)   # (B, HW, N, F)
    nodes = per_au.mean(axis=1)
    chex.assert_shape(nodes, (b, self.num_nodes, self.features))
    return nodes

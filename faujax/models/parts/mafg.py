"""MAFG: multi-scale axial attention and per-AU node features (MACG eq. 1-4).

``MultiScaleAxialAttention`` (MACG eq. 1-3; docs/reference/model_details.md, "MAFG"), on a map
``x`` (B, H, W, C):

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

Flax NNX; variable paths (unchanged, so checkpoints keep loading):
``attention/{conv0, conv1_y, conv1_x, ..., mix}`` (``kernel`` (kh, kw, 1, C) depthwise,
``mix/kernel`` (1, 1, C, C), each with ``bias``) and ``au_blocks`` (a ``PerNodeLinearBlock``).
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.models.parts.linear_block import PerNodeLinearBlock

AXIAL_ORDERS: tuple[str, ...] = ('yx', 'xy')

# MCANet / SegNext convention: conv weights from PyTorch's default Conv2d init (kaiming-uniform with
# a = sqrt(5), i.e. U(+-1/sqrt(fan_in))) as no special init is stated for MAFG.
_torch_conv_init = nnx.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def _torch_conv_bias_init(fan_in: int) -> Any:
  limit = 1.0 / fan_in ** 0.5

  def init(rng: chex.PRNGKey, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(rng, shape, dtype, -limit, limit)
  return init


def depthwise_conv(features: int, kernel: tuple[int, int], *, dtype: Any,
                   rngs: nnx.Rngs) -> nnx.Conv:
  """A depthwise (groups = C) 'same' conv with bias, torch-style symmetric padding k // 2."""
  kh, kw = kernel
  return nnx.Conv(features, features, (kh, kw),
                  padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                  feature_group_count=features, use_bias=True, dtype=dtype,
                  param_dtype=jnp.float32, kernel_init=_torch_conv_init,
                  bias_init=_torch_conv_bias_init(kh * kw), rngs=rngs)


def _check_positive(value: int, name: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f'{name} must be a positive int; got {value!r}.')


class MultiScaleAxialAttention(nnx.Module):
  """MACG eq. 1-3 attention, returning ``attn * x``: ``(B, H, W, C) -> (B, H, W, C)``.

  Args:
    in_features: C, the channels of the map (every conv keeps C channels).
    kernel_sizes: the axial scales (7, 11, 21 in the paper, after MCANet).
    square_kernel: the initial depthwise square kernel (5).
    axial_order: 'yx' (paper, default) or 'xy' (public code / SegNext).
    dtype: compute dtype; parameters float32.
    rngs: parameter initialisation.

  Children: ``conv0``, ``conv{i}_y`` / ``conv{i}_x`` for i = 1 .. len(kernel_sizes), ``mix``.
  """

  def __init__(self, in_features: int, *, kernel_sizes: Sequence[int] = (7, 11, 21),
               square_kernel: int = 5, axial_order: str = 'yx', dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    _check_positive(in_features, 'MultiScaleAxialAttention in_features')
    if axial_order not in AXIAL_ORDERS:
      raise ValueError(f'MultiScaleAxialAttention axial_order={axial_order!r}; expected one '
                       f'of {AXIAL_ORDERS}.')
    kernel_sizes = tuple(int(k) for k in kernel_sizes)
    for k in (square_kernel, *kernel_sizes):
      if k <= 0 or k % 2 == 0:
        raise ValueError(f'MultiScaleAxialAttention kernel sizes must be positive and odd; got '
                         f'square_kernel={square_kernel}, kernel_sizes={kernel_sizes}.')
    c = in_features
    self.in_features = c
    self.kernel_sizes = kernel_sizes
    self.axial_order = axial_order
    self.dtype = dtype
    self.conv0 = depthwise_conv(c, (square_kernel,) * 2, dtype=dtype, rngs=rngs)
    for i, k in enumerate(kernel_sizes):
      setattr(self, f'conv{i + 1}_y', depthwise_conv(c, (k, 1), dtype=dtype, rngs=rngs))
      setattr(self, f'conv{i + 1}_x', depthwise_conv(c, (1, k), dtype=dtype, rngs=rngs))
    self.mix = nnx.Conv(c, c, (1, 1), use_bias=True, dtype=dtype, param_dtype=jnp.float32,
                        kernel_init=_torch_conv_init, bias_init=_torch_conv_bias_init(c),
                        rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != self.in_features:
      raise ValueError(f'MultiScaleAxialAttention input x must have {self.in_features} channels; '
                       f'got shape {x.shape}.')
    x = x.astype(self.dtype)
    d = self.conv0(x)
    total = d
    for i in range(len(self.kernel_sizes)):
      conv_y = getattr(self, f'conv{i + 1}_y')
      conv_x = getattr(self, f'conv{i + 1}_x')
      m = conv_x(conv_y(d)) if self.axial_order == 'yx' else conv_y(conv_x(d))
      total = total + m
    attn = self.mix(total)
    return attn * x


class MAFG(nnx.Module):
  """Multi-scale attention feature generator: map -> AU nodes (MACG eq. 1-4).

  Args:
    num_nodes: N AUs.
    in_features: C_in, channels of the input map (MACG: the node width C of the global block).
    features: node channels (512 in MACG).
    use_attention: apply eq. 1-3 before the per-AU blocks (False: ablation rows without MAFG;
      then there is no ``attention`` child).
    kernel_sizes, square_kernel, axial_order: see ``MultiScaleAxialAttention``.
    dtype: compute dtype; parameters float32.
    rngs: parameter initialisation.

  Children: ``attention`` (``MultiScaleAxialAttention``, or None) and ``au_blocks``
  (``PerNodeLinearBlock(num_nodes, in_features, features)``).
  """

  def __init__(self, num_nodes: int, in_features: int, *, features: int = 512,
               use_attention: bool = True, kernel_sizes: Sequence[int] = (7, 11, 21),
               square_kernel: int = 5, axial_order: str = 'yx', dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    self.num_nodes = num_nodes
    self.features = features
    self.attention = (MultiScaleAxialAttention(in_features, kernel_sizes=kernel_sizes,
                                               square_kernel=square_kernel,
                                               axial_order=axial_order, dtype=dtype, rngs=rngs)
                      if use_attention else None)
    self.au_blocks = PerNodeLinearBlock(num_nodes, in_features, features, shared_input=True,
                                        dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """``x`` (B, H, W, C_in) -> AU nodes (B, N, features)."""
    chex.assert_rank(x, 4)
    b, h, w, c = x.shape
    if self.attention is not None:
      x = self.attention(x)
    tokens = x.reshape(b, h * w, c)
    per_au = self.au_blocks(tokens, train=train)   # (B, HW, N, F)
    nodes = per_au.mean(axis=1)
    chex.assert_shape(nodes, (b, self.num_nodes, self.features))
    return nodes

"""MGRR-Net attention-aware global features C_G and P_G (sec. 3.2.2, eq. 3-4).

Both levels run the multi-head dot-product graph attention of ``faujax.graph.dot_attention``
(MH-GAT, eq. 3-4: L heads of width d = D / L, ReLU after U_c) over a fully connected graph
(Omega_i = every node), on a 3 x 3 stride-2 convolution of O_G (sec. 4.2: "a 3 x 3 Conv2D
operation with a stride two and padding one ... to reduce the parameters"):

* channel level: the nodes are the c channels of the reduced map, node i's feature is its
  s' x s' plane C_i (length s'^2); U_c maps the D attended features to s x s values, i.e. C_G is
  "reshaped to the same dimension with O_G" (B, s, s, c).
* pixel level: the nodes are the s' x s' pixels of the reduced map, P_i in R^c; the attended map
  (B, s', s', c) goes through a deconvolution (2 x 2, stride 2, cropped to s) to P_G (B, s, s, c).

The paper names the stride-2 convolution before the channel level and the deconvolution after the
pixel level; faujax gives each level its own reduction (both then work at s' = ceil(s / 2)), see
docs/reference/model_details.md, "MGRR-Net".

Initialisation (``init``, ``config.model.init`` of MGRR-Net, ``INITS``): 'torch' (the paper, sec.
4.2) draws U_q, U_k, U_v, U_c and the deconvolution as torch's ``nn.Linear`` /
``nn.ConvTranspose2d`` defaults (``faujax.layers.torch_init``; the deconvolution's fan-in is
torch's ``out * 2 * 2``); 'glorot' is faujax's earlier draw: Glorot-uniform U matrices and Flax's
default deconvolution (LeCun-normal kernel, zero bias). The 3 x 3 reductions are torch's
default in both.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.backbones.jaanet import torch_conv3x3
from faujax.graph.dot_attention import DotProductGraphAttention
from faujax.layers import torch_init

# ``init`` values: 'torch' (PyTorch's defaults, MGRR-Net sec. 4.2) or 'glorot' (see above).
INITS: tuple[str, ...] = ('torch', 'glorot')
DECONV_KERNEL = (2, 2)


def check_init(init: str) -> None:
  """Raises ValueError naming ``config.model.init`` unless ``init`` is one of ``INITS``."""
  if init not in INITS:
    raise ValueError(f'config.model.init={init!r}; expected one of {INITS}.')


def reduced_side(side: int) -> int:
  """Side of a 3 x 3 stride-2 padding-1 convolution's output: ceil(side / 2)."""
  return (side + 1) // 2


class _Reduce(nnx.Module):
  """torch ``Conv2d(c, c, 3, stride=2, padding=1)``: (B, s, s, c) -> (B, s', s', c)."""

  def __init__(self, features: int, *, dtype: Any, rngs: nnx.Rngs):
    self.conv = torch_conv3x3(features, features, dtype=dtype, rngs=rngs)
    self.conv.strides = (2, 2)  # torch's stride-2 padding-1 conv, with torch's default init

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.conv(x)


class ChannelAttention(nnx.Module):
  """C_G: MH-GAT over the channels of the reduced O_G. (B, s, s, c) -> (B, s, s, c).

  Variables: ``reduce/conv`` (3 x 3, c -> c), ``attention`` (``DotProductGraphAttention``
  s'^2 -> s^2, hidden ``hidden_dim`` D, ``num_heads`` L). ``init``: one of ``INITS``.
  """

  def __init__(self, features: int, side: int, *, hidden_dim: int = 1024, num_heads: int = 8,
               init: str = 'torch', dtype: Any = jnp.float32, rngs: nnx.Rngs):
    check_init(init)
    self.side = side
    self.reduce = _Reduce(features, dtype=dtype, rngs=rngs)
    r = reduced_side(side)
    self.attention = DotProductGraphAttention(r * r, side * side, hidden_dim=hidden_dim,
                                              num_heads=num_heads, dtype=dtype, init=init,
                                              rngs=rngs)

  def __call__(self, o_g: jax.Array, *, train: bool) -> jax.Array:
    b, s, _, c = o_g.shape
    chex.assert_shape(o_g, (None, self.side, self.side, None))
    x = self.reduce(o_g)                                        # (B, s', s', c)
    nodes = x.reshape(b, -1, c).transpose(0, 2, 1)              # (B, c, s'^2): C_i
    out = self.attention(nodes, train=train)                    # (B, c, s^2): C_bar_i
    return out.transpose(0, 2, 1).reshape(b, s, s, c)


class PixelAttention(nnx.Module):
  """P_G: MH-GAT over the pixels of the reduced O_G, then a deconvolution. (B, s, s, c) -> same.

  Variables: ``reduce/conv`` (3 x 3, c -> c), ``attention`` (``DotProductGraphAttention``
  c -> c, hidden D, L heads), ``deconv`` (``nnx.ConvTranspose`` 2 x 2, stride 2, c -> c).
  ``init``: one of ``INITS``.
  """

  def __init__(self, features: int, side: int, *, hidden_dim: int = 1024, num_heads: int = 8,
               init: str = 'torch', dtype: Any = jnp.float32, rngs: nnx.Rngs):
    check_init(init)
    self.side = side
    self.reduce = _Reduce(features, dtype=dtype, rngs=rngs)
    self.attention = DotProductGraphAttention(features, features, hidden_dim=hidden_dim,
                                              num_heads=num_heads, dtype=dtype, init=init,
                                              rngs=rngs)
    inits = {}
    if init == 'torch':  # nn.ConvTranspose2d(c, c, 2, stride=2)'s default: fan-in c * 2 * 2
      fan = torch_init.fan_in(DECONV_KERNEL + (features, features), 'conv_transpose')
      inits = {'kernel_init': torch_init.kernel_init('conv_transpose'),
               'bias_init': torch_init.bias_init(fan)}
    self.deconv = nnx.ConvTranspose(features, features, DECONV_KERNEL, strides=(2, 2),
                                    padding='VALID', dtype=dtype, param_dtype=jnp.float32,
                                    rngs=rngs, **inits)

  def __call__(self, o_g: jax.Array, *, train: bool) -> jax.Array:
    b, s, _, c = o_g.shape
    chex.assert_shape(o_g, (None, self.side, self.side, None))
    x = self.reduce(o_g)                                        # (B, s', s', c)
    r = x.shape[1]
    out = self.attention(x.reshape(b, r * r, c), train=train)   # (B, s'^2, c): P_bar_i
    up = self.deconv(out.reshape(b, r, r, c))                   # (B, 2 s', 2 s', c)
    return up[:, :s, :s, :]

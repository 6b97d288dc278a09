"""CCFG: channel-topology convolution and per-AU joint features (MACG eq. 10-12).

``ChannelTopologyConv`` (MACG eq. 10-11; CTR-GCN's channel-wise topology refinement, reference-facts
"CCFG"), on a map ``x`` (B, H, W, C) read as H "frames" t of W "joints" v:

  x1 = mean_H(conv1x1_{C->R}(x))      (B, W, R)      alpha_rel1
  x2 = mean_H(conv1x1_{C->R}(x))      (B, W, R)      alpha_rel2
  x3 = conv1x1_{C->C_out}(x)          (B, H, W, C')  beta_local
  rel = lambda * conv1x1_{R->C'}(tanh(x1[:, u] - x2[:, v]))   (B, W_u, W_v, C')   eq. 10
  E[b, t, u, c] = sum_v rel[b, u, v, c] * x3[b, t, v, c]      (B, H, W, C')       eq. 11

(in the PyTorch NCHW layout: out[n,c,t,u] = sum_v rel[n,c,u,v] x3[n,c,t,v]). Convolutions are
kaiming-normal (fan out) with zero bias; ``lambda`` is one learnable scalar.

``CCFG`` (eq. 12): ``v_i^CCFG = phi_i(avgpool(E))``: average pooling over H x W and one LinearBlock
per AU (the paper's non-shared phi_i, default). ``shared_block=True`` reproduces the public code,
whose single LinearBlock is shared by all AUs, so every AU row of its output is identical.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faujax.models.parts.linear_block import LinearBlock, PerNodeLinearBlock

# CTR-GCN: conv_init = kaiming_normal_(mode='fan_out'), bias 0.
_kaiming_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _conv1x1(features: int, *, name: str, dtype: Any) -> nn.Dense:
  """A 1x1 convolution on the channel axis (a Dense on (..., C)), kaiming fan-out, zero bias."""
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=_kaiming_fan_out,
                  bias_init=nn.initializers.zeros, name=name)


class ChannelTopologyConv(nn.Module):
  """MACG eq. 10-11: ``(B, H, W, C) -> E (B, H, W, features)``.

  Attributes:
    features: output channels C_out (512 in MACG).
    rel_features: R, channels of the relation convs (64 in MACG).
    lambda_init: initial value of the learnable scale lambda (eq. 11). Not stated by the paper;
      1.0 lets the branch contribute from the first step (CTR-GCN's own wrapper starts at 0).
    dtype: compute dtype; parameters float32.
  """

  features: int = 512
  rel_features: int = 64
  lambda_init: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    x = x.astype(self.dtype)
    x1 = _conv1x1(self.rel_features, name='rel1', dtype=self.dtype)(x).mean(axis=1)  # (B, W, R)
    x2 = _conv1x1(self.rel_features, name='rel2', dtype=self.dtype)(x).mean(axis=1)  # (B, W, R)
    x3 = _conv1x1(self.features, name='local', dtype=self.dtype)(x)               # (B, H, W, C')
    rel = jnp.tanh(x1[:, :, None, :] - x2[:, None, :, :])                          # (B, U, V, R)
    rel = _conv1x1(self.features, name='fuse', dtype=self.dtype)(rel)              # (B, U, V, C')
    lam = self.param('lambda', nn.initializers.constant(self.lambda_init), (), jnp.float32)
    rel = rel * lam.astype(self.dtype)
    return jnp.einsum('buvc,btvc->btuc', rel, x3)


class CCFG(nn.Module):
  """Channel-topology convolution feature generator: map -> per-AU joint features (eq. 10-12).

  Attributes:
    num_nodes: N AUs.
    features: channels of E and of every v_i^CCFG (512).
    rel_features: R (64).
    lambda_init: see ``ChannelTopologyConv``.
    shared_block: False (paper eq. 12): one phi_i per AU; True (public code): one LinearBlock
      shared by all AUs, broadcast to N identical rows.
    dtype: compute dtype; bn_axis_name: pmap axis of the BatchNorm statistics.
  """

  num_nodes: int
  features: int = 512
  rel_features: int = 64
  lambda_init: float = 1.0
  shared_block: bool = False
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """``x`` (B, H, W, C) -> v^CCFG (B, N, features)."""
    chex.assert_rank(x, 4)
    b = x.shape[0]
    e = ChannelTopologyConv(self.features, self.rel_features, self.lambda_init, dtype=self.dtype,
                            name='topology')(x)
    pooled = e.mean(axis=(1, 2))                                                       # (B, C')
    if self.shared_block:
      v = LinearBlock(self.features, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                      name='shared_block')(pooled, train=train)
      v = jnp.broadcast_to(v[:, None, :], (b, self.num_nodes, self.features))
    else:
      v = PerNodeLinearBlock(self.num_nodes, self.features, shared_input=True, dtype=self.dtype,
                             bn_axis_name=self.bn_axis_name, name='au_blocks')(pooled, train=train)
    chex.assert_shape(v, (b, self.num_nodes, self.features))
    return v

"""CCFG: channel-topology convolution and per-AU joint features (MACG eq. 10-12).

``ChannelTopologyConv`` (MACG eq. 10-11; CTR-GCN's channel-wise topology refinement,
docs/reference/model_details.md, "CCFG"), on a map ``x`` (B, H, W, C) read as H "frames" t of W
"joints" v:

  x1 = mean_H(conv1x1_{C->R}(x))      (B, W, R)      alpha_rel1
  x2 = mean_H(conv1x1_{C->R}(x))      (B, W, R)      alpha_rel2
  x3 = conv1x1_{C->C_out}(x)          (B, H, W, C')  beta_local
  rel = lambda * conv1x1_{R->C'}(tanh(x1[:, u] - x2[:, v]))   (B, W_u, W_v, C')   eq. 10
  E[b, t, u, c] = sum_v rel[b, u, v, c] * x3[b, t, v, c]      (B, H, W, C')       eq. 11

(in the PyTorch NCHW layout: out[n,c,t,u] = sum_v rel[n,c,u,v] x3[n,c,t,v]). Convolutions are
kaiming-normal (fan out) with zero bias; ``lambda`` is one learnable scalar (the paper's, default).
``trainable_lambda=False`` is a parity switch for the public code's behaviour: lambda stays fixed at
``lambda_init`` (docs/reference/model_details.md, "CCFG"); it is then a Python constant of the
module, not an ``nnx.Param``, so it has no gradient, no optimiser state and no checkpoint entry.

``CCFG`` (eq. 12): ``v_i^CCFG = phi_i(avgpool(E))``: average pooling over H x W and one LinearBlock
per AU (the paper's non-shared phi_i, default). ``shared_block=True`` reproduces the public code,
whose single LinearBlock is shared by all AUs, so every AU row of its output is identical. The
public code applies that block once per AU in each forward (lkq52110/au-recognition ``model.py``
``CCFG.forward``, lines 278-281), so in training its BatchNorm's running statistics move N times
per step, each time by the same batch statistics: m <- momentum^N m + (1 - momentum^N) mu.
``per_au_statistics=True`` (with ``shared_block``) reproduces that by applying the block N times
in training, one after the other; its output and gradients are those of one application (the
batch statistics normalise every application alike). False (default) moves them once.

Flax NNX; variable paths (unchanged, so checkpoints keep loading):
``topology/{rel1, rel2, local, fuse}/{kernel, bias}``, ``topology/lambda`` (only if trainable),
``au_blocks`` (``PerNodeLinearBlock``) or ``shared_block`` (``LinearBlock``).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.models.parts.linear_block import LinearBlock, PerNodeLinearBlock

# CTR-GCN: conv_init = kaiming_normal_(mode='fan_out'), bias 0.
_kaiming_fan_out = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _conv1x1(in_features: int, features: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
  """A 1x1 convolution on the channel axis (a Linear on (..., C)), kaiming fan-out, zero bias."""
  return nnx.Linear(in_features, features, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=_kaiming_fan_out, bias_init=nnx.initializers.zeros, rngs=rngs)


class ChannelTopologyConv(nnx.Module):
  """MACG eq. 10-11: ``(B, H, W, in_features) -> E (B, H, W, features)``.

  Args:
    in_features: C, channels of the input map.
    features: output channels C_out (512 in MACG).
    rel_features: R, channels of the relation convs (64 in MACG).
    lambda_init: initial value of the scale lambda (eq. 11). Not stated by the paper; 1.0 lets the
      branch contribute from the first step (CTR-GCN's own wrapper starts at 0).
    trainable_lambda: True (paper): lambda is an ``nnx.Param`` named ``lambda``; False (the public
      code's behaviour): lambda is fixed at ``lambda_init``, a constant, not trained.
    dtype: compute dtype; parameters float32.
    rngs: parameter initialisation.

  Children: ``rel1``, ``rel2`` (C -> R), ``local`` (C -> C_out), ``fuse`` (R -> C_out).
  """

  def __init__(self, in_features: int, *, features: int = 512, rel_features: int = 64,
               lambda_init: float = 1.0, trainable_lambda: bool = True,
               dtype: Any = jnp.float32, rngs: nnx.Rngs):
    for value, name in ((in_features, 'in_features'), (features, 'features'),
                        (rel_features, 'rel_features')):
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f'ChannelTopologyConv {name} must be a positive int; got {value!r}.')
    self.in_features = in_features
    self.dtype = dtype
    self.lambda_init = float(lambda_init)
    self.trainable_lambda = bool(trainable_lambda)
    self.rel1 = _conv1x1(in_features, rel_features, dtype=dtype, rngs=rngs)
    self.rel2 = _conv1x1(in_features, rel_features, dtype=dtype, rngs=rngs)
    self.local = _conv1x1(in_features, features, dtype=dtype, rngs=rngs)
    self.fuse = _conv1x1(rel_features, features, dtype=dtype, rngs=rngs)
    if self.trainable_lambda:
      # 'lambda' is a Python keyword, hence setattr / getattr; the variable path is 'lambda'.
      setattr(self, 'lambda', nnx.Param(jnp.full((), self.lambda_init, jnp.float32)))

  def scale(self) -> jax.Array:
    """The current lambda (float32 scalar): the parameter, or the constant ``lambda_init``."""
    if self.trainable_lambda:
      return getattr(self, 'lambda')[...]
    return jnp.asarray(self.lambda_init, jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != self.in_features:
      raise ValueError(f'ChannelTopologyConv input x must have {self.in_features} channels; got '
                       f'shape {x.shape}.')
    x = x.astype(self.dtype)
    x1 = self.rel1(x).mean(axis=1)                                   # (B, W, R)
    x2 = self.rel2(x).mean(axis=1)                                   # (B, W, R)
    x3 = self.local(x)                                               # (B, H, W, C')
    rel = jnp.tanh(x1[:, :, None, :] - x2[:, None, :, :])            # (B, U, V, R)
    rel = self.fuse(rel)                                             # (B, U, V, C')
    rel = rel * self.scale().astype(self.dtype)
    return jnp.einsum('buvc,btvc->btuc', rel, x3)


class CCFG(nnx.Module):
  """Channel-topology convolution feature generator: map -> per-AU joint features (eq. 10-12).

  Args:
    num_nodes: N AUs.
    in_features: C_in, channels of the input map (MACG: the node width C of the global block).
    features: channels of E and of every v_i^CCFG (512).
    rel_features: R (64).
    lambda_init, trainable_lambda: see ``ChannelTopologyConv`` (``trainable_lambda=False`` is the
      public code's fixed lambda).
    shared_block: False (paper eq. 12): one phi_i per AU (child ``au_blocks``); True (public
      code): one LinearBlock shared by all AUs (child ``shared_block``), broadcast to N identical
      rows.
    per_au_statistics: with ``shared_block``, the shared block's BatchNorm statistics move once
      per AU in each training step, as the public code's per-AU calls move them (see the module
      docstring); False: once per step. Needs ``shared_block`` (each per-AU block moves once).
    dtype: compute dtype; parameters float32.
    rngs: parameter initialisation.
  """

  def __init__(self, num_nodes: int, in_features: int, *, features: int = 512,
               rel_features: int = 64, lambda_init: float = 1.0, trainable_lambda: bool = True,
               shared_block: bool = False, per_au_statistics: bool = False,
               dtype: Any = jnp.float32, rngs: nnx.Rngs):
    if not isinstance(num_nodes, int) or num_nodes <= 0:
      raise ValueError(f'CCFG num_nodes must be a positive int; got {num_nodes!r}.')
    if per_au_statistics and not shared_block:
      raise ValueError('CCFG per_au_statistics needs shared_block (the public code\'s shared '
                       'LinearBlock); the per-AU blocks of eq. 12 each move their statistics once.')
    self.per_au_statistics = bool(per_au_statistics)
    self.num_nodes = num_nodes
    self.features = features
    self.topology = ChannelTopologyConv(in_features, features=features, rel_features=rel_features,
                                        lambda_init=lambda_init,
                                        trainable_lambda=trainable_lambda, dtype=dtype, rngs=rngs)
    # The attribute names are the variable paths ('shared_block' / 'au_blocks'); the other is None.
    self.shared_block = (LinearBlock(features, features, dtype=dtype, rngs=rngs)
                         if shared_block else None)
    self.au_blocks = (None if shared_block else
                      PerNodeLinearBlock(num_nodes, features, features, shared_input=True,
                                         dtype=dtype, rngs=rngs))

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """``x`` (B, H, W, C_in) -> v^CCFG (B, N, features)."""
    chex.assert_rank(x, 4)
    b = x.shape[0]
    e = self.topology(x)
    pooled = e.mean(axis=(1, 2))                                     # (B, C')
    if self.shared_block is not None:
      # One application per AU in training with per_au_statistics: the BatchNorm statistics
      # move N times; every application returns the same v (batch statistics), the last is used.
      for _ in range(self.num_nodes if train and self.per_au_statistics else 1):
        v = self.shared_block(pooled, train=train)
      v = jnp.broadcast_to(v[:, None, :], (b, self.num_nodes, self.features))
    else:
      v = self.au_blocks(pooled, train=train)
    chex.assert_shape(v, (b, self.num_nodes, self.features))
    return v

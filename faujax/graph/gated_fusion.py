"""Gated fusion cell, GFC (MGRR-Net eq. 7-8).

``GFC(a, b) = beta * l2n(W_a a) + (1 - beta) * l2n(W_b b)`` with
``beta = sigmoid(W'_a a + W'_b b)`` and ``l2n`` the L2 normalisation over the
channel (last) axis. The paper's ``W`` are Conv2D; on ``(..., H, W, C)`` maps
or ``(..., N, C)`` node features a 1x1 convolution is this per-position linear
map over the last axis, so inputs are any ``(..., C_a)`` and ``(..., C_b)`` with
the same leading shape; output ``(..., C_out)``. MGRR-Net nests it (eq. 6):
``GFC(v, GFC(O_G, GFC(C_G, P_G)))``.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.graph import params as params_lib


def l2_normalize(x: chex.Array, axis: int = -1, epsilon: float = 1e-12) -> chex.Array:
  """``x / max(||x||_2, epsilon)`` along ``axis`` (finite gradients at 0)."""
  sq = jnp.sum(jnp.square(x.astype(jnp.float32)), axis=axis, keepdims=True)
  inv = jax.lax.rsqrt(jnp.maximum(sq, epsilon * epsilon))
  return (x * inv).astype(x.dtype)


def gated_fusion_init(rng: chex.PRNGKey, in_dim_a: int, in_dim_b: int, out_dim: int,
                      *, use_bias: bool = True, init: str = 'glorot') -> params_lib.Params:
  """Params (float32).

  Keys: ``'kernel_a'`` ``(C_a, C_out)`` (W_C), ``'kernel_b'`` ``(C_b, C_out)``
  (W_P), ``'gate_a'`` ``(C_a, C_out)`` (W'_C), ``'gate_b'`` ``(C_b, C_out)``
  (W'_P) and, with ``use_bias``, ``'bias_a'``, ``'bias_b'``, ``'gate_bias'`` (the sum of
  W'_C's and W'_P's biases: eq. 8 adds the two convolutions).

  ``init`` (``params_lib.KERNEL_INITS``): 'glorot', Glorot uniform kernels, biases
  U(+-1/sqrt(fan_in)) with the gate's fan-in C_a + C_b; 'torch', the four W as torch 1 x 1
  ``nn.Conv2d`` with their default initialisation (MGRR-Net sec. 4.2): every kernel and bias
  U(+-1/sqrt(C_in)) of its own input, so ``gate_bias`` is the sum of a U(+-1/sqrt(C_a)) and a
  U(+-1/sqrt(C_b)) draw, as the two convolutions' biases of a torch GFC add up.
  """
  if min(in_dim_a, in_dim_b, out_dim) <= 0:
    raise ValueError('in_dim_a, in_dim_b and out_dim must be positive; got '
                     f'{in_dim_a}, {in_dim_b}, {out_dim}.')
  params_lib.check_kernel_init(init)
  keys = jax.random.split(rng, 7)
  kernel = lambda k, a: params_lib.linear_kernel(k, (a, out_dim), a, out_dim, init)
  params = {
      'kernel_a': kernel(keys[0], in_dim_a),
      'kernel_b': kernel(keys[1], in_dim_b),
      'gate_a': kernel(keys[2], in_dim_a),
      'gate_b': kernel(keys[3], in_dim_b),
  }
  if use_bias:
    bias = params_lib.torch_linear_bias
    params['bias_a'] = bias(keys[4], (out_dim,), in_dim_a)
    params['bias_b'] = bias(keys[5], (out_dim,), in_dim_b)
    if init == 'torch':
      key_a, key_b = jax.random.split(keys[6])
      params['gate_bias'] = (bias(key_a, (out_dim,), in_dim_a)
                             + bias(key_b, (out_dim,), in_dim_b))
    else:
      params['gate_bias'] = bias(keys[6], (out_dim,), in_dim_a + in_dim_b)
  return params


def gated_fusion_apply(params: params_lib.Params, a: chex.Array, b: chex.Array, *,
                       dtype: Any | None = None, rng: chex.PRNGKey | None = None,
                       deterministic: bool = True) -> chex.Array:
  """MGRR-Net eq. 7-8 on ``a (..., C_a)`` and ``b (..., C_b)``; returns ``(..., C_out)``."""
  del rng, deterministic
  if a.ndim < 1 or b.ndim < 1:
    raise ValueError(f'a and b must have a channel axis; got shapes {a.shape}, {b.shape}.')
  if a.shape[:-1] != b.shape[:-1]:
    raise ValueError(f'a and b must share their leading shape; got {a.shape} and {b.shape}.')
  if a.shape[-1] != params['kernel_a'].shape[0] or b.shape[-1] != params['kernel_b'].shape[0]:
    raise ValueError(
        f'channels of a {a.shape[-1]} / b {b.shape[-1]} do not match the params '
        f'({params["kernel_a"].shape[0]} / {params["kernel_b"].shape[0]}).')
  dtype = params_lib.compute_dtype(dtype, a, b)
  p = params_lib.cast_params(params, dtype)
  ad, bd = a.astype(dtype), b.astype(dtype)
  pa, pb, gate = ad @ p['kernel_a'], bd @ p['kernel_b'], ad @ p['gate_a'] + bd @ p['gate_b']
  if 'gate_bias' in p:
    pa, pb, gate = pa + p['bias_a'], pb + p['bias_b'], gate + p['gate_bias']
  beta = jax.nn.sigmoid(gate)
  return beta * l2_normalize(pa) + (1 - beta) * l2_normalize(pb)


class GatedFusionCell(nnx.Module):
  """NNX wrapper of ``gated_fusion_apply``: ``(..., in_features_a)``, ``(..., in_features_b)``
  -> ``(..., features)``.

  Params: exactly ``gated_fusion_init``'s dict, one ``nnx.Param`` per key. ``dtype``: compute
  dtype (None: the inputs' dtype). ``init``: 'glorot' or 'torch' (``gated_fusion_init``).
  """

  def __init__(self, in_features_a: int, in_features_b: int, features: int, *,
               use_bias: bool = True, dtype: Any | None = None, init: str = 'glorot',
               rngs: nnx.Rngs):
    self.dtype = dtype
    params_lib.declare_params(self, gated_fusion_init(rngs.params(), in_features_a,
                                                      in_features_b, features,
                                                      use_bias=use_bias, init=init))

  def __call__(self, a: chex.Array, b: chex.Array) -> chex.Array:
    return gated_fusion_apply(params_lib.declared_params(self), a, b, dtype=self.dtype)

"""Multi-modal factorized bilinear pooling, MFB (Yu et al. 2017; SVML-RGCN eq. 6).

``alpha = SumPooling(W^T f o V^T e, k)``: project ``f (..., d1)`` and
``e (..., d2)`` to ``k * o``, multiply element-wise, (optional dropout), sum
each consecutive window of ``k`` values, then power normalisation
``sign(z) sqrt(|z|)`` and L2 normalisation (as in the MFB paper). Output
``(..., o)``. SVML-RGCN: ``k, o`` = 4, 1024 (RAF-ML), 5, 2000 (RAF-Compound),
5, 1000 (JAFFE).

The signed square root uses ``sign(z) (sqrt(|z| + eps) - sqrt(eps))`` so that
its gradient at 0 stays finite.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.graph import gated_fusion
from faujax.graph import params as params_lib

POWER_EPS = 1e-8


def signed_sqrt(z: chex.Array, eps: float = POWER_EPS) -> chex.Array:
  """Power normalisation ``sign(z) (sqrt(|z| + eps) - sqrt(eps))``."""
  return jnp.sign(z) * (jnp.sqrt(jnp.abs(z) + eps) - eps ** 0.5)


def mfb_init(rng: chex.PRNGKey, in_dim_x: int, in_dim_y: int, out_dim: int, factor: int, *,
             use_bias: bool = True) -> params_lib.Params:
  """Params (float32, PyTorch Linear defaults as in the MFB reference).

  Keys: ``'kernel_x'`` ``(d1, k * o)`` (W), ``'kernel_y'`` ``(d2, k * o)`` (V),
  and ``'bias_x'``, ``'bias_y'`` ``(k * o,)`` if ``use_bias``.
  """
  if min(in_dim_x, in_dim_y, out_dim, factor) <= 0:
    raise ValueError('in_dim_x, in_dim_y, out_dim and factor must be positive; got '
                     f'{in_dim_x}, {in_dim_y}, {out_dim}, {factor}.')
  keys = jax.random.split(rng, 4)
  width = factor * out_dim
  bias = params_lib.torch_linear_bias
  # PyTorch's Linear weight init (kaiming_uniform a=sqrt(5)) is U(+-1/sqrt(fan_in)).
  params = {'kernel_x': bias(keys[0], (in_dim_x, width), in_dim_x),
            'kernel_y': bias(keys[1], (in_dim_y, width), in_dim_y)}
  if use_bias:
    params['bias_x'] = bias(keys[2], (width,), in_dim_x)
    params['bias_y'] = bias(keys[3], (width,), in_dim_y)
  return params


def mfb_apply(params: params_lib.Params, x: chex.Array, y: chex.Array, *, factor: int,
              dropout_rate: float = 0.0, dtype: Any | None = None,
              rng: chex.PRNGKey | None = None, deterministic: bool = True) -> chex.Array:
  """SVML-RGCN eq. 6 on ``x (..., d1)`` (visual) and ``y (..., d2)`` (semantic).

  Leading dims broadcast. Returns ``(..., o)`` with unit L2 norm (0 for a zero row).
  """
  width = params['kernel_x'].shape[1]
  if factor <= 0 or width % factor:
    raise ValueError(f'factor={factor} must divide the projection width {width}.')
  if x.shape[-1] != params['kernel_x'].shape[0] or y.shape[-1] != params['kernel_y'].shape[0]:
    raise ValueError(
        f'x has {x.shape[-1]} and y {y.shape[-1]} channels; the params expect '
        f'{params["kernel_x"].shape[0]} and {params["kernel_y"].shape[0]}.')
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f'dropout_rate must be in [0, 1); got {dropout_rate}.')
  dtype = params_lib.compute_dtype(dtype, x, y)
  p = params_lib.cast_params(params, dtype)
  px = x.astype(dtype) @ p['kernel_x']
  py = y.astype(dtype) @ p['kernel_y']
  if 'bias_x' in p:
    px, py = px + p['bias_x'], py + p['bias_y']
  z = px * py
  if not deterministic and dropout_rate > 0:
    if rng is None:
      raise ValueError('rng is required when deterministic=False and dropout_rate > 0.')
    keep = jax.random.bernoulli(rng, 1.0 - dropout_rate, z.shape)
    z = jnp.where(keep, z / (1.0 - dropout_rate), jnp.zeros_like(z))
  z = jnp.sum(z.reshape(z.shape[:-1] + (width // factor, factor)), axis=-1)
  return gated_fusion.l2_normalize(signed_sqrt(z))


class MFB(nnx.Module):
  """NNX wrapper of ``mfb_apply``: ``(..., in_features_x)``, ``(..., in_features_y)`` ->
  ``(..., features)`` with projections of width ``factor * features``.

  Params: exactly ``mfb_init``'s dict, one ``nnx.Param`` per key. Dropout on the product
  (``dropout_rate``) runs when ``train`` is True and needs ``rngs`` (its ``dropout`` stream) at
  call time. ``dtype``: compute dtype (None: the inputs' dtype).
  """

  def __init__(self, in_features_x: int, in_features_y: int, features: int, factor: int, *,
               use_bias: bool = True, dropout_rate: float = 0.0, dtype: Any | None = None,
               rngs: nnx.Rngs):
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'MFB dropout_rate must be in [0, 1); got {dropout_rate}.')
    self.factor = factor
    self.dropout_rate = dropout_rate
    self.dtype = dtype
    params_lib.declare_params(self, mfb_init(rngs.params(), in_features_x, in_features_y,
                                             features, factor, use_bias=use_bias))

  def __call__(self, x: chex.Array, y: chex.Array, *, train: bool,
               rngs: nnx.Rngs | None = None) -> chex.Array:
    deterministic = not train or self.dropout_rate == 0.0
    return mfb_apply(params_lib.declared_params(self), x, y, factor=self.factor,
                     dropout_rate=self.dropout_rate, dtype=self.dtype,
                     rng=params_lib.dropout_key(rngs, deterministic, 'MFB'),
                     deterministic=deterministic)

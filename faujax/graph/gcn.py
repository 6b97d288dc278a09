"""Dense-adjacency graph convolution (Kipf & Welling; AU-GCN eq. 6; Emotion-GCN eq. 2).

``Z' = A_hat Z W (+ b)`` with ``A_hat = normalize_adjacency(A, normalization)``.
Node features ``(..., N, C_in)`` -> ``(..., N, C_out)``; adjacency ``(N, N)`` or
``(..., N, N)``. No activation: the models apply their own (AU-GCN: dropout then
ReLU; Emotion-GCN / ML-GCN: LeakyReLU 0.2).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.graph import adjacency as adjacency_lib
from faujax.graph import params as params_lib

GCN_INITS: tuple[str, ...] = ('glorot', 'uniform_out')


def gcn_init(rng: chex.PRNGKey, in_dim: int, out_dim: int, *, use_bias: bool = False,
             init: str = 'glorot') -> params_lib.Params:
  """Returns ``{'kernel': (in_dim, out_dim)[, 'bias': (out_dim,)]}`` in float32.

  ``init='glorot'``: Kipf & Welling (Glorot uniform, zero bias).
  ``init='uniform_out'``: ML-GCN / Emotion-GCN, U(-1/sqrt(out_dim), 1/sqrt(out_dim))
  for kernel and bias (docs/reference/model_details.md, "Emotion-GCN").
  """
  if in_dim <= 0 or out_dim <= 0:
    raise ValueError(f'in_dim and out_dim must be positive; got {in_dim}, {out_dim}.')
  if init not in GCN_INITS:
    raise ValueError(f'Unknown gcn init={init!r}; expected one of {list(GCN_INITS)}.')
  k_rng, b_rng = jax.random.split(rng)
  if init == 'glorot':
    params = {'kernel': params_lib.glorot_uniform(k_rng, (in_dim, out_dim), in_dim, out_dim)}
    bias = jnp.zeros((out_dim,), jnp.float32)
  else:
    limit = 1.0 / out_dim ** 0.5
    params = {'kernel': jax.random.uniform(k_rng, (in_dim, out_dim), jnp.float32, -limit, limit)}
    bias = jax.random.uniform(b_rng, (out_dim,), jnp.float32, -limit, limit)
  if use_bias:
    params['bias'] = bias
  return params


def gcn_apply(params: params_lib.Params, x: chex.Array, adj: chex.Array, *,
              normalization: str = 'kipf', dtype: Any | None = None,
              rng: chex.PRNGKey | None = None, deterministic: bool = True) -> chex.Array:
  """One GCN layer ``A_hat (x W) + b``.

  Args:
    params: from ``gcn_init``.
    x: ``(..., N, C_in)`` node features.
    adj: ``(N, N)`` or ``(..., N, N)`` adjacency, row = receiving node.
    normalization: see ``faujax.graph.adjacency.NORMALIZATIONS``.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); params stay float32 outside.
    rng, deterministic: unused (no stochastic parts); accepted for a uniform API.

  Returns:
    ``(..., N, C_out)``.
  """
  del rng, deterministic
  kernel = params['kernel']
  params_lib.check_features(x, kernel.shape[0])
  adjacency_lib.check_adjacency(adj, x.shape[-2])
  dtype = params_lib.compute_dtype(dtype, x)
  p = params_lib.cast_params(params, dtype)
  a_hat = adjacency_lib.normalize_adjacency(adj.astype(jnp.float32), normalization).astype(dtype)
  support = x.astype(dtype) @ p['kernel']
  out = a_hat @ support
  if 'bias' in p:
    out = out + p['bias']
  return out


class GraphConv(nnx.Module):
  """NNX wrapper of ``gcn_apply``: ``(..., N, in_features) -> (..., N, features)``.

  Params: exactly ``gcn_init``'s dict (``kernel`` (in_features, features)[, ``bias``]), one
  ``nnx.Param`` per key. ``dtype`` is the compute dtype (None: the inputs' dtype, as
  ``gcn_apply``); parameters are float32.
  """

  def __init__(self, in_features: int, features: int, *, normalization: str = 'kipf',
               use_bias: bool = False, initializer: str = 'glorot', dtype: Any | None = None,
               rngs: nnx.Rngs):
    if normalization not in adjacency_lib.NORMALIZATIONS:
      raise ValueError(f'GraphConv normalization={normalization!r}; expected one of '
                       f'{list(adjacency_lib.NORMALIZATIONS)}.')
    self.normalization = normalization
    self.dtype = dtype
    params_lib.declare_params(self, gcn_init(rngs.params(), in_features, features,
                                             use_bias=use_bias, init=initializer))

  def __call__(self, x: chex.Array, adj: chex.Array) -> chex.Array:
    return gcn_apply(params_lib.declared_params(self), x, adj, normalization=self.normalization,
                     dtype=self.dtype)

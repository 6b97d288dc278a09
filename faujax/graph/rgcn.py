"""Relational graph convolution (Schlichtkrull et al.; SVML-RGCN eq. 7).

``h_i' = sigma( sum_r sum_{j in N_i^r} W_r h_j / c_{i,r} + W_0 h_i (+ b) )`` with
``c_{i,r} = |N_i^r|``. Relations come as a stack of adjacency matrices
``(R, N, N)`` or per sample ``(..., R, N, N)``; ``N_i^r = {j : A_r[i, j] != 0}``
and the entries act as edge weights (binary graphs give eq. 7 exactly). A node
with no neighbours under relation ``r`` receives nothing from ``r`` (not NaN).
Optional basis decomposition ``W_r = sum_b a_rb V_b``.
Node features ``(..., N, C_in)`` -> ``(..., N, C_out)``.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.graph import adjacency as adjacency_lib
from faujax.graph import params as params_lib


def rgcn_init(rng: chex.PRNGKey, in_dim: int, out_dim: int, num_relations: int, *,
              num_bases: int | None = None, use_bias: bool = False) -> params_lib.Params:
  """Returns the R-GCN params (float32, Glorot uniform, zero bias).

  Keys: ``'self_kernel'`` ``(in_dim, out_dim)`` (W_0); and either ``'kernel'``
  ``(R, in_dim, out_dim)`` (W_r) or, with ``num_bases=B``, ``'basis'``
  ``(B, in_dim, out_dim)`` (V_b) and ``'coefficients'`` ``(R, B)`` (a_rb);
  ``'bias'`` ``(out_dim,)`` if ``use_bias``.
  """
  if in_dim <= 0 or out_dim <= 0 or num_relations <= 0:
    raise ValueError('in_dim, out_dim and num_relations must be positive; got '
                     f'{in_dim}, {out_dim}, {num_relations}.')
  if num_bases is not None and num_bases <= 0:
    raise ValueError(f'num_bases must be positive or None; got {num_bases}.')
  k0, k1, k2 = jax.random.split(rng, 3)
  glorot = params_lib.glorot_uniform
  params = {'self_kernel': glorot(k0, (in_dim, out_dim), in_dim, out_dim)}
  if num_bases is None:
    params['kernel'] = glorot(k1, (num_relations, in_dim, out_dim), in_dim, out_dim)
  else:
    params['basis'] = glorot(k1, (num_bases, in_dim, out_dim), in_dim, out_dim)
    params['coefficients'] = glorot(k2, (num_relations, num_bases), num_bases, num_relations)
  if use_bias:
    params['bias'] = jnp.zeros((out_dim,), jnp.float32)
  return params


def relation_kernels(params: params_lib.Params) -> chex.Array:
  """The per-relation weights ``(R, C_in, C_out)`` (composed from the bases if used)."""
  if 'kernel' in params:
    return params['kernel']
  return jnp.einsum('rb,bio->rio', params['coefficients'], params['basis'])


def rgcn_apply(params: params_lib.Params, x: chex.Array, relations: chex.Array, *,
               activation: Callable[[chex.Array], chex.Array] | None = None,
               dtype: Any | None = None, rng: chex.PRNGKey | None = None,
               deterministic: bool = True) -> chex.Array:
  """One R-GCN layer (SVML-RGCN eq. 7).

  Args:
    params: from ``rgcn_init``.
    x: ``(..., N, C_in)``.
    relations: ``(R, N, N)`` or ``(..., R, N, N)``, row = receiving node.
    activation: sigma (None = identity).
    dtype: compute dtype.
    rng, deterministic: unused; accepted for a uniform API.

  Returns:
    ``(..., N, C_out)``.
  """
  del rng, deterministic
  self_kernel = params['self_kernel']
  params_lib.check_features(x, self_kernel.shape[0])
  adjacency_lib.check_adjacency(relations, x.shape[-2], name='relations')
  kernels = relation_kernels(params)
  if relations.ndim < 3 or relations.shape[-3] != kernels.shape[0]:
    raise ValueError(
        f'relations must have shape (..., R={kernels.shape[0]}, N, N); got {relations.shape}.')
  dtype = params_lib.compute_dtype(dtype, x)
  rel = relations.astype(jnp.float32)
  count = jnp.sum((rel != 0).astype(jnp.float32), axis=-1, keepdims=True)  # c_{i,r}
  rel = (rel * adjacency_lib.safe_reciprocal(count)).astype(dtype)  # (..., R, N, N)
  xd = x.astype(dtype)
  support = jnp.einsum('...nc,rco->...rno', xd, kernels.astype(dtype))  # (..., R, N, C_out)
  messages = jnp.einsum('...rij,...rjo->...io', rel, support)
  out = messages + xd @ self_kernel.astype(dtype)
  if 'bias' in params:
    out = out + params['bias'].astype(dtype)
  return out if activation is None else activation(out)


class RelationalGraphConv(nnx.Module):
  """NNX wrapper of ``rgcn_apply``: ``(..., N, in_features) -> (..., N, features)``.

  Params: exactly ``rgcn_init``'s dict (``self_kernel`` and ``kernel`` or ``basis`` /
  ``coefficients`` [, ``bias``]), one ``nnx.Param`` per key. ``dtype``: compute dtype (None:
  the inputs' dtype).
  """

  def __init__(self, in_features: int, features: int, num_relations: int, *,
               num_bases: int | None = None, use_bias: bool = False,
               activation: Callable[[chex.Array], chex.Array] | None = None,
               dtype: Any | None = None, rngs: nnx.Rngs):
    self.activation = activation
    self.dtype = dtype
    params_lib.declare_params(self, rgcn_init(rngs.params(), in_features, features,
                                              num_relations, num_bases=num_bases,
                                              use_bias=use_bias))

  def __call__(self, x: chex.Array, relations: chex.Array) -> chex.Array:
    return rgcn_apply(params_lib.declared_params(self), x, relations,
                      activation=self.activation, dtype=self.dtype)

"""Multi-head graph attention with additive scores (Velickovic et al., GAT).

For head ``h``: ``z = x W_h``; ``e_ij = LeakyReLU_0.2(a_src_h . z_j + a_dst_h . z_i)``;
``alpha_ij = softmax_{j in N(i) + {i}} e_ij`` (self-loops always added);
``out_i = sum_j alpha_ij z_j``; heads concatenated ``(..., N, H * F)`` or
averaged ``(..., N, F)``; optional bias; attention dropout on ``alpha``.
Node features ``(..., N, C_in)``; adjacency ``(N, N)`` / ``(..., N, N)`` (only
``adj != 0`` matters) or None for a fully connected graph.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.graph import adjacency as adjacency_lib
from faujax.graph import attention as attention_lib
from faujax.graph import params as params_lib


def gat_init(rng: chex.PRNGKey, in_dim: int, out_dim: int, num_heads: int = 1, *,
             concat: bool = True, use_bias: bool = True) -> params_lib.Params:
  """GAT params (float32, Glorot uniform as in the GAT reference, zero bias).

  Keys: ``'kernel'`` ``(in_dim, H, F)``, ``'att_src'`` ``(H, F)``,
  ``'att_dst'`` ``(H, F)``, ``'bias'`` ``(H * F,)`` if concat else ``(F,)``.
  ``out_dim`` is the per-head width ``F``.
  """
  if min(in_dim, out_dim, num_heads) <= 0:
    raise ValueError('in_dim, out_dim and num_heads must be positive; got '
                     f'{in_dim}, {out_dim}, {num_heads}.')
  k0, k1, k2 = jax.random.split(rng, 3)
  glorot = params_lib.glorot_uniform
  params = {
      'kernel': glorot(k0, (in_dim, num_heads, out_dim), in_dim, num_heads * out_dim),
      'att_src': glorot(k1, (num_heads, out_dim), out_dim, 1),
      'att_dst': glorot(k2, (num_heads, out_dim), out_dim, 1),
  }
  if use_bias:
    params['bias'] = jnp.zeros((num_heads * out_dim if concat else out_dim,), jnp.float32)
  return params


def gat_attention(params: params_lib.Params, x: chex.Array, adj: chex.Array | None, *,
                  negative_slope: float = 0.2, dtype: Any | None = None
                  ) -> tuple[chex.Array, chex.Array]:
  """Returns ``(alpha (..., H, N, N) float32, z (..., N, H, F))`` before dropout."""
  kernel = params['kernel']
  params_lib.check_features(x, kernel.shape[0])
  n = x.shape[-2]
  dtype = params_lib.compute_dtype(dtype, x)
  p = params_lib.cast_params(params, dtype)
  z = jnp.einsum('...nc,chf->...nhf', x.astype(dtype), p['kernel'])
  e_src = jnp.einsum('...nhf,hf->...hn', z, p['att_src'])
  e_dst = jnp.einsum('...nhf,hf->...hn', z, p['att_dst'])
  logits = jax.nn.leaky_relu(
      (e_dst[..., :, None] + e_src[..., None, :]).astype(jnp.float32), negative_slope)
  mask = adjacency_lib.neighbour_mask(adj, n)[..., None, :, :]
  return attention_lib.masked_softmax(logits, mask), z


def gat_apply(params: params_lib.Params, x: chex.Array, adj: chex.Array | None = None, *,
              concat: bool = True, negative_slope: float = 0.2, dropout_rate: float = 0.0,
              dtype: Any | None = None, rng: chex.PRNGKey | None = None,
              deterministic: bool = True) -> chex.Array:
  """One multi-head additive GAT layer (no output activation).

  Returns:
    ``(..., N, H * F)`` if ``concat`` else ``(..., N, F)``.
  """
  alpha, z = gat_attention(params, x, adj, negative_slope=negative_slope, dtype=dtype)
  alpha = attention_lib.attention_dropout(alpha, dropout_rate, rng, deterministic)
  out = jnp.einsum('...hij,...jhf->...ihf', alpha.astype(z.dtype), z)
  if concat:
    out = out.reshape(out.shape[:-2] + (out.shape[-2] * out.shape[-1],))
  else:
    out = jnp.mean(out, axis=-2)
  if 'bias' in params:
    if params['bias'].shape != out.shape[-1:]:
      raise ValueError(f'bias has shape {params["bias"].shape} but the output width is '
                       f'{out.shape[-1]} (concat={concat}); init and apply must agree on concat.')
    out = out + params['bias'].astype(out.dtype)
  return out


class GraphAttention(nnx.Module):
  """NNX wrapper of ``gat_apply``: ``(..., N, in_features) -> (..., N, H * features)`` (concat)
  or ``(..., N, features)`` (mean over the heads).

  Params: exactly ``gat_init``'s dict, one ``nnx.Param`` per key. Attention dropout
  (``dropout_rate``) runs when ``train`` is True and needs ``rngs`` (its ``dropout`` stream) at
  call time. ``dtype``: compute dtype (None: the inputs' dtype).
  """

  def __init__(self, in_features: int, features: int, *, num_heads: int = 1,
               concat: bool = True, use_bias: bool = True, negative_slope: float = 0.2,
               dropout_rate: float = 0.0, dtype: Any | None = None, rngs: nnx.Rngs):
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'GraphAttention dropout_rate must be in [0, 1); got {dropout_rate}.')
    self.concat = concat
    self.negative_slope = negative_slope
    self.dropout_rate = dropout_rate
    self.dtype = dtype
    params_lib.declare_params(self, gat_init(rngs.params(), in_features, features, num_heads,
                                             concat=concat, use_bias=use_bias))

  def __call__(self, x: chex.Array, adj: chex.Array | None = None, *, train: bool,
               rngs: nnx.Rngs | None = None) -> chex.Array:
    deterministic = not train or self.dropout_rate == 0.0
    return gat_apply(params_lib.declared_params(self), x, adj, concat=self.concat,
                     negative_slope=self.negative_slope, dropout_rate=self.dropout_rate,
                     dtype=self.dtype,
                     rng=params_lib.dropout_key(rngs, deterministic, 'GraphAttention'),
                     deterministic=deterministic)

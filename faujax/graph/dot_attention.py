"""Multi-head scaled dot-product graph attention (MGRR-Net eq. 3-4, "MH-GAT").

With ``L`` heads of width ``d = D / L``:
``alpha^l_ij = softmax_{j in Omega_i} (U_q^l x_i . U_k^l x_j / sqrt(d))`` and
``out_i = act( U_c [ ||_l sum_j alpha^l_ij U_v^l x_j ] )`` with ``act = ReLU``.
``Omega_i`` is the neighbourhood given by ``adj != 0`` plus the node itself
(``adj=None``: fully connected, the MGRR-Net channel/pixel graphs).
Eq. 4 prints the attended term as ``alpha * C_i``; we read it as the usual
value map of the cited transformer attention, ``U_v x_j``, summed over
``j in Omega_i`` (the only reading in which the weights over ``o`` matter).
Node features ``(..., N, C_in)`` -> ``(..., N, C_out)``.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.graph import adjacency as adjacency_lib
from faujax.graph import attention as attention_lib
from faujax.graph import params as params_lib


def dot_attention_init(rng: chex.PRNGKey, in_dim: int, out_dim: int, *,
                       hidden_dim: int, num_heads: int = 8, use_bias: bool = True,
                       init: str = 'glorot') -> params_lib.Params:
  """Params (float32; kernels by ``init``, biases PyTorch's default U(+-1/sqrt(fan_in))).

  Keys: ``'query'``, ``'key'``, ``'value'`` ``(in_dim, D)`` (U_q, U_k, U_v),
  ``'output'`` ``(D, out_dim)`` (U_c), and ``'<name>_bias'`` if ``use_bias``.
  ``hidden_dim`` ``D`` must be divisible by ``num_heads`` ``L``. ``init``: 'glorot' (Glorot
  uniform kernels) or 'torch' (each map as a torch ``nn.Linear``, U(+-1/sqrt(fan_in)): MGRR-Net
  sec. 4.2's "default initializer of PyTorch"), ``params_lib.KERNEL_INITS``.
  """
  if min(in_dim, out_dim, hidden_dim, num_heads) <= 0:
    raise ValueError('in_dim, out_dim, hidden_dim and num_heads must be positive; got '
                     f'{in_dim}, {out_dim}, {hidden_dim}, {num_heads}.')
  if hidden_dim % num_heads:
    raise ValueError(f'hidden_dim={hidden_dim} must be divisible by num_heads={num_heads}.')
  params_lib.check_kernel_init(init)
  keys = jax.random.split(rng, 8)
  kernel = lambda k, a, b: params_lib.linear_kernel(k, (a, b), a, b, init)
  params = {
      'query': kernel(keys[0], in_dim, hidden_dim),
      'key': kernel(keys[1], in_dim, hidden_dim),
      'value': kernel(keys[2], in_dim, hidden_dim),
      'output': kernel(keys[3], hidden_dim, out_dim),
  }
  if use_bias:
    bias = params_lib.torch_linear_bias
    params['query_bias'] = bias(keys[4], (hidden_dim,), in_dim)
    params['key_bias'] = bias(keys[5], (hidden_dim,), in_dim)
    params['value_bias'] = bias(keys[6], (hidden_dim,), in_dim)
    params['output_bias'] = bias(keys[7], (out_dim,), hidden_dim)
  return params


def _project(p: params_lib.Params, x: chex.Array, name: str) -> chex.Array:
  y = x @ p[name]
  return y + p[name + '_bias'] if name + '_bias' in p else y


def dot_attention_apply(params: params_lib.Params, x: chex.Array,
                        adj: chex.Array | None = None, *, num_heads: int = 8,
                        activation: Callable[[chex.Array], chex.Array] | None = jax.nn.relu,
                        dropout_rate: float = 0.0, dtype: Any | None = None,
                        rng: chex.PRNGKey | None = None,
                        deterministic: bool = True) -> chex.Array:
  """MGRR-Net eq. 4 over a neighbourhood mask.

  Args:
    params: from ``dot_attention_init``.
    x: ``(..., N, C_in)``.
    adj: ``(N, N)`` / ``(..., N, N)`` neighbourhood (``!= 0``) or None (all).
    num_heads: ``L``; must divide ``D``.
    activation: applied after ``U_c`` (ReLU in the paper; None = identity).
    dropout_rate: attention dropout (needs ``rng`` when not deterministic).

  Returns:
    ``(..., N, C_out)``.
  """
  params_lib.check_features(x, params['query'].shape[0])
  hidden = params['query'].shape[1]
  if hidden % num_heads:
    raise ValueError(f'num_heads={num_heads} must divide the hidden width {hidden}.')
  n = x.shape[-2]
  d = hidden // num_heads
  dtype = params_lib.compute_dtype(dtype, x)
  p = params_lib.cast_params(params, dtype)
  xd = x.astype(dtype)
  split = lambda t: t.reshape(t.shape[:-1] + (num_heads, d))
  q = split(_project(p, xd, 'query'))
  k = split(_project(p, xd, 'key'))
  v = split(_project(p, xd, 'value'))
  logits = jnp.einsum('...ihd,...jhd->...hij', q, k) / jnp.sqrt(jnp.asarray(d, dtype))
  mask = adjacency_lib.neighbour_mask(adj, n)[..., None, :, :]
  alpha = attention_lib.masked_softmax(logits, mask)
  alpha = attention_lib.attention_dropout(alpha, dropout_rate, rng, deterministic)
  heads = jnp.einsum('...hij,...jhd->...ihd', alpha.astype(dtype), v)
  out = _project(p, heads.reshape(heads.shape[:-2] + (hidden,)), 'output')
  return out if activation is None else activation(out)


class DotProductGraphAttention(nnx.Module):
  """NNX wrapper of ``dot_attention_apply``: ``(..., N, in_features) -> (..., N, features)``.

  Params: exactly ``dot_attention_init``'s dict (``query``, ``key``, ``value``, ``output`` and
  their ``*_bias``), one ``nnx.Param`` per key. Attention dropout (``dropout_rate``) runs when
  ``train`` is True and needs ``rngs`` (its ``dropout`` stream) at call time. ``dtype``: compute
  dtype (None: the inputs' dtype). ``init``: the kernels' initialisation (``dot_attention_init``).
  """

  def __init__(self, in_features: int, features: int, *, hidden_dim: int, num_heads: int = 8,
               use_bias: bool = True,
               activation: Callable[[chex.Array], chex.Array] | None = jax.nn.relu,
               dropout_rate: float = 0.0, dtype: Any | None = None, init: str = 'glorot',
               rngs: nnx.Rngs):
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'DotProductGraphAttention dropout_rate must be in [0, 1); got '
                       f'{dropout_rate}.')
    self.num_heads = num_heads
    self.activation = activation
    self.dropout_rate = dropout_rate
    self.dtype = dtype
    params_lib.declare_params(self, dot_attention_init(rngs.params(), in_features, features,
                                                       hidden_dim=hidden_dim,
                                                       num_heads=num_heads, use_bias=use_bias,
                                                       init=init))

  def __call__(self, x: chex.Array, adj: chex.Array | None = None, *, train: bool,
               rngs: nnx.Rngs | None = None) -> chex.Array:
    deterministic = not train or self.dropout_rate == 0.0
    return dot_attention_apply(
        params_lib.declared_params(self), x, adj, num_heads=self.num_heads,
        activation=self.activation, dropout_rate=self.dropout_rate, dtype=self.dtype,
        rng=params_lib.dropout_key(rngs, deterministic, 'DotProductGraphAttention'),
        deterministic=deterministic)

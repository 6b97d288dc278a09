"""Graph layer with a learnable adjacency initialised from a prior (MGRR-Net eq. 5).

``v_bar_i = W_i v_i + sum_j A_ij W_j v_j``: the adjacency ``A`` (N, N) is a
parameter, initialised from the statistical prior of MGRR-Net eq. 1-2
(``faujax.relations.mgrr_prior``) and trained with the rest. ``W_i`` is one
mapping per node (``per_node=True``, the paper's ``W_i^k``) or one shared
mapping. Node features ``(..., N, C_in)`` -> ``(..., N, C_out)``.
"""

from __future__ import annotations

from typing import Any

import chex
import jax.numpy as jnp
from flax import nnx

from faujax.graph import adjacency as adjacency_lib
from faujax.graph import params as params_lib


def prior_graph_init(rng: chex.PRNGKey, prior: chex.Array, in_dim: int, out_dim: int, *,
                     per_node: bool = True, use_bias: bool = False,
                     init: str = 'glorot') -> params_lib.Params:
  """Params (float32): ``'adjacency'`` = ``prior`` ``(N, N)``; ``'kernel'``
  ``(N, in_dim, out_dim)`` (per node) or ``(in_dim, out_dim)``; ``'bias'`` ``(out_dim,)`` zeros
  if ``use_bias``. ``init``: the kernel's 'glorot' (Glorot uniform) or 'torch' (every W_i as a
  torch ``nn.Linear`` / 1 x 1 ``nn.Conv2d``, U(+-1/sqrt(in_dim)); MGRR-Net sec. 4.2)."""
  prior = jnp.asarray(prior, jnp.float32)
  adjacency_lib.check_adjacency(prior, name='prior')
  if prior.ndim != 2:
    raise ValueError(f'prior must be one (N, N) matrix; got shape {prior.shape}.')
  if in_dim <= 0 or out_dim <= 0:
    raise ValueError(f'in_dim and out_dim must be positive; got {in_dim}, {out_dim}.')
  n = prior.shape[0]
  shape = (n, in_dim, out_dim) if per_node else (in_dim, out_dim)
  params = {'adjacency': prior,
            'kernel': params_lib.linear_kernel(rng, shape, in_dim, out_dim, init)}
  if use_bias:
    params['bias'] = jnp.zeros((out_dim,), jnp.float32)
  return params


def prior_graph_apply(params: params_lib.Params, x: chex.Array, *,
                      dtype: Any | None = None, rng: chex.PRNGKey | None = None,
                      deterministic: bool = True) -> chex.Array:
  """MGRR-Net eq. 5: ``y = W x`` per node, ``out = y + A y`` (+ bias); ``(..., N, C_out)``."""
  del rng, deterministic
  kernel = params['kernel']
  params_lib.check_features(x, kernel.shape[-2])
  n = params['adjacency'].shape[-1]
  if x.shape[-2] != n:
    raise ValueError(f'x has {x.shape[-2]} nodes but the learnable adjacency has {n}.')
  dtype = params_lib.compute_dtype(dtype, x)
  p = params_lib.cast_params(params, dtype)
  xd = x.astype(dtype)
  if kernel.ndim == 3:
    y = jnp.einsum('...nc,nco->...no', xd, p['kernel'])
  else:
    y = xd @ p['kernel']
  out = y + p['adjacency'] @ y
  if 'bias' in p:
    out = out + p['bias']
  return out


class PriorGraphConv(nnx.Module):
  """NNX wrapper of ``prior_graph_apply``: ``(..., N, in_features) -> (..., N, features)``.

  ``prior`` is the (N, N) initial adjacency (array-like). Params: exactly ``prior_graph_init``'s
  dict (``adjacency`` (N, N), initialised to ``prior`` and trained; ``kernel`` [, ``bias``]),
  one ``nnx.Param`` per key. ``dtype``: compute dtype (None: the inputs' dtype). ``init``: the
  kernel's initialisation, 'glorot' or 'torch' (``prior_graph_init``).
  """

  def __init__(self, prior: Any, in_features: int, features: int, *, per_node: bool = True,
               use_bias: bool = False, dtype: Any | None = None, init: str = 'glorot',
               rngs: nnx.Rngs):
    self.dtype = dtype
    params_lib.declare_params(self, prior_graph_init(rngs.params(), prior, in_features, features,
                                                     per_node=per_node, use_bias=use_bias,
                                                     init=init))

  def __call__(self, x: chex.Array) -> chex.Array:
    return prior_graph_apply(params_lib.declared_params(self), x, dtype=self.dtype)

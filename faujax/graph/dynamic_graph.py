"""Top-K dynamic graph and its node update (MACG eq. 5-9; ME-GraphAU's GNN).

Graph (MACG eq. 5-8, reference-facts "Top-K dynamic graph"): similarities
``S = x x^T`` (``'dot'``, default) or cosine of the stop-gradient node features;
``A_ij = 1`` iff ``S_ij >=`` the K-th largest value of row ``i`` (self included,
ties may add neighbours); ``A' = D^-1/2 A D^-1/2`` with ``D`` the row degrees.

Node update (eq. 9 as in the public code):
``x' = ReLU(x + BN(A' V(x) + U(x)))`` with ``U, V`` Linear(C, C) with bias and a
BatchNorm1d whose feature axis is the node axis (statistics per node over the
batch and the channels). Node features ``(..., N, C)`` -> ``(..., N, C)``.

``dynamic_graph_apply`` is the whole layer as a pure function with a functional
BatchNorm (``batch_stats`` in, updated ``batch_stats`` out);
``DynamicGraphLayer`` wraps ``dynamic_graph_message`` (everything before the
norm) with ``nn.BatchNorm(axis=-2)`` so that linen manages the statistics.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faujax.graph import adjacency as adjacency_lib
from faujax.graph import params as params_lib

METRICS: tuple[str, ...] = ('dot', 'cosine')


def similarity(x: chex.Array, metric: str = 'dot') -> chex.Array:
  """``(..., N, N)`` float32 similarities of stop-gradient node features (MACG eq. 5)."""
  params_lib.check_features(x)
  if metric not in METRICS:
    raise ValueError(f'Unknown similarity metric={metric!r}; expected one of {list(METRICS)}.')
  v = jax.lax.stop_gradient(x).astype(jnp.float32)
  if metric == 'cosine':
    norm = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))
    v = v / jnp.maximum(norm, 1e-8)
  return jnp.einsum('...ic,...jc->...ij', v, v)


def topk_adjacency(x: chex.Array, k: int, *, metric: str = 'dot') -> chex.Array:
  """Binary ``(..., N, N)`` float32 top-K graph (MACG eq. 6); row = node ``i``."""
  n = x.shape[-2]
  if not 1 <= k <= n:
    raise ValueError(f'k must be in [1, num_nodes={n}]; got k={k}.')
  s = similarity(x, metric)
  kth = jax.lax.top_k(s, k)[0][..., k - 1:k]
  return (s >= kth).astype(jnp.float32)


def dynamic_graph_init(rng: chex.PRNGKey, num_nodes: int, features: int, *,
                       with_norm: bool = True) -> params_lib.Params:
  """Params (float32) of one dynamic-graph layer.

  ``'U_kernel'``, ``'V_kernel'`` ``(C, C)`` ~ N(0, sqrt(2 / C)) (ME-GraphAU);
  ``'U_bias'``, ``'V_bias'`` ``(C,)`` PyTorch Linear default; with ``with_norm``
  also ``'bn_scale'`` (ones) and ``'bn_bias'`` (zeros), shape ``(num_nodes,)``.
  """
  if num_nodes <= 0 or features <= 0:
    raise ValueError(f'num_nodes and features must be positive; got {num_nodes}, {features}.')
  keys = jax.random.split(rng, 4)
  std = (2.0 / features) ** 0.5
  params = {
      'U_kernel': std * jax.random.normal(keys[0], (features, features), jnp.float32),
      'U_bias': params_lib.torch_linear_bias(keys[1], (features,), features),
      'V_kernel': std * jax.random.normal(keys[2], (features, features), jnp.float32),
      'V_bias': params_lib.torch_linear_bias(keys[3], (features,), features),
  }
  if with_norm:
    params['bn_scale'] = jnp.ones((num_nodes,), jnp.float32)
    params['bn_bias'] = jnp.zeros((num_nodes,), jnp.float32)
  return params


def dynamic_graph_batch_stats_init(num_nodes: int) -> params_lib.Params:
  """BatchNorm running statistics ``{'mean': zeros (N,), 'var': ones (N,)}``."""
  return {'mean': jnp.zeros((num_nodes,), jnp.float32),
          'var': jnp.ones((num_nodes,), jnp.float32)}


def dynamic_graph_message(params: params_lib.Params, x: chex.Array, *, k: int,
                          metric: str = 'dot', dtype: Any | None = None) -> chex.Array:
  """``A' V(x) + U(x)`` ``(..., N, C)``: the layer before its BatchNorm."""
  params_lib.check_features(x, params['U_kernel'].shape[0])
  dtype = params_lib.compute_dtype(dtype, x)
  p = params_lib.cast_params(params, dtype)
  a_norm = adjacency_lib.normalize_adjacency(topk_adjacency(x, k, metric=metric), 'sym')
  xd = x.astype(dtype)
  v = xd @ p['V_kernel'] + p['V_bias']
  u = xd @ p['U_kernel'] + p['U_bias']
  return a_norm.astype(dtype) @ v + u


def node_batch_norm(h: chex.Array, scale: chex.Array, bias: chex.Array,
                    batch_stats: params_lib.Params | None, *, train: bool,
                    momentum: float = 0.9, epsilon: float = 1e-5,
                    axis_name: str | None = None) -> tuple[chex.Array, params_lib.Params | None]:
  """BatchNorm with the node axis (-2) as feature axis, as ``nn.BatchNorm(axis=-2)``.

  Training uses batch statistics (per node, over all other axes; ``pmean`` over
  ``axis_name`` if given) and returns updated running statistics
  ``m' = momentum m + (1 - momentum) batch``; otherwise the running statistics.
  """
  reduce_axes = tuple(a for a in range(h.ndim) if a != h.ndim - 2)
  hf = h.astype(jnp.float32)
  if train:
    mean = jnp.mean(hf, axis=reduce_axes)
    mean_sq = jnp.mean(hf * hf, axis=reduce_axes)
    if axis_name is not None:
      mean, mean_sq = jax.lax.pmean((mean, mean_sq), axis_name)
    var = jnp.maximum(mean_sq - mean * mean, 0.0)
    new_stats = None
    if batch_stats is not None:
      new_stats = {'mean': momentum * batch_stats['mean'] + (1 - momentum) * mean,
                   'var': momentum * batch_stats['var'] + (1 - momentum) * var}
  else:
    if batch_stats is None:
      raise ValueError('batch_stats is required when train=False.')
    mean, var, new_stats = batch_stats['mean'], batch_stats['var'], batch_stats
  y = (hf - mean[:, None]) * jax.lax.rsqrt(var[:, None] + epsilon)
  y = y * scale[:, None] + bias[:, None]
  return y.astype(h.dtype), new_stats


def dynamic_graph_apply(params: params_lib.Params, x: chex.Array, *, k: int,
                        metric: str = 'dot', batch_stats: params_lib.Params | None = None,
                        train: bool = False, momentum: float = 0.9, epsilon: float = 1e-5,
                        axis_name: str | None = None, dtype: Any | None = None,
                        rng: chex.PRNGKey | None = None, deterministic: bool = True
                        ) -> tuple[chex.Array, params_lib.Params | None]:
  """One top-K dynamic-graph layer ``ReLU(x + BN(A' V(x) + U(x)))``.

  Args:
    params: from ``dynamic_graph_init`` (with norm).
    x: ``(..., N, C)``.
    k: neighbours per node (3 for DISFA, 4 for BP4D / EmotioNet).
    metric: ``'dot'`` or ``'cosine'``.
    batch_stats: from ``dynamic_graph_batch_stats_init``; required if not train.
    train: batch statistics (and updated running stats) if True.
    axis_name: pmap/shard_map axis to average the batch statistics over.

  Returns:
    ``(out (..., N, C), new_batch_stats)``.
  """
  del rng, deterministic
  n = x.shape[-2]
  if params['bn_scale'].shape != (n,):
    raise ValueError(f'params were built for {params["bn_scale"].shape[0]} nodes; x has {n}.')
  h = dynamic_graph_message(params, x, k=k, metric=metric, dtype=dtype)
  h, new_stats = node_batch_norm(h, params['bn_scale'], params['bn_bias'], batch_stats,
                                 train=train, momentum=momentum, epsilon=epsilon,
                                 axis_name=axis_name)
  return jax.nn.relu(x.astype(h.dtype) + h), new_stats


class DynamicGraphLayer(nn.Module):
  """Linen top-K dynamic-graph layer (MACG eq. 5-9).

  Params: ``dynamic_graph_init(..., with_norm=False)``'s dict plus the
  ``'bn'`` submodule (``nn.BatchNorm`` over the node axis, collection
  ``batch_stats``). ``bn_axis_name`` syncs the statistics under pmap.
  """

  k: int
  metric: str = 'dot'
  momentum: float = 0.9
  epsilon: float = 1e-5
  bn_axis_name: str | None = None
  dtype: Any | None = None

  @nn.compact
  def __call__(self, x: chex.Array, *, train: bool = False) -> chex.Array:
    n, c = x.shape[-2], x.shape[-1]
    params = params_lib.declare_params(
        self, lambda rng: dynamic_graph_init(rng, n, c, with_norm=False))
    h = dynamic_graph_message(params, x, k=self.k, metric=self.metric, dtype=self.dtype)
    h = nn.BatchNorm(use_running_average=not train, axis=-2, momentum=self.momentum,
                     epsilon=self.epsilon, axis_name=self.bn_axis_name, dtype=self.dtype,
                     name='bn')(h)
    return jax.nn.relu(x.astype(h.dtype) + h)

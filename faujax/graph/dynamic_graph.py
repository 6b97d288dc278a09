"""Top-K dynamic graph and its node update (MACG eq. 5-9; ME-GraphAU's GNN).

Graph (MACG eq. 5-8; docs/reference/model_details.md, "Top-K dynamic graph"): similarities
``S = x x^T`` (``'dot'``, default) or cosine of the stop-gradient node features;
``A_ij = 1`` iff ``S_ij >=`` the K-th largest value of row ``i`` (self included,
ties may add neighbours); ``A' = D^-1/2 A D^-1/2`` with ``D`` the row degrees.

Node update (eq. 9 as in the public code):
``x' = ReLU(x + BN(A' V(x) + U(x)))`` with ``U, V`` Linear(C, C) with bias and a
BatchNorm1d whose feature axis is the node axis (statistics per node over the
batch and the channels). Node features ``(..., N, C)`` -> ``(..., N, C)``.

``dynamic_graph_apply`` is the whole layer as a pure function with the functional
``faujax.layers.batch_norm`` over the node axis (``batch_stats`` in, updated
``batch_stats`` out); ``DynamicGraphLayer`` (Flax NNX) holds the same parameters and
calls ``dynamic_graph_message`` (everything before the norm) and its
``faujax.layers.BatchNorm(num_nodes, feature_axes=-2)`` child ``bn``, which owns the
running statistics. Both are the same maths.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax import layers
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
    momentum, epsilon: of the BatchNorm (``faujax.layers.batch_norm``, feature axis -2: the
      statistics of node ``i`` are over the batch and the channels).
    axis_name: a mapped axis (``jax.pmap`` / ``jax.vmap``) over which the batch statistics are
      averaged, as ``faujax.layers.batch_norm`` (the NNX layer gets it from the training code).

  Returns:
    ``(out (..., N, C), new_batch_stats)``; ``new_batch_stats`` is None when ``batch_stats`` is
    None (train mode without running statistics).
  """
  del rng, deterministic
  n = x.shape[-2]
  if params['bn_scale'].shape != (n,):
    raise ValueError(f'params were built for {params["bn_scale"].shape[0]} nodes; x has {n}.')
  if batch_stats is None and not train:
    raise ValueError('batch_stats is required when train=False.')
  h = dynamic_graph_message(params, x, k=k, metric=metric, dtype=dtype)
  stats = batch_stats if batch_stats is not None else dynamic_graph_batch_stats_init(n)
  h, mean, var = layers.batch_norm(h, params['bn_scale'], params['bn_bias'], stats['mean'],
                                   stats['var'], feature_axes=-2, train=train, momentum=momentum,
                                   epsilon=epsilon, axis_name=axis_name)
  new_stats = None if batch_stats is None else {'mean': mean, 'var': var}
  return jax.nn.relu(x.astype(h.dtype) + h), new_stats


class DynamicGraphLayer(nnx.Module):
  """Top-K dynamic-graph layer (MACG eq. 5-9), Flax NNX: ``(..., N, C) -> (..., N, C)``.

  Params: ``dynamic_graph_init(..., with_norm=False)``'s dict (``U_kernel``, ``U_bias``,
  ``V_kernel``, ``V_bias``), one ``nnx.Param`` per key, plus the child ``bn``, a
  ``faujax.layers.BatchNorm(num_nodes, feature_axes=-2)`` (scale / bias params, mean / var
  batch statistics of shape (N,)). ``dynamic_graph_apply`` with ``bn_scale`` / ``bn_bias`` =
  ``bn``'s scale / bias is the same function. ``dtype``: compute dtype (None: the inputs' dtype).
  """

  def __init__(self, num_nodes: int, in_features: int, *, k: int, metric: str = 'dot',
               momentum: float = 0.9, epsilon: float = 1e-5, dtype: Any | None = None,
               rngs: nnx.Rngs):
    if not 1 <= k <= num_nodes:
      raise ValueError(f'DynamicGraphLayer k must be in [1, num_nodes={num_nodes}]; got k={k}.')
    if metric not in METRICS:
      raise ValueError(f'DynamicGraphLayer metric={metric!r}; expected one of {list(METRICS)}.')
    self.num_nodes = num_nodes
    self.k = k
    self.metric = metric
    self.dtype = dtype
    params_lib.declare_params(self, dynamic_graph_init(rngs.params(), num_nodes, in_features,
                                                       with_norm=False))
    self.bn = layers.BatchNorm(num_nodes, feature_axes=-2, momentum=momentum, epsilon=epsilon,
                               dtype=dtype, rngs=rngs)

  def __call__(self, x: chex.Array, *, train: bool) -> chex.Array:
    if x.ndim < 2 or x.shape[-2] != self.num_nodes:
      raise ValueError(f'DynamicGraphLayer x must have shape (..., {self.num_nodes}, C); got '
                       f'shape {x.shape}.')
    h = dynamic_graph_message(params_lib.declared_params(self), x, k=self.k, metric=self.metric,
                              dtype=self.dtype)
    h = self.bn(h, train=train)
    return jax.nn.relu(x.astype(h.dtype) + h)

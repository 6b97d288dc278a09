"""Gated graph convolution over node and multi-dimensional edge features (ME-GraphAU's MEFL GNN).

ME-GraphAU (Luo et al., IJCAI 2022, sec. 3.2; the public CVI-SZU/ME-GraphAU code, ``model/MEFL.py``
``GNN``; after the residual gated graph ConvNets of Bresson & Laurent and the GatedGCN of
Dwivedi et al.) updates every node and every directed edge of a complete graph with one
C-dimensional feature per edge. For nodes ``x_i`` (N, C) and edges ``e_ij`` (N, N, C), row
``i`` the receiving ("end") node and column ``j`` the sending ("start") node:

  e'_ij = e_ij + ReLU(BN_e(A x_i + B x_j + E e_ij))                    edge update
  g_ij  = softmax_j(sigmoid(e'_ij))                                     gates, per channel
  h_i   = U x_i + (1 / N) sum_j g_ij * V x_j                            message
  x'_i  = ReLU(x_i + BN_v(h_i))          (ME-GraphAU)
        or x_i + ReLU(BN_v(h_i))         (OpenGraphAU, ``relu_before_residual=True``)

``U, V, A, B, E``: Linear(C, C) without bias, weights N(0, sqrt(2 / C)) as the public code.
``BN_v``: BatchNorm1d over the node axis (statistics per node over the batch and the channels);
``BN_e``: BatchNorm1d over the N x N edge axis (per edge over the batch and the channels).
``docs/reference/model_details.md``, "ME-GraphAU".

Layout: nodes ``(..., N, C)``, edges ``(..., N, N, C)`` (the public code's ``(B, N * N, C)`` with
edge ``i * N + j`` at ``[i, j]``). ``gated_edge_graph_apply`` is one layer as a pure function
(``batch_stats`` in and out); ``GatedEdgeGraphLayer`` (Flax NNX) holds the same parameters and
two ``faujax.layers.BatchNorm`` children, ``bn_nodes`` and ``bn_edges``.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax import layers
from faujax.graph import params as params_lib

_KERNELS = ('U', 'V', 'A', 'B', 'E')


def gated_edge_graph_init(rng: chex.PRNGKey, features: int) -> params_lib.Params:
  """``{'U', 'V', 'A', 'B', 'E'}``: (C, C) float32 kernels ~ N(0, sqrt(2 / C))."""
  if features <= 0:
    raise ValueError(f'features must be positive; got {features}.')
  std = (2.0 / features) ** 0.5
  keys = jax.random.split(rng, len(_KERNELS))
  return {name: std * jax.random.normal(k, (features, features), jnp.float32)
          for name, k in zip(_KERNELS, keys)}


def gated_edge_graph_batch_stats_init(num_nodes: int) -> params_lib.Params:
  """Running statistics ``{'nodes': {mean, var} (N,), 'edges': {mean, var} (N, N)}``."""
  return {'nodes': {'mean': jnp.zeros((num_nodes,)), 'var': jnp.ones((num_nodes,))},
          'edges': {'mean': jnp.zeros((num_nodes, num_nodes)),
                    'var': jnp.ones((num_nodes, num_nodes))}}


def edge_preactivation(params: params_lib.Params, x: chex.Array, e: chex.Array, *,
                       dtype: Any | None = None) -> chex.Array:
  """``A x_i + B x_j + E e_ij`` (..., N, N, C): the edge update before its BatchNorm."""
  dtype = params_lib.compute_dtype(dtype, x, e)
  p = params_lib.cast_params(params, dtype)
  x, e = x.astype(dtype), e.astype(dtype)
  return (x @ p['A'])[..., :, None, :] + (x @ p['B'])[..., None, :, :] + e @ p['E']


def node_message(params: params_lib.Params, x: chex.Array, e: chex.Array, *,
                 dtype: Any | None = None) -> chex.Array:
  """``U x_i + (1/N) sum_j softmax_j(sigmoid(e_ij)) V x_j`` (..., N, C), ``e`` the updated edges."""
  dtype = params_lib.compute_dtype(dtype, x, e)
  p = params_lib.cast_params(params, dtype)
  x = x.astype(dtype)
  gates = jax.nn.softmax(jax.nn.sigmoid(e.astype(jnp.float32)), axis=-2).astype(dtype)
  n = x.shape[-2]
  return x @ p['U'] + jnp.einsum('...ijc,...jc->...ic', gates, x @ p['V']) / n


def _check(x: chex.Array, e: chex.Array, features: int) -> None:
  params_lib.check_features(x, features)
  n = x.shape[-2]
  if e.shape[-3:] != (n, n, features) or e.shape[:-3] != x.shape[:-2]:
    raise ValueError(f'edges must have shape {x.shape[:-2] + (n, n, features)} for nodes '
                     f'{x.shape}; got {e.shape}.')


def gated_edge_graph_apply(params: params_lib.Params, x: chex.Array, e: chex.Array, *,
                           bn_params: params_lib.Params, batch_stats: params_lib.Params,
                           train: bool = False, relu_before_residual: bool = False,
                           momentum: float = 0.9, epsilon: float = 1e-5,
                           axis_name: str | None = None, dtype: Any | None = None
                           ) -> tuple[chex.Array, chex.Array, params_lib.Params]:
  """One layer (module docstring) as a pure function.

  Args:
    params: ``gated_edge_graph_init``'s kernels.
    x: nodes (..., N, C); e: edges (..., N, N, C).
    bn_params: ``{'nodes': {'scale', 'bias'} (N,), 'edges': {'scale', 'bias'} (N, N)}``.
    batch_stats: ``gated_edge_graph_batch_stats_init``'s layout.
    train: batch statistics (and updated running ones) if True.
    relu_before_residual: OpenGraphAU's node update ``x + ReLU(BN(h))``.
    momentum, epsilon, axis_name: of both BatchNorms (``faujax.layers.batch_norm``).
    dtype: compute dtype.

  Returns:
    ``(x' (..., N, C), e' (..., N, N, C), new_batch_stats)``.
  """
  _check(x, e, params['U'].shape[0])
  norm = lambda v, name, axes: layers.batch_norm(
      v, bn_params[name]['scale'], bn_params[name]['bias'], batch_stats[name]['mean'],
      batch_stats[name]['var'], feature_axes=axes, train=train, momentum=momentum,
      epsilon=epsilon, axis_name=axis_name)
  pre, e_mean, e_var = norm(edge_preactivation(params, x, e, dtype=dtype), 'edges', (-3, -2))
  e = e.astype(pre.dtype) + jax.nn.relu(pre)
  h, v_mean, v_var = norm(node_message(params, x, e, dtype=dtype), 'nodes', -2)
  x = x.astype(h.dtype)
  x = x + jax.nn.relu(h) if relu_before_residual else jax.nn.relu(x + h)
  return x, e, {'nodes': {'mean': v_mean, 'var': v_var},
                'edges': {'mean': e_mean, 'var': e_var}}


class GatedEdgeGraphLayer(nnx.Module):
  """One gated node-and-edge layer (module docstring), Flax NNX.

  Params: ``gated_edge_graph_init``'s kernels ``U, V, A, B, E`` (C, C) as ``nnx.Param``
  attributes, and the children ``bn_nodes`` (``BatchNorm(N, feature_axes=-2)``) and
  ``bn_edges`` (``BatchNorm((N, N), feature_axes=(-3, -2))``).
  """

  def __init__(self, num_nodes: int, features: int, *, relu_before_residual: bool = False,
               momentum: float = 0.9, epsilon: float = 1e-5, dtype: Any | None = None,
               rngs: nnx.Rngs):
    if num_nodes <= 0:
      raise ValueError(f'GatedEdgeGraphLayer num_nodes must be positive; got {num_nodes}.')
    self.num_nodes = num_nodes
    self.features = features
    self.relu_before_residual = relu_before_residual
    self.dtype = dtype
    params_lib.declare_params(self, gated_edge_graph_init(rngs.params(), features))
    self.bn_nodes = layers.BatchNorm(num_nodes, feature_axes=-2, momentum=momentum,
                                     epsilon=epsilon, dtype=dtype, rngs=rngs)
    self.bn_edges = layers.BatchNorm((num_nodes, num_nodes), feature_axes=(-3, -2),
                                     momentum=momentum, epsilon=epsilon, dtype=dtype, rngs=rngs)

  def __call__(self, x: chex.Array, e: chex.Array, *,
               train: bool) -> tuple[chex.Array, chex.Array]:
    """``(nodes (..., N, C), edges (..., N, N, C)) -> (nodes', edges')``."""
    _check(x, e, self.features)
    p = params_lib.declared_params(self)
    e = e.astype(params_lib.compute_dtype(self.dtype, x, e))
    pre = self.bn_edges(edge_preactivation(p, x, e, dtype=self.dtype), train=train)
    e = e.astype(pre.dtype) + jax.nn.relu(pre)
    h = self.bn_nodes(node_message(p, x, e, dtype=self.dtype), train=train)
    x = x.astype(h.dtype)
    x = x + jax.nn.relu(h) if self.relu_before_residual else jax.nn.relu(x + h)
    return x, e

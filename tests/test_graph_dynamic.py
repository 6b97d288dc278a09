"""Tests of the top-K dynamic graph and its node update (MACG eq. 5-9)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import graph
from faujax import layers
from faujax import model_state
from faujax.graph import dynamic_graph


def ref_topk(x, k, metric='dot'):
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  if metric == 'cosine':
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
  s = np.array([[x[i] @ x[j] for j in range(n)] for i in range(n)])
  a = np.zeros((n, n))
  for i in range(n):
    kth = sorted(s[i], reverse=True)[k - 1]
    for j in range(n):
      a[i, j] = 1.0 if s[i, j] >= kth else 0.0
  return a


def ref_message(params, x, k, metric='dot'):
  """A' V x + U x with A' = D^-1/2 A D^-1/2 (row degrees), per node."""
  p = {n: np.asarray(v, np.float64) for n, v in params.items()}
  x = np.asarray(x, np.float64)
  a = ref_topk(x, k, metric)
  n = x.shape[0]
  deg = a.sum(1)
  out = np.zeros_like(x)
  for i in range(n):
    out[i] = x[i] @ p['U_kernel'] + p['U_bias']
    for j in range(n):
      if a[i, j]:
        out[i] += a[i, j] / np.sqrt(deg[i] * deg[j]) * (x[j] @ p['V_kernel'] + p['V_bias'])
  return out


def ref_layer_train(params, x, k, eps=1e-5):
  """Full layer with batch statistics per node over (batch, channels)."""
  b, n, c = x.shape
  h = np.stack([ref_message(params, x[i], k) for i in range(b)])
  out = np.zeros_like(h)
  means, variances = np.zeros(n), np.zeros(n)
  for node in range(n):
    vals = h[:, node, :].ravel()
    means[node], variances[node] = vals.mean(), vals.var()
    normed = (h[:, node, :] - vals.mean()) / np.sqrt(vals.var() + eps)
    out[:, node, :] = normed * float(params['bn_scale'][node]) + float(params['bn_bias'][node])
  return np.maximum(np.asarray(x, np.float64) + out, 0), means, variances


@pytest.mark.parametrize('metric', ['dot', 'cosine'])
@pytest.mark.parametrize('k', [1, 3, 6])
def test_topk_adjacency_matches_reference(metric, k):
  x = np.random.default_rng(k).normal(size=(6, 5)).astype(np.float32)
  got = np.asarray(graph.topk_adjacency(jnp.asarray(x), k, metric=metric))
  want = ref_topk(x, k, metric)
  np.testing.assert_array_equal(got, want)
  assert np.all(got.sum(1) >= k)


def test_topk_ties_add_neighbours_and_self_is_included_for_cosine():
  x = jnp.asarray([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
  a = np.asarray(graph.topk_adjacency(x, 1, metric='cosine'))
  # nodes 0, 1, 3 are identical directions: ties at the top give all three.
  np.testing.assert_array_equal(a[0], [1, 1, 0, 1])
  np.testing.assert_array_equal(a[2], [0, 0, 1, 0])
  with pytest.raises(ValueError, match='k must be'):
    graph.topk_adjacency(x, 5)
  with pytest.raises(ValueError, match='metric'):
    graph.topk_adjacency(x, 2, metric='l2')


def test_similarity_is_stop_gradient():
  x = jnp.ones((4, 3))
  g = jax.grad(lambda v: jnp.sum(graph.similarity(v)))(x)
  assert np.all(np.asarray(g) == 0)


def test_message_matches_loop_reference():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 4)).astype(np.float32)
  params = graph.dynamic_graph_init(jax.random.key(0), 6, 4)
  got = np.asarray(graph.dynamic_graph_message(params, x, k=3))
  for b in range(2):
    np.testing.assert_allclose(got[b], ref_message(params, x[b], 3), rtol=1e-5, atol=1e-5)


def test_layer_train_and_eval_match_reference():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 5, 4)).astype(np.float32)
  params = graph.dynamic_graph_init(jax.random.key(1), 5, 4)
  params['bn_scale'] = jnp.asarray(rng.uniform(0.5, 1.5, 5), jnp.float32)
  params['bn_bias'] = jnp.asarray(rng.normal(size=5), jnp.float32)
  stats = graph.dynamic_graph_batch_stats_init(5)
  out, new_stats = graph.dynamic_graph_apply(params, x, k=2, batch_stats=stats, train=True)
  want, means, variances = ref_layer_train(params, x, 2)
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(new_stats['mean']), 0.1 * means, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(new_stats['var']), 0.9 + 0.1 * variances, rtol=1e-5,
                             atol=1e-5)
  # Eval with running stats equal to the batch statistics reproduces the train output.
  out_eval, _ = graph.dynamic_graph_apply(
      params, x, k=2, batch_stats={'mean': jnp.asarray(means, jnp.float32),
                                   'var': jnp.asarray(variances, jnp.float32)})
  np.testing.assert_allclose(np.asarray(out_eval), want, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match='batch_stats'):
    graph.dynamic_graph_apply(params, x, k=2)


def _pure_params(variables):
  """The NNX layer's params as ``dynamic_graph_apply``'s flat dict (bn/scale -> bn_scale)."""
  params = dict(variables['params'])
  bn = params.pop('bn')
  params.update(bn_scale=bn['scale'], bn_bias=bn['bias'])
  return params


def test_nnx_layer_matches_pure_function():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(4, 5, 3)), jnp.float32)
  module = graph.DynamicGraphLayer(5, 3, k=2, rngs=nnx.Rngs(0))
  assert isinstance(module.bn, layers.BatchNorm) and module.bn.feature_axes == -2
  variables = model_state.variables(module)
  assert variables['params']['bn']['scale'].shape == (5,)  # BN features = nodes
  assert set(variables['params']) == {'U_kernel', 'U_bias', 'V_kernel', 'V_bias', 'bn'}
  # Non-trivial BN affine parameters, so that a swapped scale / bias would show.
  variables['params']['bn']['scale'] = jnp.asarray(rng.uniform(0.5, 1.5, 5), jnp.float32)
  variables['params']['bn']['bias'] = jnp.asarray(rng.normal(size=5), jnp.float32)
  model_state.load_variables(module, variables)
  params = _pure_params(variables)
  out = module(x, train=True)
  updated = model_state.variables(module)['batch_stats']['bn']
  want, stats = graph.dynamic_graph_apply(params, x, k=2, train=True,
                                          batch_stats=graph.dynamic_graph_batch_stats_init(5))
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out), ref_layer_train(params, np.asarray(x), 2)[0],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(updated['mean']), np.asarray(stats['mean']), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(updated['var']), np.asarray(stats['var']), rtol=1e-4,
                             atol=1e-5)
  # Eval normalises with the running statistics the train call left in the module.
  eval_out = module(x, train=False)
  want_eval, same = graph.dynamic_graph_apply(params, x, k=2, batch_stats=stats)
  np.testing.assert_allclose(np.asarray(eval_out), np.asarray(want_eval), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(same['mean']), np.asarray(stats['mean']))
  with pytest.raises(ValueError, match='k must be'):
    graph.DynamicGraphLayer(5, 3, k=6, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='metric'):
    graph.DynamicGraphLayer(5, 3, k=2, metric='l2', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'\(\.\.\., 5, C\)'):
    module(jnp.ones((2, 4, 3)), train=False)


def test_dynamic_graph_apply_syncs_batch_norm_over_axis_name():
  """The functional norm is faujax.layers.batch_norm: statistics averaged over a mapped axis."""
  assert not hasattr(dynamic_graph, 'node_batch_norm')   # one BatchNorm in the code base
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(2, 3, 4, 5)), jnp.float32)  # 2 "devices"
  params = graph.dynamic_graph_init(jax.random.key(3), 4, 5)
  stats = graph.dynamic_graph_batch_stats_init(4)
  synced, synced_stats = jax.vmap(
      lambda v: graph.dynamic_graph_apply(params, v, k=2, batch_stats=stats, train=True,
                                          axis_name='d'), axis_name='d')(x)
  full, full_stats = graph.dynamic_graph_apply(params, x.reshape(6, 4, 5), k=2,
                                               batch_stats=stats, train=True)
  np.testing.assert_allclose(np.asarray(synced).reshape(6, 4, 5), np.asarray(full), atol=1e-5)
  for key in ('mean', 'var'):
    np.testing.assert_allclose(np.asarray(synced_stats[key][0]), np.asarray(full_stats[key]),
                               atol=1e-5)
  unsynced = jax.vmap(lambda v: graph.dynamic_graph_apply(params, v, k=2, train=True)[0])(x)
  assert not np.allclose(np.asarray(unsynced).reshape(6, 4, 5), np.asarray(full), atol=1e-4)

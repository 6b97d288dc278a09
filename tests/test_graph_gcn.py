"""Tests of faujax.graph.gcn and faujax.graph.adjacency against plain-loop references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import graph
from faujax import model_state
from faujax import relations


def ref_normalize(a: np.ndarray, method: str) -> np.ndarray:
  """Loop reference of every normalisation on one (N, N) matrix."""
  n = len(a)
  a = np.array(a, np.float64)
  if method == 'none':
    return a
  if method == 'kipf':
    a = a + np.eye(n)
  if method == 'kipf_remaining':  # a weight-1 loop only where the node has none
    for i in range(n):
      if a[i, i] == 0:
        a[i, i] = 1.0
  deg = [sum(a[i, j] for j in range(n)) for i in range(n)]
  out = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      if method == 'row':
        out[i, j] = a[i, j] / deg[i] if deg[i] > 0 else 0.0
      elif method in ('kipf', 'kipf_remaining', 'sym'):
        out[i, j] = a[i, j] / np.sqrt(deg[i] * deg[j]) if deg[i] > 0 and deg[j] > 0 else 0.0
      elif method == 'mlgcn':
        out[i, j] = a[j, i] / np.sqrt(deg[i] * deg[j]) if deg[i] > 0 and deg[j] > 0 else 0.0
  return out


def ref_gcn(params, x, a, method):
  a_hat = ref_normalize(a, method)
  w = np.asarray(params['kernel'], np.float64)
  n = x.shape[0]
  out = np.zeros((n, w.shape[1]))
  for i in range(n):
    for j in range(n):
      out[i] += a_hat[i, j] * (np.asarray(x[j], np.float64) @ w)
    if 'bias' in params:
      out[i] += np.asarray(params['bias'])
  return out


def random_graph(rng: np.random.Generator, n: int, isolated: int | None = None) -> np.ndarray:
  a = (rng.random((n, n)) < 0.4).astype(np.float32) * rng.uniform(0.5, 2.0, (n, n))
  if isolated is not None:
    a[isolated, :] = 0
    a[:, isolated] = 0
  return a.astype(np.float32)


@pytest.mark.parametrize('method', graph.NORMALIZATIONS)
def test_normalize_matches_reference_and_handles_isolated_nodes(method):
  rng = np.random.default_rng(0)
  a = random_graph(rng, 6, isolated=2)
  got = np.asarray(graph.normalize_adjacency(jnp.asarray(a), method))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, ref_normalize(a, method), atol=1e-6)
  if method in ('row', 'sym', 'mlgcn'):
    assert np.all(got[2] == 0)
  if method == 'mlgcn':
    np.testing.assert_allclose(got, relations.mlgcn_normalize(a), atol=1e-6)
  if method == 'row':
    sums = got.sum(1)
    np.testing.assert_allclose(sums[np.arange(6) != 2], 1.0, atol=1e-6)


def ref_pyg_gcn_norm(a: np.ndarray) -> np.ndarray:
  """PyG's GCNConv normalisation written over an edge list, as PyG computes it.

  Edges ``j -> i`` with weight ``a[i, j]`` (row = receiving node, PyG's ``source_to_target``
  flow); ``add_remaining_self_loops``: every node without a loop gets one of weight 1, existing
  loops keep their weight; ``gcn_norm``: ``deg[i] = sum of the weights of the edges into i``,
  ``w'(j -> i) = deg[j]^-1/2 w deg[i]^-1/2``; the dense result has ``w'`` at ``[i, j]``.
  """
  n = len(a)
  edges = [(j, i, float(a[i, j])) for i in range(n) for j in range(n) if a[i, j] != 0]
  looped = {i for (j, i, _) in edges if i == j}
  edges += [(i, i, 1.0) for i in range(n) if i not in looped]
  deg = np.zeros(n)
  for _, i, w in edges:
    deg[i] += w
  out = np.zeros((n, n))
  for j, i, w in edges:
    out[i, j] += w / np.sqrt(deg[j] * deg[i])
  return out


def test_kipf_remaining_is_pyg_add_remaining_self_loops():
  """Parity switch (PyG's convention): loops only where missing; existing loop weights kept."""
  rng = np.random.default_rng(5)
  a = random_graph(rng, 6, isolated=5)
  np.fill_diagonal(a, 0.0)
  a[0, 0], a[2, 2], a[3, 3] = 2.5, 0.3, 1.0   # some nodes already have loops, weights != 1
  got = np.asarray(graph.normalize_adjacency(jnp.asarray(a), 'kipf_remaining'))
  want = ref_pyg_gcn_norm(a)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(got, ref_normalize(a, 'kipf_remaining'), atol=1e-6)
  # It differs from 'kipf' (which adds 1 to every loop) exactly on the looped rows / columns.
  kipf = np.asarray(graph.normalize_adjacency(jnp.asarray(a), 'kipf'))
  assert not np.allclose(got[0], kipf[0], atol=1e-4)
  assert got[0, 0] == pytest.approx(2.5 / a[0].sum(), rel=1e-6)
  # The isolated node 5 gets only its own weight-1 loop.
  np.testing.assert_allclose(got[5], np.eye(6)[5], atol=1e-7)
  # Without self-loops in A the two conventions agree.
  b = random_graph(rng, 5)
  np.fill_diagonal(b, 0.0)
  np.testing.assert_allclose(np.asarray(graph.normalize_adjacency(jnp.asarray(b),
                                                                  'kipf_remaining')),
                             np.asarray(graph.normalize_adjacency(jnp.asarray(b), 'kipf')),
                             atol=1e-6)
  # Batched (per-sample) graphs, a GCN layer and gradients through the switch.
  stack = np.stack([a, np.pad(b, ((0, 1), (0, 1)))])
  batched = np.asarray(graph.normalize_adjacency(jnp.asarray(stack), 'kipf_remaining'))
  for k in range(2):
    np.testing.assert_allclose(batched[k], ref_pyg_gcn_norm(stack[k]), rtol=1e-6, atol=1e-6)
  x = rng.normal(size=(6, 3)).astype(np.float32)
  params = graph.gcn_init(jax.random.key(5), 3, 2)
  out = graph.gcn_apply(params, jnp.asarray(x), jnp.asarray(a), normalization='kipf_remaining')
  np.testing.assert_allclose(np.asarray(out), want @ (x.astype(np.float64)
                                                     @ np.asarray(params['kernel'], np.float64)),
                             rtol=1e-5, atol=1e-5)
  g = jax.grad(lambda m: jnp.sum(graph.normalize_adjacency(m, 'kipf_remaining') ** 2))(
      jnp.asarray(a))
  assert np.all(np.isfinite(np.asarray(g)))


def test_normalize_batched_adjacency():
  rng = np.random.default_rng(1)
  a = np.stack([random_graph(rng, 5) for _ in range(3)])
  got = np.asarray(graph.normalize_adjacency(jnp.asarray(a), 'kipf'))
  for b in range(3):
    np.testing.assert_allclose(got[b], ref_normalize(a[b], 'kipf'), atol=1e-6)


def test_normalize_rejects_bad_input():
  with pytest.raises(ValueError, match='method'):
    graph.normalize_adjacency(jnp.eye(3), 'bogus')
  with pytest.raises(ValueError, match='adj'):
    graph.normalize_adjacency(jnp.ones((3, 4)), 'kipf')


@pytest.mark.parametrize('method', graph.NORMALIZATIONS)
@pytest.mark.parametrize('use_bias', [False, True])
def test_gcn_matches_loop_reference(method, use_bias):
  rng = np.random.default_rng(2)
  a = random_graph(rng, 7, isolated=4)
  x = rng.normal(size=(7, 5)).astype(np.float32)
  params = graph.gcn_init(jax.random.key(0), 5, 3, use_bias=use_bias, init='uniform_out')
  if use_bias:
    params['bias'] = jnp.asarray(rng.normal(size=3), jnp.float32)
  got = graph.gcn_apply(params, jnp.asarray(x), jnp.asarray(a), normalization=method)
  np.testing.assert_allclose(np.asarray(got), ref_gcn(params, x, a, method), rtol=1e-5, atol=1e-5)


def test_gcn_batched_features_and_per_sample_adjacency():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 3, 6, 4)).astype(np.float32)
  a_shared = random_graph(rng, 6)
  a_per = np.stack([random_graph(rng, 6) for _ in range(3)])  # broadcast over dim 0
  params = graph.gcn_init(jax.random.key(1), 4, 2)
  got = np.asarray(graph.gcn_apply(params, x, a_shared))
  got_per = np.asarray(graph.gcn_apply(params, x, a_per))
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(got[i, j], ref_gcn(params, x[i, j], a_shared, 'kipf'),
                                 rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(got_per[i, j], ref_gcn(params, x[i, j], a_per[j], 'kipf'),
                                 rtol=1e-5, atol=1e-5)


def test_gcn_init_schemes():
  p = graph.gcn_init(jax.random.key(0), 300, 512, init='uniform_out', use_bias=True)
  assert p['kernel'].shape == (300, 512) and p['kernel'].dtype == jnp.float32
  assert float(jnp.max(jnp.abs(p['kernel']))) <= 1 / np.sqrt(512)
  g = graph.gcn_init(jax.random.key(0), 300, 512)
  assert 'bias' not in g
  assert float(jnp.max(jnp.abs(g['kernel']))) <= np.sqrt(6 / 812)
  assert float(jnp.std(g['kernel'])) == pytest.approx(np.sqrt(2 / 812), rel=0.05)
  with pytest.raises(ValueError, match='init'):
    graph.gcn_init(jax.random.key(0), 3, 3, init='he')


def test_gcn_rejects_mismatched_shapes():
  params = graph.gcn_init(jax.random.key(0), 4, 2)
  with pytest.raises(ValueError, match='channels'):
    graph.gcn_apply(params, jnp.ones((5, 3)), jnp.eye(5))
  with pytest.raises(ValueError, match='nodes'):
    graph.gcn_apply(params, jnp.ones((5, 4)), jnp.eye(6))


def test_graph_conv_module_uses_the_same_params():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.float32)
  a = jnp.asarray(random_graph(rng, 5))
  module = graph.GraphConv(4, 3, normalization='mlgcn', use_bias=True, initializer='uniform_out',
                           rngs=nnx.Rngs(0))
  params = model_state.variables(module)['params']
  assert set(params) == {'kernel', 'bias'} and params['kernel'].shape == (4, 3)
  assert float(jnp.max(jnp.abs(params['kernel']))) <= 1 / np.sqrt(3)   # the chosen init
  np.testing.assert_allclose(
      np.asarray(module(x, a)),
      np.asarray(graph.gcn_apply(params, x, a, normalization='mlgcn')), atol=1e-6)
  np.testing.assert_allclose(np.asarray(module(x, a))[1],
                             ref_gcn(params, np.asarray(x[1]), np.asarray(a), 'mlgcn'),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='normalization'):
    graph.GraphConv(4, 3, normalization='bogus', rngs=nnx.Rngs(0))

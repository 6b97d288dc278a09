"""Tests of the additive GAT and the MGRR-Net dot-product attention against loop references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import graph
from faujax import model_state


def neighbours_of(adj, i, n):
  if adj is None:
    return list(range(n))
  return sorted(set(j for j in range(n) if adj[i, j] != 0) | {i})


def ref_gat(params, x, adj, concat=True, slope=0.2):
  x = np.asarray(x, np.float64)
  w = np.asarray(params['kernel'], np.float64)  # (C, H, F)
  a_src = np.asarray(params['att_src'], np.float64)
  a_dst = np.asarray(params['att_dst'], np.float64)
  n, heads, f = x.shape[0], w.shape[1], w.shape[2]
  out = np.zeros((n, heads, f))
  for h in range(heads):
    z = x @ w[:, h, :]
    for i in range(n):
      nb = neighbours_of(adj, i, n)
      scores = []
      for j in nb:
        e = a_src[h] @ z[j] + a_dst[h] @ z[i]
        scores.append(e if e > 0 else slope * e)
      scores = np.exp(np.array(scores) - max(scores))
      alpha = scores / scores.sum()
      for a, j in zip(alpha, nb):
        out[i, h] += a * z[j]
  out = out.reshape(n, heads * f) if concat else out.mean(1)
  if 'bias' in params:
    out = out + np.asarray(params['bias'])
  return out


def ref_dot(params, x, adj, heads, activation=True):
  x = np.asarray(x, np.float64)
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  lin = lambda v, name: v @ p[name] + p.get(name + '_bias', 0.0)
  q, k, v = lin(x, 'query'), lin(x, 'key'), lin(x, 'value')
  n, hidden = q.shape
  d = hidden // heads
  concat = np.zeros((n, hidden))
  for h in range(heads):
    sl = slice(h * d, (h + 1) * d)
    for i in range(n):
      nb = neighbours_of(adj, i, n)
      s = np.array([q[i, sl] @ k[j, sl] / np.sqrt(d) for j in nb])
      e = np.exp(s - s.max())
      alpha = e / e.sum()
      for a, j in zip(alpha, nb):
        concat[i, sl] += a * v[j, sl]
  out = lin(concat, 'output')
  return np.maximum(out, 0) if activation else out


def sparse_graph(rng, n):
  a = (rng.random((n, n)) < 0.3).astype(np.float32)
  a[2, :] = 0
  a[:, 2] = 0  # isolated node: attends only to itself
  return a


@pytest.mark.parametrize('concat', [True, False])
@pytest.mark.parametrize('use_adj', [True, False])
def test_gat_matches_loop_reference(concat, use_adj):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 4)).astype(np.float32)
  adj = sparse_graph(rng, 6) if use_adj else None
  params = graph.gat_init(jax.random.key(0), 4, 3, num_heads=2, concat=concat)
  params['bias'] = jnp.asarray(rng.normal(size=params['bias'].shape), jnp.float32)
  got = graph.gat_apply(params, jnp.asarray(x), None if adj is None else jnp.asarray(adj),
                        concat=concat)
  np.testing.assert_allclose(np.asarray(got), ref_gat(params, x, adj, concat), rtol=1e-5,
                             atol=1e-5)


def test_gat_isolated_node_and_batched_adjacency():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 5, 4)).astype(np.float32)
  adj = np.stack([sparse_graph(rng, 5) for _ in range(3)])
  params = graph.gat_init(jax.random.key(1), 4, 2, num_heads=3, use_bias=False)
  got = np.asarray(graph.gat_apply(params, x, adj))
  for b in range(3):
    np.testing.assert_allclose(got[b], ref_gat(params, x[b], adj[b]), rtol=1e-5, atol=1e-5)
  # The isolated node 2 only sees itself: its output is its own projection.
  z = np.einsum('c,chf->hf', x[0, 2], np.asarray(params['kernel'])).reshape(-1)
  np.testing.assert_allclose(got[0, 2], z, rtol=1e-5, atol=1e-5)


def test_gat_attention_dropout():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  params = graph.gat_init(jax.random.key(2), 4, 3, num_heads=2)
  det = graph.gat_apply(params, x, dropout_rate=0.5)
  a = graph.gat_apply(params, x, dropout_rate=0.5, rng=jax.random.key(0), deterministic=False)
  b = graph.gat_apply(params, x, dropout_rate=0.5, rng=jax.random.key(1), deterministic=False)
  assert not np.allclose(np.asarray(a), np.asarray(det))
  assert not np.allclose(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match='rng'):
    graph.gat_apply(params, x, dropout_rate=0.5, deterministic=False)
  module = graph.GraphAttention(4, 3, num_heads=2, dropout_rate=0.5, rngs=nnx.Rngs(0))
  p = model_state.variables(module)['params']
  out = module(x, train=True, rngs=nnx.Rngs(dropout=3))
  assert out.shape == (5, 6)
  # The wrapper draws its key from the call-time 'dropout' stream: same key, same mask.
  np.testing.assert_allclose(
      np.asarray(out), np.asarray(graph.gat_apply(p, x, dropout_rate=0.5,
                                                  rng=nnx.Rngs(dropout=3).dropout(),
                                                  deterministic=False)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(module(x, train=False)),
                             np.asarray(graph.gat_apply(p, x)), atol=1e-6)
  assert not np.allclose(np.asarray(out), np.asarray(module(x, train=False)))
  with pytest.raises(ValueError, match='rngs'):
    module(x, train=True)


@pytest.mark.parametrize('use_adj', [True, False])
@pytest.mark.parametrize('use_bias', [True, False])
def test_dot_attention_matches_loop_reference(use_adj, use_bias):
  rng = np.random.default_rng(3)
  x = rng.normal(size=(7, 6)).astype(np.float32)
  adj = sparse_graph(rng, 7) if use_adj else None
  params = graph.dot_attention_init(jax.random.key(3), 6, 5, hidden_dim=8, num_heads=4,
                                    use_bias=use_bias)
  got = graph.dot_attention_apply(params, jnp.asarray(x), adj, num_heads=4)
  np.testing.assert_allclose(np.asarray(got), ref_dot(params, x, adj, 4), rtol=1e-5, atol=1e-5)
  lin = graph.dot_attention_apply(params, jnp.asarray(x), adj, num_heads=4, activation=None)
  np.testing.assert_allclose(np.asarray(lin), ref_dot(params, x, adj, 4, False), rtol=1e-5,
                             atol=1e-5)


def test_dot_attention_batched_and_errors():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 5, 4)).astype(np.float32)
  params = graph.dot_attention_init(jax.random.key(4), 4, 3, hidden_dim=6, num_heads=2)
  got = np.asarray(graph.dot_attention_apply(params, x, num_heads=2))
  for b in range(2):
    np.testing.assert_allclose(got[b], ref_dot(params, x[b], None, 2), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='divisible'):
    graph.dot_attention_init(jax.random.key(0), 4, 3, hidden_dim=6, num_heads=4)
  with pytest.raises(ValueError, match='num_heads'):
    graph.dot_attention_apply(params, x, num_heads=4)


def test_attention_modules_use_the_same_params():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.float32)
  adj = jnp.asarray(sparse_graph(rng, 5))
  gat = graph.GraphAttention(4, 3, num_heads=2, concat=False, rngs=nnx.Rngs(0))
  p = model_state.variables(gat)['params']
  assert set(p) == {'kernel', 'att_src', 'att_dst', 'bias'} and p['bias'].shape == (3,)
  np.testing.assert_allclose(np.asarray(gat(x, adj, train=False)),
                             np.asarray(graph.gat_apply(p, x, adj, concat=False)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(gat(x, adj, train=False))[0],
                             ref_gat(p, np.asarray(x[0]), np.asarray(adj), concat=False),
                             rtol=1e-5, atol=1e-5)
  dot = graph.DotProductGraphAttention(4, 3, hidden_dim=8, num_heads=2, rngs=nnx.Rngs(0))
  p = model_state.variables(dot)['params']
  assert set(p) == {'query', 'key', 'value', 'output', 'query_bias', 'key_bias',
                    'value_bias', 'output_bias'}
  np.testing.assert_allclose(np.asarray(dot(x, adj, train=False)),
                             np.asarray(graph.dot_attention_apply(p, x, adj, num_heads=2)),
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(dot(x, adj, train=False))[1],
                             ref_dot(p, np.asarray(x[1]), np.asarray(adj), 2), rtol=1e-5,
                             atol=1e-5)
  # Attention dropout of the dot-product layer uses the call-time 'dropout' stream too.
  drop = graph.DotProductGraphAttention(4, 3, hidden_dim=8, num_heads=2, dropout_rate=0.5,
                                        rngs=nnx.Rngs(0))
  a = drop(x, adj, train=True, rngs=nnx.Rngs(dropout=0))
  b = drop(x, adj, train=True, rngs=nnx.Rngs(dropout=1))
  assert not np.allclose(np.asarray(a), np.asarray(b))
  np.testing.assert_allclose(np.asarray(drop(x, adj, train=False)),
                             np.asarray(dot(x, adj, train=False)), atol=1e-6)   # same seed

"""Tests of faujax.graph.rgcn (SVML-RGCN eq. 7) against a plain-loop reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import graph
from faujax import model_state


def ref_rgcn(params, x, rel, activation=None):
  """h_i' = act(sum_r sum_{j in N_i^r} A_r[i,j] W_r h_j / |N_i^r| + W_0 h_i + b)."""
  x = np.asarray(x, np.float64)
  if 'kernel' in params:
    kernels = np.asarray(params['kernel'], np.float64)
  else:
    coeff = np.asarray(params['coefficients'], np.float64)
    basis = np.asarray(params['basis'], np.float64)
    kernels = np.zeros((coeff.shape[0],) + basis.shape[1:])
    for r in range(coeff.shape[0]):
      for b in range(coeff.shape[1]):
        kernels[r] += coeff[r, b] * basis[b]
  w0 = np.asarray(params['self_kernel'], np.float64)
  n = x.shape[0]
  out = np.zeros((n, w0.shape[1]))
  for i in range(n):
    out[i] = x[i] @ w0
    for r in range(rel.shape[0]):
      neighbours = [j for j in range(n) if rel[r, i, j] != 0]
      for j in neighbours:
        out[i] += rel[r, i, j] * (x[j] @ kernels[r]) / len(neighbours)
    if 'bias' in params:
      out[i] += np.asarray(params['bias'])
  return out if activation is None else activation(out)


def relation_stack(rng, r, n):
  rel = (rng.random((r, n, n)) < 0.35).astype(np.float32)
  rel[0, 1, :] = 0  # node 1 has no neighbour under relation 0
  rel[:, 3, :] = 0  # node 3 has no neighbour at all
  rel[:, :, 3] = 0
  return rel


@pytest.mark.parametrize('num_bases', [None, 2])
@pytest.mark.parametrize('use_bias', [False, True])
def test_rgcn_matches_loop_reference(num_bases, use_bias):
  rng = np.random.default_rng(0)
  rel = relation_stack(rng, 3, 6)
  x = rng.normal(size=(6, 5)).astype(np.float32)
  params = graph.rgcn_init(jax.random.key(0), 5, 4, 3, num_bases=num_bases, use_bias=use_bias)
  if use_bias:
    params['bias'] = jnp.asarray(rng.normal(size=4), jnp.float32)
  got = np.asarray(graph.rgcn_apply(params, jnp.asarray(x), jnp.asarray(rel)))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, ref_rgcn(params, x, rel), rtol=1e-5, atol=1e-5)


def test_rgcn_weighted_edges_and_activation():
  rng = np.random.default_rng(1)
  rel = relation_stack(rng, 2, 5) * rng.uniform(0.5, 2.0, (2, 5, 5)).astype(np.float32)
  x = rng.normal(size=(5, 3)).astype(np.float32)
  params = graph.rgcn_init(jax.random.key(1), 3, 2, 2)
  got = graph.rgcn_apply(params, x, rel, activation=jax.nn.relu)
  want = ref_rgcn(params, x, rel, activation=lambda v: np.maximum(v, 0))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_rgcn_isolated_node_gets_only_self_term_and_finite_grads():
  rng = np.random.default_rng(2)
  rel = relation_stack(rng, 2, 5)
  x = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  params = graph.rgcn_init(jax.random.key(2), 3, 4, 2)
  out = graph.rgcn_apply(params, x, rel)
  np.testing.assert_allclose(np.asarray(out[3]), np.asarray(x[3] @ params['self_kernel']),
                             atol=1e-6)
  grads = jax.grad(lambda p, v: jnp.sum(graph.rgcn_apply(p, v, rel) ** 2), argnums=(0, 1))(
      params, x)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def test_rgcn_batched_per_sample_relations():
  rng = np.random.default_rng(3)
  rel = np.stack([relation_stack(rng, 2, 4) for _ in range(3)])  # (B, R, N, N)
  x = rng.normal(size=(3, 4, 2)).astype(np.float32)
  params = graph.rgcn_init(jax.random.key(3), 2, 2, 2)
  got = np.asarray(graph.rgcn_apply(params, x, rel))
  for b in range(3):
    np.testing.assert_allclose(got[b], ref_rgcn(params, x[b], rel[b]), rtol=1e-5, atol=1e-5)


def test_rgcn_rejects_wrong_relation_count():
  params = graph.rgcn_init(jax.random.key(0), 2, 2, 3)
  with pytest.raises(ValueError, match='relations'):
    graph.rgcn_apply(params, jnp.ones((4, 2)), jnp.ones((2, 4, 4)))
  with pytest.raises(ValueError, match='num_bases'):
    graph.rgcn_init(jax.random.key(0), 2, 2, 3, num_bases=0)


def test_relational_graph_conv_module():
  rng = np.random.default_rng(4)
  rel = jnp.asarray(relation_stack(rng, 2, 5))
  x = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  module = graph.RelationalGraphConv(3, 4, 2, num_bases=1, activation=jax.nn.relu,
                                     rngs=nnx.Rngs(0))
  params = model_state.variables(module)['params']
  assert set(params) == {'self_kernel', 'basis', 'coefficients'}
  assert params['basis'].shape == (1, 3, 4) and params['coefficients'].shape == (2, 1)
  np.testing.assert_allclose(
      np.asarray(module(x, rel)),
      np.asarray(graph.rgcn_apply(params, x, rel, activation=jax.nn.relu)), atol=1e-6)
  np.testing.assert_allclose(
      np.asarray(module(x, rel))[1],
      ref_rgcn(params, np.asarray(x[1]), np.asarray(rel), activation=lambda v: np.maximum(v, 0)),
      rtol=1e-5, atol=1e-5)

"""Tests of the MGRR-Net prior-initialised graph (eq. 5), gated fusion (eq. 7-8) and MFB
(SVML-RGCN eq. 6) against plain-loop references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import graph
from faujax import model_state
from faujax import relations


def ref_prior_graph(params, x):
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  w = lambda i: p['kernel'][i] if p['kernel'].ndim == 3 else p['kernel']
  out = np.zeros((n, w(0).shape[1]))
  for i in range(n):
    out[i] = x[i] @ w(i)
    for j in range(n):
      out[i] += p['adjacency'][i, j] * (x[j] @ w(j))
    if 'bias' in p:
      out[i] += p['bias']
  return out


def ref_l2(v):
  norm = np.sqrt(sum(t * t for t in v))
  return v / max(norm, 1e-12)


def ref_gfc(params, a, b):
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  out = np.zeros((a.shape[0], p['kernel_a'].shape[1]))
  for i in range(a.shape[0]):
    pa = ref_l2(a[i] @ p['kernel_a'] + p.get('bias_a', 0.0))
    pb = ref_l2(b[i] @ p['kernel_b'] + p.get('bias_b', 0.0))
    beta = 1 / (1 + np.exp(-(a[i] @ p['gate_a'] + b[i] @ p['gate_b'] + p.get('gate_bias', 0.0))))
    out[i] = beta * pa + (1 - beta) * pb
  return out


def ref_mfb(params, x, y, k):
  p = {n: np.asarray(v, np.float64) for n, v in params.items()}
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  rows = []
  for i in range(x.shape[0]):
    z = ((x[i] @ p['kernel_x'] + p.get('bias_x', 0.0))
         * (y[i] @ p['kernel_y'] + p.get('bias_y', 0.0)))
    o = len(z) // k
    pooled = np.array([sum(z[g * k + t] for t in range(k)) for g in range(o)])
    powered = np.array([np.sign(v) * (np.sqrt(abs(v) + 1e-8) - 1e-4) for v in pooled])
    rows.append(ref_l2(powered))
  return np.stack(rows)


@pytest.mark.parametrize('per_node', [True, False])
@pytest.mark.parametrize('use_bias', [True, False])
def test_prior_graph_matches_reference(per_node, use_bias):
  rng = np.random.default_rng(0)
  labels = (rng.random((40, 5)) < 0.4).astype(np.int64)
  prior = relations.mgrr_prior(labels)
  x = rng.normal(size=(5, 4)).astype(np.float32)
  params = graph.prior_graph_init(jax.random.key(0), prior, 4, 3, per_node=per_node,
                                  use_bias=use_bias)
  np.testing.assert_allclose(np.asarray(params['adjacency']), prior, atol=1e-7)
  if use_bias:
    params['bias'] = jnp.asarray(rng.normal(size=3), jnp.float32)
  got = graph.prior_graph_apply(params, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(got), ref_prior_graph(params, x), rtol=1e-5, atol=1e-5)


def test_prior_graph_adjacency_is_learnable():
  prior = np.eye(4) * 0.5
  params = graph.prior_graph_init(jax.random.key(0), prior, 3, 2)
  x = jnp.ones((2, 4, 3))
  grads = jax.grad(lambda p: jnp.sum(graph.prior_graph_apply(p, x) ** 2))(params)
  assert float(jnp.abs(grads['adjacency']).sum()) > 0
  module = graph.PriorGraphConv(prior, 3, 2, rngs=nnx.Rngs(0))
  p = model_state.variables(module)['params']
  assert set(p) == {'adjacency', 'kernel'} and p['kernel'].shape == (4, 3, 2)
  np.testing.assert_allclose(np.asarray(p['adjacency']), prior)
  np.testing.assert_allclose(np.asarray(module(x)),
                             np.asarray(graph.prior_graph_apply(p, x)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(module(x))[0], ref_prior_graph(p, np.asarray(x[0])),
                             rtol=1e-5, atol=1e-5)
  # The wrapper's adjacency is an nnx.Param: it gets a gradient.
  graphdef, params = nnx.split(module, nnx.Param)
  g = jax.grad(lambda q: jnp.sum(nnx.merge(graphdef, q)(x) ** 2))(params)
  assert float(jnp.abs(g['adjacency'][...]).sum()) > 0
  with pytest.raises(ValueError, match='nodes'):
    graph.prior_graph_apply(params, jnp.ones((5, 3)))


@pytest.mark.parametrize('use_bias', [True, False])
def test_gated_fusion_matches_reference(use_bias):
  rng = np.random.default_rng(1)
  a = rng.normal(size=(6, 4)).astype(np.float32)
  b = rng.normal(size=(6, 3)).astype(np.float32)
  params = graph.gated_fusion_init(jax.random.key(1), 4, 3, 5, use_bias=use_bias)
  got = graph.gated_fusion_apply(params, jnp.asarray(a), jnp.asarray(b))
  np.testing.assert_allclose(np.asarray(got), ref_gfc(params, a, b), rtol=1e-5, atol=1e-5)


def test_torch_init_of_the_mgrr_layers_draws_within_torchs_bounds():
  """init='torch' (MGRR-Net sec. 4.2): each map U(+-1/sqrt(its own fan-in)); the GFC's gate bias
  is the sum of its two 1 x 1 convolutions' biases, so it reaches beyond either bound."""
  key = jax.random.key(5)
  gfc = graph.gated_fusion_init(key, 16, 64, 256, init='torch')
  for name, fan in (('kernel_a', 16), ('gate_a', 16), ('bias_a', 16), ('kernel_b', 64),
                    ('gate_b', 64), ('bias_b', 64)):
    assert 0.95 / fan ** 0.5 < np.abs(np.asarray(gfc[name])).max() <= 1 / fan ** 0.5, name
  gate = np.abs(np.asarray(gfc['gate_bias'])).max()
  assert 1 / 4 < gate <= 1 / 4 + 1 / 8
  att = graph.dot_attention_init(key, 64, 16, hidden_dim=32, num_heads=4, init='torch')
  assert np.abs(np.asarray(att['query'])).max() <= 1 / 8
  assert np.abs(np.asarray(att['output'])).max() <= 1 / 32 ** 0.5
  prior = graph.prior_graph_init(key, np.eye(3), 25, 4, init='torch')
  assert 0.19 < np.abs(np.asarray(prior['kernel'])).max() <= 1 / 5
  glorot = graph.gated_fusion_init(key, 16, 64, 256)   # the default: Glorot, sqrt(6 / 320)
  assert 1 / 8 < np.abs(np.asarray(glorot['kernel_b'])).max() <= (6 / 320) ** 0.5
  for init_fn in (lambda: graph.gated_fusion_init(key, 4, 4, 4, init='xavier'),
                  lambda: graph.dot_attention_init(key, 4, 4, hidden_dim=8, init='xavier'),
                  lambda: graph.prior_graph_init(key, np.eye(2), 4, 4, init='xavier')):
    with pytest.raises(ValueError, match='kernel init'):
      init_fn()


def test_gated_fusion_on_maps_nests_and_zero_input():
  rng = np.random.default_rng(2)
  maps = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)  # (B, H, W, C): 1x1 conv
  params = graph.gated_fusion_init(jax.random.key(2), 4, 4, 4)
  got = np.asarray(graph.gated_fusion_apply(params, maps, maps[::-1]))
  want = ref_gfc(params, maps.reshape(-1, 4), maps[::-1].reshape(-1, 4)).reshape(2, 3, 3, 4)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  inner = graph.gated_fusion_apply(params, maps, maps)
  outer = graph.gated_fusion_apply(params, maps, inner)  # eq. 6 nesting
  assert outer.shape == maps.shape
  p0 = {k: jnp.zeros_like(v) for k, v in params.items()}
  g = jax.grad(lambda p: jnp.sum(graph.gated_fusion_apply(p, maps, maps)))(p0)
  assert all(np.all(np.isfinite(np.asarray(v))) for v in g.values())
  with pytest.raises(ValueError, match='leading shape'):
    graph.gated_fusion_apply(params, maps, maps[0])


@pytest.mark.parametrize('use_bias', [True, False])
def test_mfb_matches_reference(use_bias):
  rng = np.random.default_rng(3)
  x = rng.normal(size=(6, 7)).astype(np.float32)
  y = rng.normal(size=(6, 5)).astype(np.float32)
  params = graph.mfb_init(jax.random.key(3), 7, 5, 4, 3, use_bias=use_bias)
  assert params['kernel_x'].shape == (7, 12)
  got = np.asarray(graph.mfb_apply(params, jnp.asarray(x), jnp.asarray(y), factor=3))
  np.testing.assert_allclose(got, ref_mfb(params, x, y, 3), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_mfb_dropout_grad_and_module():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(6, 7)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  params = graph.mfb_init(jax.random.key(4), 7, 5, 4, 2)
  zero = {k: jnp.zeros_like(v) for k, v in params.items()}
  g = jax.grad(lambda p: jnp.sum(graph.mfb_apply(p, x, y, factor=2) ** 2))(zero)
  assert all(np.all(np.isfinite(np.asarray(v))) for v in g.values())
  d1 = graph.mfb_apply(params, x, y, factor=2, dropout_rate=0.3, rng=jax.random.key(0),
                       deterministic=False)
  assert not np.allclose(np.asarray(d1), np.asarray(graph.mfb_apply(params, x, y, factor=2)))
  with pytest.raises(ValueError, match='factor'):
    graph.mfb_apply(params, x, y, factor=3)
  module = graph.MFB(7, 5, 4, 2, rngs=nnx.Rngs(0))
  p = model_state.variables(module)['params']
  assert set(p) == {'kernel_x', 'kernel_y', 'bias_x', 'bias_y'} and p['kernel_x'].shape == (7, 8)
  np.testing.assert_allclose(np.asarray(module(x, y, train=False)),
                             np.asarray(graph.mfb_apply(p, x, y, factor=2)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(module(x, y, train=False)), ref_mfb(p, x, y, 2),
                             rtol=1e-5, atol=1e-5)
  drop = graph.MFB(7, 5, 4, 2, dropout_rate=0.3, rngs=nnx.Rngs(0))
  out = drop(x, y, train=True, rngs=nnx.Rngs(dropout=5))
  np.testing.assert_allclose(
      np.asarray(out), np.asarray(graph.mfb_apply(p, x, y, factor=2, dropout_rate=0.3,
                                                  rng=nnx.Rngs(dropout=5).dropout(),
                                                  deterministic=False)), atol=1e-6)
  with pytest.raises(ValueError, match='rngs'):
    drop(x, y, train=True)

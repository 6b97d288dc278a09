"""Every faujax.graph layer under jit, vmap, grad, bfloat16 and pmap (layer table shared with
test_graph_equivariance.py), and every NNX wrapper against its pure function."""

from __future__ import annotations

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from faujax import graph  # noqa: E402
from faujax import model_state  # noqa: E402

N, C = 6, 4


def _layers():
  """name -> (init(rng) -> params, apply(params, x, adj, dtype) -> out)."""
  stats = graph.dynamic_graph_batch_stats_init(N)
  return {
      'gcn_kipf': (lambda r: graph.gcn_init(r, C, 3, use_bias=True),
                   lambda p, x, a, dt: graph.gcn_apply(p, x, a, dtype=dt)),
      'gcn_mlgcn': (lambda r: graph.gcn_init(r, C, 3, init='uniform_out'),
                    lambda p, x, a, dt: graph.gcn_apply(p, x, a, normalization='mlgcn',
                                                        dtype=dt)),
      'rgcn': (lambda r: graph.rgcn_init(r, C, 3, 2, num_bases=2, use_bias=True),
               lambda p, x, a, dt: graph.rgcn_apply(
                   p, x, jnp.stack([a, jnp.swapaxes(a, -1, -2)], axis=-3), dtype=dt)),
      'gat': (lambda r: graph.gat_init(r, C, 3, num_heads=2),
              lambda p, x, a, dt: graph.gat_apply(p, x, a, dtype=dt)),
      'dot_attention': (lambda r: graph.dot_attention_init(r, C, 3, hidden_dim=8, num_heads=2),
                        lambda p, x, a, dt: graph.dot_attention_apply(p, x, a, num_heads=2,
                                                                      dtype=dt)),
      'dynamic_graph': (lambda r: graph.dynamic_graph_init(r, N, C),
                        lambda p, x, a, dt: graph.dynamic_graph_apply(
                            p, x + a[..., :1] * 0, k=3, batch_stats=stats, dtype=dt)[0]),
      'prior_graph': (lambda r: graph.prior_graph_init(r, np.zeros((N, N)), C, 3,
                                                       per_node=False, use_bias=True),
                      lambda p, x, a, dt: graph.prior_graph_apply(dict(p, adjacency=a), x,
                                                                  dtype=dt)),
      'gated_fusion': (lambda r: graph.gated_fusion_init(r, C, C, 3),
                       lambda p, x, a, dt: graph.gated_fusion_apply(p, x, a @ x, dtype=dt)),
      'mfb': (lambda r: graph.mfb_init(r, C, C, 3, 2),
              lambda p, x, a, dt: graph.mfb_apply(p, x, jnp.tanh(x), factor=2, dtype=dt)),
  }


EAGER = _layers()
# The tests call the layers jitted (dtype static): eager dispatch is slow on a shared CPU.
LAYERS = {name: (init, jax.jit(apply, static_argnums=3)) for name, (init, apply) in EAGER.items()}
NAMES = sorted(LAYERS)


def _inputs(seed: int, batch: tuple[int, ...] = ()):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=batch + (N, C)).astype(np.float32)
  a = (rng.random(batch + (N, N)) < 0.4).astype(np.float32)
  a[..., 1, :] = 0  # node 1 is isolated
  a[..., :, 1] = 0
  return jnp.asarray(x), jnp.asarray(a)


@pytest.mark.parametrize('name', NAMES)
def test_jit_matches_eager(name):
  init, apply = EAGER[name]
  params = init(jax.random.key(0))
  x, a = _inputs(0, (2,))
  eager = apply(params, x, a, None)
  jitted = LAYERS[name][1](params, x, a, None)
  assert eager.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', NAMES)
def test_vmap_over_batch_matches_batched_call(name):
  init, apply = LAYERS[name]
  params = init(jax.random.key(1))
  x, a = _inputs(1, (3,))
  mapped = jax.jit(jax.vmap(lambda v, g: EAGER[name][1](params, v, g, None)))(x, a)
  batched = apply(params, x, a, None)
  singles = np.stack([np.asarray(apply(params, x[i], a[i], None)) for i in range(3)])
  np.testing.assert_allclose(np.asarray(mapped), singles, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(batched), singles, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', NAMES)
def test_grads_finite_with_isolated_nodes(name):
  init, apply = LAYERS[name]
  params = init(jax.random.key(2))
  x, a = _inputs(2, (2,))
  loss = lambda p, v: jnp.sum(apply(p, v, a, None) ** 2)
  gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  for leaf in jax.tree.leaves((gp, gx)):
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert any(float(jnp.abs(leaf).sum()) > 0 for leaf in jax.tree.leaves(gp))


@pytest.mark.parametrize('name', NAMES)
def test_bfloat16_compute(name):
  init, apply = LAYERS[name]
  params = init(jax.random.key(3))
  x, a = _inputs(3, (2,))
  full = np.asarray(apply(params, x, a, None))
  half = apply(params, x, a, jnp.bfloat16)
  assert half.dtype == jnp.bfloat16
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  half = np.asarray(half.astype(jnp.float32))
  assert np.all(np.isfinite(half))
  np.testing.assert_allclose(half, full, rtol=0.1, atol=0.1 * max(1.0, np.abs(full).max()))
  g = jax.jit(jax.grad(
      lambda p: jnp.sum(EAGER[name][1](p, x, a, jnp.bfloat16).astype(jnp.float32))))(params)
  assert all(leaf.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(leaf)))
             for leaf in jax.tree.leaves(g))


def _dynamic_pure(variables, x, a):
  params = dict(variables['params'])
  bn = params.pop('bn')
  params.update(bn_scale=bn['scale'], bn_bias=bn['bias'])
  return graph.dynamic_graph_apply(params, x + a[..., :1] * 0, k=3,
                                   batch_stats=variables['batch_stats']['bn'])[0]


def _wrappers():
  """name -> (build(rngs) -> module, call(module, x, adj) -> out, pure(variables, x, adj) -> out).

  ``call`` is the wrapper in eval mode; ``pure`` the same layer's ``<layer>_apply`` with the
  wrapper's variables (``faujax.model_state.variables``).
  """
  prior = np.eye(N) * 0.5 + 0.1
  p = lambda v: v['params']
  rel = lambda a: jnp.stack([a, jnp.swapaxes(a, -1, -2)], axis=-3)
  return {
      'GraphConv': (lambda r: graph.GraphConv(C, 3, use_bias=True, initializer='uniform_out',
                                              rngs=r),
                    lambda m, x, a: m(x, a),
                    lambda v, x, a: graph.gcn_apply(p(v), x, a)),
      'GraphConv_kipf_remaining': (
          lambda r: graph.GraphConv(C, 3, normalization='kipf_remaining', rngs=r),
          lambda m, x, a: m(x, a + jnp.eye(N) * 2.0),
          lambda v, x, a: graph.gcn_apply(p(v), x, a + jnp.eye(N) * 2.0,
                                          normalization='kipf_remaining')),
      'RelationalGraphConv': (
          lambda r: graph.RelationalGraphConv(C, 3, 2, num_bases=2, use_bias=True,
                                              activation=jax.nn.tanh, rngs=r),
          lambda m, x, a: m(x, rel(a)),
          lambda v, x, a: graph.rgcn_apply(p(v), x, rel(a), activation=jax.nn.tanh)),
      'GraphAttention': (lambda r: graph.GraphAttention(C, 3, num_heads=2, rngs=r),
                         lambda m, x, a: m(x, a, train=False),
                         lambda v, x, a: graph.gat_apply(p(v), x, a)),
      'DotProductGraphAttention': (
          lambda r: graph.DotProductGraphAttention(C, 3, hidden_dim=8, num_heads=2, rngs=r),
          lambda m, x, a: m(x, a, train=False),
          lambda v, x, a: graph.dot_attention_apply(p(v), x, a, num_heads=2)),
      'DynamicGraphLayer': (lambda r: graph.DynamicGraphLayer(N, C, k=3, rngs=r),
                            lambda m, x, a: m(x + a[..., :1] * 0, train=False),
                            _dynamic_pure),
      'PriorGraphConv': (lambda r: graph.PriorGraphConv(prior, C, 3, use_bias=True, rngs=r),
                         lambda m, x, a: m(x),
                         lambda v, x, a: graph.prior_graph_apply(p(v), x)),
      'GatedFusionCell': (lambda r: graph.GatedFusionCell(C, C, 3, rngs=r),
                          lambda m, x, a: m(x, a @ x),
                          lambda v, x, a: graph.gated_fusion_apply(p(v), x, a @ x)),
      'MFB': (lambda r: graph.MFB(C, C, 3, 2, rngs=r),
              lambda m, x, a: m(x, jnp.tanh(x), train=False),
              lambda v, x, a: graph.mfb_apply(p(v), x, jnp.tanh(x), factor=2)),
  }


WRAPPERS = _wrappers()
# Softmax over the neighbours is invariant to a per-row constant: q_i . b_key is one, so the key
# bias of the dot-product attention has an exactly zero gradient (as in any attention layer).
ZERO_GRAD = {('DotProductGraphAttention', 'key_bias')}


@pytest.mark.parametrize('name', sorted(WRAPPERS))
def test_wrapper_equals_pure_function_under_jit_and_vmap(name):
  build, call, pure = WRAPPERS[name]
  module = build(nnx.Rngs(7))
  variables = model_state.variables(module)
  assert variables['params'] and all(
      leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables['params']))
  x, a = _inputs(7, (3,))
  want = np.asarray(jax.jit(pure)(variables, x, a))
  np.testing.assert_allclose(np.asarray(call(module, x, a)), want, rtol=1e-5, atol=1e-5)
  graphdef, state = nnx.split(module)
  jitted = jax.jit(lambda s, v, g: call(nnx.merge(graphdef, s), v, g))(state, x, a)
  np.testing.assert_allclose(np.asarray(jitted), want, rtol=1e-5, atol=1e-5)
  mapped = jax.jit(jax.vmap(lambda v, g: call(nnx.merge(graphdef, state), v, g)))(x, a)
  singles = np.stack([np.asarray(jax.jit(pure)(variables, x[i], a[i])) for i in range(3)])
  np.testing.assert_allclose(np.asarray(mapped), singles, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', sorted(WRAPPERS))
def test_wrapper_gradients_finite_and_nonzero(name):
  build, call, _ = WRAPPERS[name]
  module = build(nnx.Rngs(8))
  fn = model_state.ModelFn.from_model(module)
  variables = model_state.variables(module)
  x, a = _inputs(8, (2,))

  def loss(params, v, batch_stats):
    m = fn.module({'params': params, 'batch_stats': batch_stats})
    if name == 'DynamicGraphLayer':   # its train mode: batch statistics in the gradient
      return jnp.sum(m(v, train=True) ** 2)
    return jnp.sum(call(m, v, a) ** 2)

  gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables['params'], x,
                                                   variables['batch_stats'])
  assert np.all(np.isfinite(np.asarray(gx))) and float(jnp.abs(gx).sum()) > 0
  flat = model_state.flatten(gp)
  assert flat
  for path, leaf in flat.items():
    leaf = np.asarray(leaf)
    assert np.all(np.isfinite(leaf)), path
    if (name, path) not in ZERO_GRAD:
      assert np.abs(leaf).sum() > 0, f'{name}: zero gradient for {path}'


@pytest.mark.skipif(jax.device_count() < 2, reason='needs 2 host devices')
def test_pmap_with_synced_batch_norm():
  x, _ = _inputs(5, (2, 3))  # (devices, per-device batch, N, C)
  module = graph.DynamicGraphLayer(N, C, k=2, rngs=nnx.Rngs(0))
  reference = graph.DynamicGraphLayer(N, C, k=2, rngs=nnx.Rngs(1))
  model_state.load_variables(reference, model_state.variables(module))
  # What the training code does for pmap (faujax.parallel): name the mapped axis on every
  # faujax.layers.BatchNorm; the layer itself takes no parallel-mode argument.
  module.bn.axis_name = 'batch'
  graphdef, params, stats = nnx.split(module, nnx.Param, nnx.BatchStat)

  def step(p, s, xb):
    m = nnx.merge(graphdef, p, s)
    out = m(xb, train=True)
    return out, model_state.to_tree(nnx.state(m, nnx.BatchStat))

  replicated = jax.tree.map(lambda v: jnp.stack([v, v]), (params, stats))
  out, new_stats = jax.pmap(step, axis_name='batch')(*replicated, x)
  full = reference(x.reshape((6, N, C)), train=True)
  full_stats = model_state.variables(reference)['batch_stats']
  np.testing.assert_allclose(np.asarray(out).reshape(6, N, C), np.asarray(full), rtol=1e-5,
                             atol=1e-5)
  for key in ('mean', 'var'):
    np.testing.assert_allclose(np.asarray(new_stats['bn'][key][0]),
                               np.asarray(full_stats['bn'][key]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(new_stats['bn'][key][1]),
                               np.asarray(full_stats['bn'][key]), atol=1e-5)
  params = graph.gcn_init(jax.random.key(0), C, 3)
  _, a = _inputs(6, (2,))
  got = jax.pmap(lambda v, g: graph.gcn_apply(params, v, g))(x, a)
  want = np.stack([np.asarray(graph.gcn_apply(params, x[i], a[i])) for i in range(2)])
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)

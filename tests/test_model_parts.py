"""Tests of faujax.models.parts (MACG eq. 1-4, 10-12, 14 and the LinearBlock) against references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import layers
from faujax import model_state
from faujax.models import parts

TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope='module', autouse=True)
def _fast_compiles():
  """XLA compiles dominate on a small CPU: compile this module's tiny graphs unoptimised."""
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


def build(cls, *args, seed: int = 1, **kwargs):
  """``cls(*args, **kwargs, rngs=nnx.Rngs(seed))`` (parameters drawn eagerly)."""
  return cls(*args, **kwargs, rngs=nnx.Rngs(seed))


def loaded(module, variables):
  """``module`` holding ``variables`` (a sub-tree of another module's ``model_state.variables``)."""
  return model_state.load_variables(module, {'params': variables.get('params', {}),
                                             'batch_stats': variables.get('batch_stats', {})})


def sub(variables, name):
  """The variables of child ``name``."""
  return {c: variables[c][name] for c in ('params', 'batch_stats') if name in variables[c]}


def apply(module, *args, **kwargs):
  """``module(*args, **kwargs)`` under one jit; a train call updates the module's statistics."""
  graphdef, state = nnx.split(module)

  def fn(state, *args):
    m = nnx.merge(graphdef, state)
    return m(*args, **kwargs), nnx.state(m)

  out, state = jax.jit(fn)(state, *args)
  nnx.update(module, state)
  return out


def _bn_train(y: np.ndarray, scale: np.ndarray, bias: np.ndarray, axes: tuple[int, ...]):
  mean = y.mean(axis=axes, keepdims=True)
  var = y.var(axis=axes, keepdims=True)
  return (y - mean) / np.sqrt(var + 1e-5) * scale + bias


# ------------------------------------------------------------------------------- LinearBlock


def test_linear_block_is_linear_batchnorm_relu():
  x = jax.random.normal(jax.random.key(0), (3, 5, 6))
  block = build(parts.LinearBlock, 6, 4, seed=1)
  assert isinstance(block.fc, nnx.Linear) and isinstance(block.bn, layers.BatchNorm)
  v = model_state.variables(block)
  out = apply(block, x, train=True)
  new = model_state.variables(block)
  p = jax.tree_util.tree_map(np.asarray, v['params'])
  y = np.asarray(x) @ p['fc']['kernel'] + p['fc']['bias']
  # BatchNorm1d over channels: statistics over the batch and token axes.
  ref = np.maximum(_bn_train(y, p['bn']['scale'], p['bn']['bias'], (0, 1)), 0.0)
  np.testing.assert_allclose(out, ref, **TOL)
  np.testing.assert_allclose(new['batch_stats']['bn']['mean'], 0.1 * y.mean(axis=(0, 1)), **TOL)
  np.testing.assert_allclose(new['batch_stats']['bn']['var'], 0.9 + 0.1 * y.var(axis=(0, 1)),
                             **TOL)
  # Eval with fresh statistics (mean 0, var 1) is ReLU(y / sqrt(1 + eps)).
  fresh = loaded(build(parts.LinearBlock, 6, 4, seed=2), v)
  np.testing.assert_allclose(apply(fresh, x, train=False),
                             np.maximum(y / np.sqrt(1 + 1e-5), 0.0), **TOL)
  with pytest.raises(ValueError, match='6'):
    block(jnp.zeros((2, 5)), train=False)


def test_linear_block_dropout_uses_call_time_rngs():
  x = jnp.ones((4, 64))
  block = build(parts.LinearBlock, 64, 8, dropout=0.5)
  # Eval ignores dropout; train needs a 'dropout' stream and drops about half of the inputs.
  a = block(x, train=True, rngs=nnx.Rngs(dropout=0))
  b = block(x, train=True, rngs=nnx.Rngs(dropout=1))
  assert not np.allclose(np.asarray(a), np.asarray(b))
  fc = model_state.variables(block)['params']['fc']
  kept = np.asarray(nnx.Dropout(0.5)(x, deterministic=False, rngs=nnx.Rngs(dropout=0)))
  assert set(np.unique(kept)) <= {0.0, 2.0} and 0.3 < (kept == 0).mean() < 0.7
  y = kept @ np.asarray(fc['kernel']) + np.asarray(fc['bias'])
  bn = model_state.variables(build(parts.LinearBlock, 64, 8, dropout=0.5))['params']['bn']
  ref = np.maximum(_bn_train(y, np.asarray(bn['scale']), np.asarray(bn['bias']), (0,)), 0.0)
  np.testing.assert_allclose(a, ref, **TOL)
  with pytest.raises(ValueError, match='dropout'):
    build(parts.LinearBlock, 4, 4, dropout=1.0)


def test_linear_block_init_std_is_sqrt_two_over_out():
  block = build(parts.LinearBlock, 512, 64, seed=0)
  v = model_state.variables(block)
  kernel = np.asarray(v['params']['fc']['kernel'])
  assert kernel.shape == (512, 64)
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / 64), rtol=0.03)
  assert abs(kernel.mean()) < 0.01
  bias = np.asarray(v['params']['fc']['bias'])
  assert np.all(np.abs(bias) <= 1 / np.sqrt(512)) and bias.std() > 0.25 / np.sqrt(512)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(v))


@pytest.mark.parametrize('shared_input', [True, False])
@pytest.mark.parametrize('train', [True, False])
def test_per_node_linear_block_equals_independent_blocks(shared_input, train):
  n, c_in, c_out = 3, 5, 4
  shape = (2, 6, c_in) if shared_input else (2, 6, n, c_in)
  x = jax.random.normal(jax.random.key(0), shape)
  block = build(parts.PerNodeLinearBlock, n, c_in, c_out, shared_input=shared_input, seed=1)
  assert block.bn.feature_axes == (-2, -1)
  v = model_state.variables(block)
  # Non-trivial running statistics and BN affine parameters.
  v['batch_stats']['bn']['mean'] = jax.random.normal(jax.random.key(2), (n, c_out))
  v['batch_stats']['bn']['var'] = 1 + jax.random.uniform(jax.random.key(3), (n, c_out))
  v['params']['bn']['scale'] = 1 + jax.random.uniform(jax.random.key(4), (n, c_out))
  loaded(block, v)
  out = apply(block, x, train=train)
  assert out.shape == (2, 6, n, c_out)
  for i in range(n):
    vi = {'params': {'fc': {'kernel': v['params']['kernel'][i], 'bias': v['params']['bias'][i]},
                     'bn': {k: a[i] for k, a in v['params']['bn'].items()}},
          'batch_stats': {'bn': {k: a[i] for k, a in v['batch_stats']['bn'].items()}}}
    single = loaded(build(parts.LinearBlock, c_in, c_out), vi)
    xi = x if shared_input else x[:, :, i]
    ref = apply(single, xi, train=train)
    np.testing.assert_allclose(out[:, :, i], ref, **TOL)


def test_per_node_linear_block_rejects_wrong_node_count():
  block = build(parts.PerNodeLinearBlock, 3, 6, 4, shared_input=False, seed=0)
  with pytest.raises(ValueError, match='3 nodes'):
    block(jnp.zeros((2, 5, 6)), train=False)
  with pytest.raises(ValueError, match='6 channels'):
    block(jnp.zeros((2, 3, 5)), train=False)
  with pytest.raises(ValueError, match='num_nodes'):
    build(parts.PerNodeLinearBlock, 0, 6, 4)


# ------------------------------------------------------------------------------- MAFG


def _dw_conv_ref(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """Depthwise 'same' conv (torch padding k // 2) with lax.conv in NCHW / OIHW layout."""
  kh, kw, _, c = kernel.shape
  w = jnp.transpose(kernel, (3, 2, 0, 1))                   # (C, 1, kh, kw)
  y = jax.lax.conv_general_dilated(
      jnp.transpose(x, (0, 3, 1, 2)), w, window_strides=(1, 1),
      padding=((kh // 2, kh // 2), (kw // 2, kw // 2)), feature_group_count=c,
      dimension_numbers=('NCHW', 'OIHW', 'NCHW'), precision='highest')
  return jnp.transpose(y, (0, 2, 3, 1)) + bias


def _attention_ref(p, x, kernel_sizes, order):
  d = _dw_conv_ref(x, p['conv0']['kernel'], p['conv0']['bias'])
  total = d
  for i, _ in enumerate(kernel_sizes):
    cy, cx = p[f'conv{i + 1}_y'], p[f'conv{i + 1}_x']
    if order == 'yx':    # eq. 1 (y-axis) then eq. 2 (x-axis)
      m = _dw_conv_ref(_dw_conv_ref(d, cy['kernel'], cy['bias']), cx['kernel'], cx['bias'])
    else:
      m = _dw_conv_ref(_dw_conv_ref(d, cx['kernel'], cx['bias']), cy['kernel'], cy['bias'])
    total = total + m
  attn = jnp.einsum('bhwc,cd->bhwd', total, p['mix']['kernel'][0, 0],
                    precision='highest') + p['mix']['bias']
  return attn * x


@pytest.mark.parametrize('order', ['yx', 'xy'])
def test_multiscale_axial_attention_matches_lax_conv_reference(order):
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 6))
  module = build(parts.MultiScaleAxialAttention, 6, axial_order=order, seed=1)
  p = model_state.variables(module)['params']
  assert p['conv0']['kernel'].shape == (5, 5, 1, 6)
  assert p['conv3_y']['kernel'].shape == (21, 1, 1, 6)
  assert p['conv3_x']['kernel'].shape == (1, 21, 1, 6)
  assert p['mix']['kernel'].shape == (1, 1, 6, 6)
  out = apply(module, x)
  ref = jax.jit(_attention_ref, static_argnums=(2, 3))(p, x, (7, 11, 21), order)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_multiscale_axial_attention_rejects_bad_options():
  with pytest.raises(ValueError, match='axial_order'):
    build(parts.MultiScaleAxialAttention, 4, axial_order='zz')
  with pytest.raises(ValueError, match='odd'):
    build(parts.MultiScaleAxialAttention, 4, kernel_sizes=(4,))
  with pytest.raises(ValueError, match='4 channels'):
    build(parts.MultiScaleAxialAttention, 4)(jnp.zeros((1, 5, 5, 3)))


def test_axial_order_differs_only_through_the_biases():
  """Zero-padded separable convolutions commute; only the biases tell the two orders apart."""
  x = jax.random.normal(jax.random.key(0), (1, 15, 15, 2))
  kwargs = dict(kernel_sizes=(3, 5), square_kernel=3)
  module = build(parts.MultiScaleAxialAttention, 2, **kwargs, seed=1)
  v = model_state.variables(module)
  other = lambda variables: loaded(build(parts.MultiScaleAxialAttention, 2, axial_order='xy',
                                         **kwargs, seed=5), variables)
  assert not np.allclose(apply(module, x), apply(other(v), x), atol=1e-5)
  for name in v['params']:
    v['params'][name]['bias'] = jnp.zeros_like(v['params'][name]['bias'])
  yx = apply(loaded(module, v), x)
  xy = apply(other(v), x)
  np.testing.assert_allclose(yx, xy, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('use_attention', [True, False])
def test_mafg_nodes_are_token_means_of_per_au_blocks(use_attention):
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 8))
  n = 5
  module = build(parts.MAFG, n, 8, features=6, use_attention=use_attention, seed=1)
  v = model_state.variables(module)
  assert ('attention' in v['params']) == use_attention
  assert v['params']['au_blocks']['kernel'].shape == (n, 8, 6)
  nodes = apply(module, x, train=True)
  assert nodes.shape == (3, n, 6)
  attended = x
  if use_attention:
    attention = loaded(build(parts.MultiScaleAxialAttention, 8, seed=2), sub(v, 'attention'))
    attended = apply(attention, x)
    assert not np.allclose(attended, x)
  blocks = loaded(build(parts.PerNodeLinearBlock, n, 8, 6, seed=3), sub(v, 'au_blocks'))
  per_au = apply(blocks, attended.reshape(3, 16, 8), train=True)
  np.testing.assert_allclose(nodes, per_au.mean(axis=1), **TOL)
  # The train call updated the per-AU statistics in place, as the block alone does.
  stats = model_state.variables(module)['batch_stats']['au_blocks']['bn']
  np.testing.assert_allclose(stats['mean'],
                             model_state.variables(blocks)['batch_stats']['bn']['mean'], **TOL)


# ------------------------------------------------------------------------------- CCFG


def _topology_ref(p, x, lam):
  """Loop reference of MACG eq. 10-11 (float64) with the scale ``lam``."""
  b, h, w, _ = x.shape
  c_out = p['local']['kernel'].shape[1]
  x1 = (x @ p['rel1']['kernel'] + p['rel1']['bias']).mean(axis=1)         # (B, W, R)
  x2 = (x @ p['rel2']['kernel'] + p['rel2']['bias']).mean(axis=1)
  x3 = x @ p['local']['kernel'] + p['local']['bias']                       # (B, H, W, C')
  ref = np.zeros((b, h, w, c_out))
  for n in range(b):
    for u in range(w):
      for vv in range(w):
        rel_r = np.tanh(x1[n, u] - x2[n, vv])                              # eq. 10, (R,)
        rel = lam * (rel_r @ p['fuse']['kernel'] + p['fuse']['bias'])        # (C',)
        for t in range(h):
          for ch in range(c_out):
            ref[n, t, u, ch] += rel[ch] * x3[n, t, vv, ch]                  # eq. 11
  return ref


@pytest.mark.parametrize('trainable_lambda', [True, False])
def test_channel_topology_conv_matches_loop_reference(trainable_lambda):
  b, h, w, c, r, c_out = 2, 3, 4, 5, 3, 6
  x = jax.random.normal(jax.random.key(0), (b, h, w, c))
  module = build(parts.ChannelTopologyConv, c, features=c_out, rel_features=r, lambda_init=0.7,
                 trainable_lambda=trainable_lambda, seed=1)
  v = model_state.variables(module)
  # Non-zero biases so that a missing bias term would show.
  for name in ('rel1', 'rel2', 'local', 'fuse'):
    v['params'][name]['bias'] = 0.3 * jax.random.normal(jax.random.key(len(name)),
                                                        v['params'][name]['bias'].shape)
  loaded(module, v)
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v['params'])
  ref = _topology_ref(p, np.asarray(x, np.float64), 0.7)
  np.testing.assert_allclose(apply(module, x), ref, rtol=1e-4, atol=1e-5)
  if trainable_lambda:
    assert float(v['params']['lambda']) == pytest.approx(0.7)
  else:
    assert 'lambda' not in v['params']
    assert float(module.scale()) == pytest.approx(0.7)


def test_fixed_ccfg_lambda_has_no_gradient_path():
  """Parity switch (the public code's behaviour): trainable_lambda=False keeps lambda at
  lambda_init; it is a constant of the module, not an nnx.Param, so nothing trains it."""
  x = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))

  def grads(trainable):
    module = build(parts.CCFG, 2, 4, features=5, rel_features=2, lambda_init=0.4,
                   trainable_lambda=trainable, seed=3)
    fn = model_state.ModelFn.from_model(module)
    v = model_state.variables(module)
    loss = lambda p, s: jnp.sum(fn.module({'params': p, 'batch_stats': s})(x, train=True) ** 2)
    return module, jax.jit(jax.grad(loss))(v['params'], v['batch_stats'])

  fixed, g_fixed = grads(False)
  trainable, g_trainable = grads(True)
  assert 'lambda' not in model_state.variables(fixed)['params']['topology']
  assert 'lambda' not in g_fixed['topology']
  assert not [path for path in model_state.flatten(model_state.variables(fixed))
              if 'lambda' in path]
  assert float(jnp.abs(g_trainable['topology']['lambda'])) > 0     # the paper's learnable lambda
  # Every other parameter is the same set and still trains.
  flat_fixed = model_state.flatten(g_fixed)
  assert set(flat_fixed) == set(model_state.flatten(g_trainable)) - {'topology/lambda'}
  assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in flat_fixed.values())
  assert float(jnp.abs(g_fixed['topology']['fuse']['kernel']).sum()) > 0
  # Same weights: the fixed module is the trainable one with lambda = lambda_init.
  v = model_state.variables(trainable)
  v['params']['topology'].pop('lambda')
  loaded(fixed, v)
  np.testing.assert_allclose(apply(fixed.topology, x), apply(trainable.topology, x), **TOL)
  v = model_state.variables(fixed)['params']['topology']
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v)
  np.testing.assert_allclose(apply(fixed.topology, x),
                             _topology_ref(p, np.asarray(x, np.float64), 0.4), rtol=1e-4,
                             atol=1e-5)


def test_channel_topology_conv_init_is_kaiming_fan_out_zero_bias():
  module = build(parts.ChannelTopologyConv, 128, features=256, rel_features=64, seed=0)
  p = model_state.variables(module)['params']
  np.testing.assert_allclose(np.std(p['local']['kernel']), np.sqrt(2 / 256), rtol=0.05)
  np.testing.assert_allclose(np.std(p['rel1']['kernel']), np.sqrt(2 / 64), rtol=0.05)
  for name in ('rel1', 'rel2', 'local', 'fuse'):
    assert not np.any(p[name]['bias'])


@pytest.mark.parametrize('shared', [False, True])
def test_ccfg_pools_then_per_au_or_shared_block(shared):
  b, n = 4, 3
  x = jax.random.normal(jax.random.key(0), (b, 3, 3, 8))
  module = build(parts.CCFG, n, 8, features=6, rel_features=2, shared_block=shared, seed=1)
  v = model_state.variables(module)
  out = apply(module, x, train=True)
  assert out.shape == (b, n, 6)
  topology = loaded(build(parts.ChannelTopologyConv, 8, features=6, rel_features=2, seed=2),
                    sub(v, 'topology'))
  pooled = apply(topology, x).mean(axis=(1, 2))
  if shared:
    assert 'au_blocks' not in v['params']
    block = loaded(build(parts.LinearBlock, 6, 6, seed=3), sub(v, 'shared_block'))
    ref = apply(block, pooled, train=True)
    for i in range(n):   # the public code: every AU row is the same vector
      np.testing.assert_allclose(out[:, i], ref, **TOL)
  else:
    assert 'shared_block' not in v['params']
    blocks = loaded(build(parts.PerNodeLinearBlock, n, 6, 6, seed=3), sub(v, 'au_blocks'))
    ref = apply(blocks, pooled, train=True)
    np.testing.assert_allclose(out, ref, **TOL)
    assert not np.allclose(out[:, 0], out[:, 1])


# ------------------------------------------------------------------------------- cosine head


def test_cosine_head_matches_loop_and_lies_in_unit_interval():
  f = 3 * jax.random.normal(jax.random.key(0), (5, 4, 7))
  head = build(parts.CosineHead, 4, 7, seed=1)
  v = model_state.variables(head)
  assert set(v['params']) == {'sc'}
  s = np.asarray(v['params']['sc'])
  assert s.shape == (4, 7)
  limit = np.sqrt(6 / (4 + 7))                      # xavier_uniform on (N, C)
  assert np.all(np.abs(s) <= limit) and s.std() > limit / 4
  p = np.asarray(apply(head, f))
  assert p.shape == (5, 4) and p.dtype == np.float32
  assert np.all(p >= 0) and np.all(p <= 1 + 1e-6)
  fr, sr = np.maximum(np.asarray(f, np.float64), 0), np.maximum(s.astype(np.float64), 0)
  for b in range(5):
    for i in range(4):
      ref = fr[b, i] @ sr[i] / max(np.linalg.norm(fr[b, i]), 1e-12) / max(np.linalg.norm(sr[i]),
                                                                          1e-12)
      assert p[b, i] == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_cosine_probabilities_extremes_and_finite_gradient_at_zero():
  s = jnp.array([[1.0, 2.0, -1.0], [0.5, -3.0, 0.0]])
  f = jnp.stack([jnp.stack([s[0], -s[1]]), jnp.zeros((2, 3))])    # (2, 2, 3)
  p = jax.jit(parts.cosine_probabilities)(f, s)
  # ReLU(f) parallel to ReLU(s) -> 1; ReLU(-s[1]) = (0, 3, 0) is orthogonal to ReLU(s[1]) -> 0.
  np.testing.assert_allclose(p[0], [1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(p[1], [0.0, 0.0], atol=1e-6)
  g = jax.jit(jax.grad(lambda f: parts.cosine_probabilities(f, s).sum()))(f)
  assert np.all(np.isfinite(g))


def test_cosine_probabilities_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='class vectors'):
    parts.cosine_probabilities(jnp.zeros((2, 3, 4)), jnp.zeros((3, 5)))

"""Tests of faujax.models.parts (MACG eq. 1-4, 10-12, 14 and the LinearBlock) against references."""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faujax.models import parts

TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope='module', autouse=True)
def _fast_compiles():
  """XLA compiles dominate on a small CPU: compile this module's tiny graphs unoptimised."""
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


def init(module, *args, seed: int = 1, **kwargs):
  """``module.init`` under one jit, keyed by the cheap-to-compile 'rbg' PRNG."""
  return jax.jit(functools.partial(module.init, **kwargs))(jax.random.key(seed, impl='rbg'), *args)


def apply(module, variables, *args, **kwargs):
  """``module.apply`` under one jit; train-mode calls return (out, mutated)."""
  if kwargs.get('train'):
    kwargs.setdefault('mutable', ['batch_stats'])
  return jax.jit(functools.partial(module.apply, **kwargs))(variables, *args)


def _bn_train(y: np.ndarray, scale: np.ndarray, bias: np.ndarray, axes: tuple[int, ...]):
  mean = y.mean(axis=axes, keepdims=True)
  var = y.var(axis=axes, keepdims=True)
  return (y - mean) / np.sqrt(var + 1e-5) * scale + bias


# ------------------------------------------------------------------------------- LinearBlock


def test_linear_block_is_linear_batchnorm_relu():
  x = jax.random.normal(jax.random.key(0), (3, 5, 6))
  block = parts.LinearBlock(4)
  v = init(block, x, train=False, seed=1)
  out, new = apply(block, v, x, train=True)
  p = jax.tree_util.tree_map(np.asarray, v['params'])
  y = np.asarray(x) @ p['fc']['kernel'] + p['fc']['bias']
  # BatchNorm1d over channels: statistics over the batch and token axes.
  ref = np.maximum(_bn_train(y, p['bn']['scale'], p['bn']['bias'], (0, 1)), 0.0)
  np.testing.assert_allclose(out, ref, **TOL)
  np.testing.assert_allclose(new['batch_stats']['bn']['mean'], 0.1 * y.mean(axis=(0, 1)), **TOL)
  # Eval with fresh statistics (mean 0, var 1) is ReLU(y / sqrt(1 + eps)).
  np.testing.assert_allclose(apply(block, v, x, train=False),
                             np.maximum(y / np.sqrt(1 + 1e-5), 0.0), **TOL)


def test_linear_block_init_std_is_sqrt_two_over_out():
  block = parts.LinearBlock(64)
  v = init(block, jnp.zeros((2, 512)), train=False, seed=0)
  kernel = np.asarray(v['params']['fc']['kernel'])
  assert kernel.shape == (512, 64)
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / 64), rtol=0.03)
  assert abs(kernel.mean()) < 0.01
  bias = np.asarray(v['params']['fc']['bias'])
  assert np.all(np.abs(bias) <= 1 / np.sqrt(512))


@pytest.mark.parametrize('shared_input', [True, False])
@pytest.mark.parametrize('train', [True, False])
def test_per_node_linear_block_equals_independent_blocks(shared_input, train):
  n, c_in, c_out = 3, 5, 4
  shape = (2, 6, c_in) if shared_input else (2, 6, n, c_in)
  x = jax.random.normal(jax.random.key(0), shape)
  block = parts.PerNodeLinearBlock(n, c_out, shared_input=shared_input)
  v = init(block, x, train=False, seed=1)
  # Non-trivial running statistics and BN affine parameters.
  v = flax.core.unfreeze(v)
  v['batch_stats']['bn']['mean'] = jax.random.normal(jax.random.key(2), (n, c_out))
  v['batch_stats']['bn']['var'] = 1 + jax.random.uniform(jax.random.key(3), (n, c_out))
  v['params']['bn']['scale'] = 1 + jax.random.uniform(jax.random.key(4), (n, c_out))
  out = apply(block, v, x, train=train, mutable=['batch_stats'])[0]
  assert out.shape == (2, 6, n, c_out)
  single = parts.LinearBlock(c_out)
  for i in range(n):
    vi = {'params': {'fc': {'kernel': v['params']['kernel'][i], 'bias': v['params']['bias'][i]},
                     'bn': {k: a[i] for k, a in v['params']['bn'].items()}},
          'batch_stats': {'bn': {k: a[i] for k, a in v['batch_stats']['bn'].items()}}}
    xi = x if shared_input else x[:, :, i]
    ref = apply(single, vi, xi, train=train, mutable=['batch_stats'])[0]
    np.testing.assert_allclose(out[:, :, i], ref, **TOL)


def test_per_node_linear_block_rejects_wrong_node_count():
  block = parts.PerNodeLinearBlock(3, 4, shared_input=False)
  with pytest.raises(ValueError, match='3 nodes'):
    init(block, jnp.zeros((2, 5, 6)), train=False, seed=0)


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
  module = parts.MultiScaleAxialAttention(axial_order=order)
  v = init(module, x, seed=1)
  p = v['params']
  assert p['conv0']['kernel'].shape == (5, 5, 1, 6)
  assert p['conv3_y']['kernel'].shape == (21, 1, 1, 6)
  assert p['conv3_x']['kernel'].shape == (1, 21, 1, 6)
  assert p['mix']['kernel'].shape == (1, 1, 6, 6)
  out = apply(module, v, x)
  ref = jax.jit(_attention_ref, static_argnums=(2, 3))(p, x, (7, 11, 21), order)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_axial_order_differs_only_through_the_biases():
  """Zero-padded separable convolutions commute; only the biases tell the two orders apart."""
  x = jax.random.normal(jax.random.key(0), (1, 15, 15, 2))
  module = parts.MultiScaleAxialAttention(kernel_sizes=(3, 5), square_kernel=3)
  v = flax.core.unfreeze(init(module, x, seed=1))
  for name in v['params']:
    v['params'][name]['bias'] = jnp.zeros_like(v['params'][name]['bias'])
  yx = apply(module, v, x)
  xy = apply(module.clone(axial_order='xy'), v, x)
  np.testing.assert_allclose(yx, xy, rtol=1e-4, atol=1e-5)
  v2 = init(module, x, seed=1)
  assert not np.allclose(apply(module, v2, x), apply(module.clone(axial_order='xy'), v2, x),
                         atol=1e-5)


@pytest.mark.parametrize('use_attention', [True, False])
def test_mafg_nodes_are_token_means_of_per_au_blocks(use_attention):
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 8))
  n = 5
  module = parts.MAFG(n, features=6, use_attention=use_attention)
  v = init(module, x, train=False, seed=1)
  assert ('attention' in v['params']) == use_attention
  nodes = apply(module, v, x, train=True)[0]
  assert nodes.shape == (3, n, 6)
  attended = x
  if use_attention:
    attended = apply(parts.MultiScaleAxialAttention(), {'params': v['params']['attention']}, x)
  blocks = {'params': v['params']['au_blocks'], 'batch_stats': v['batch_stats']['au_blocks']}
  per_au = apply(parts.PerNodeLinearBlock(n, 6), blocks, attended.reshape(3, 16, 8), train=True)[0]
  np.testing.assert_allclose(nodes, per_au.mean(axis=1), **TOL)


# ------------------------------------------------------------------------------- CCFG


def test_channel_topology_conv_matches_loop_reference():
  b, h, w, c, r, c_out = 2, 3, 4, 5, 3, 6
  x = jax.random.normal(jax.random.key(0), (b, h, w, c))
  module = parts.ChannelTopologyConv(features=c_out, rel_features=r, lambda_init=0.7)
  v = init(module, x, seed=1)
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v['params'])
  xn = np.asarray(x, np.float64)
  x1 = (xn @ p['rel1']['kernel'] + p['rel1']['bias']).mean(axis=1)         # (B, W, R)
  x2 = (xn @ p['rel2']['kernel'] + p['rel2']['bias']).mean(axis=1)
  x3 = xn @ p['local']['kernel'] + p['local']['bias']                       # (B, H, W, C')
  ref = np.zeros((b, h, w, c_out))
  for n in range(b):
    for u in range(w):
      for vv in range(w):
        rel_r = np.tanh(x1[n, u] - x2[n, vv])                              # eq. 10, (R,)
        rel = 0.7 * (rel_r @ p['fuse']['kernel'] + p['fuse']['bias'])        # (C',)
        for t in range(h):
          for ch in range(c_out):
            ref[n, t, u, ch] += rel[ch] * x3[n, t, vv, ch]                  # eq. 11
  np.testing.assert_allclose(apply(module, v, x), ref, rtol=1e-4, atol=1e-5)
  assert float(v['params']['lambda']) == pytest.approx(0.7)


def test_channel_topology_conv_init_is_kaiming_fan_out_zero_bias():
  module = parts.ChannelTopologyConv(features=256, rel_features=64)
  v = init(module, jnp.zeros((1, 2, 2, 128)), seed=0)
  p = v['params']
  np.testing.assert_allclose(np.std(p['local']['kernel']), np.sqrt(2 / 256), rtol=0.05)
  np.testing.assert_allclose(np.std(p['rel1']['kernel']), np.sqrt(2 / 64), rtol=0.05)
  for name in ('rel1', 'rel2', 'local', 'fuse'):
    assert not np.any(p[name]['bias'])


@pytest.mark.parametrize('shared', [False, True])
def test_ccfg_pools_then_per_au_or_shared_block(shared):
  b, n = 4, 3
  x = jax.random.normal(jax.random.key(0), (b, 3, 3, 8))
  module = parts.CCFG(n, features=6, rel_features=2, shared_block=shared)
  v = init(module, x, train=False, seed=1)
  out = apply(module, v, x, train=True)[0]
  assert out.shape == (b, n, 6)
  e = apply(parts.ChannelTopologyConv(6, 2), {'params': v['params']['topology']}, x)
  pooled = e.mean(axis=(1, 2))
  if shared:
    assert 'au_blocks' not in v['params']
    blocks = {'params': v['params']['shared_block'],
              'batch_stats': v['batch_stats']['shared_block']}
    ref = apply(parts.LinearBlock(6), blocks, pooled, train=True)[0]
    for i in range(n):   # the public code: every AU row is the same vector
      np.testing.assert_allclose(out[:, i], ref, **TOL)
  else:
    blocks = {'params': v['params']['au_blocks'], 'batch_stats': v['batch_stats']['au_blocks']}
    ref = apply(parts.PerNodeLinearBlock(n, 6), blocks, pooled, train=True)[0]
    np.testing.assert_allclose(out, ref, **TOL)
    assert not np.allclose(out[:, 0], out[:, 1])


# ------------------------------------------------------------------------------- cosine head


def test_cosine_head_matches_loop_and_lies_in_unit_interval():
  f = 3 * jax.random.normal(jax.random.key(0), (5, 4, 7))
  head = parts.CosineHead()
  v = init(head, f, seed=1)
  s = np.asarray(v['params']['sc'])
  assert s.shape == (4, 7)
  limit = np.sqrt(6 / (4 + 7))                      # xavier_uniform on (N, C)
  assert np.all(np.abs(s) <= limit) and s.std() > limit / 4
  p = np.asarray(apply(head, v, f))
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

"""Tests of MGRR-Net (faujax.models.mgrr_net and parts mgrr_*) against the paper's equations."""

from __future__ import annotations

import importlib.util
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from faujax import losses
from faujax import model_state
from faujax import models
from faujax import relations
from faujax.geometry import au_centres as au_centres_lib
from faujax.geometry import schemes
from faujax.graph import params as params_lib
from faujax.layers import torch_init
from faujax.models import mgrr_net
from faujax.models.parts import mgrr_global
from faujax.models.parts import mgrr_layer
from faujax.models.parts import mgrr_patches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUS = (1, 2, 4, 6, 12)
SIZE = 32  # input side of the tiny models: O_G 8 x 8
STEM = {'name': 'jaanet_stem', 'widths': (8, 16), 'input_size': SIZE}


def _labels(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  base = rng.random((n, 1)) < 0.4
  labels = ((rng.random((n, len(AUS))) < 0.3) | (base & (rng.random((n, len(AUS))) < 0.6)))
  mask = rng.random((n, len(AUS))) > 0.1
  return labels.astype(np.float32), mask.astype(np.float32)


def _info(**overrides) -> types.SimpleNamespace:
  labels, mask = _labels()
  info = dict(task='au', num_labels=len(AUS), label_names=[f'AU{a}' for a in AUS], aus=AUS,
              num_landmarks=68, train_labels={'au': labels, 'au_mask': mask})
  info.update(overrides)
  return types.SimpleNamespace(**info)


def _mgrr(info, **options) -> mgrr_net.MGRRNet:
  """MGRR-Net with its constants prepared from ``info`` (``faujax.models.prepare``)."""
  constants = models.prepare({'name': 'mgrr_net', **options}, info)
  return mgrr_net.MGRRNet(info, constants=constants, **options, rngs=nnx.Rngs(0))


def tiny(**kwargs) -> mgrr_net.MGRRNet:
  options = dict(backbone=STEM, hidden_dim=16, num_heads=4, patch_size=3, integrated_dim=8)
  options.update(kwargs)
  return _mgrr(_info(), **options)


def _built(**kwargs) -> mgrr_net.MGRRNet:
  """``tiny(**kwargs)`` initialised in one compiled program (eager initialisation compiles every
  random draw separately: tens of seconds on a CPU)."""
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: tiny(**kwargs)))
  state = jax.jit(lambda: nnx.split(tiny(**kwargs))[1])()
  return nnx.merge(graphdef, state)


@nnx.jit
def _forward(model, batch):
  return model(batch, train=False)


def _face(b: int = 2, seed: int = 0) -> jax.Array:
  """(B, 68, 2) faujax mean faces in the SIZE frame, jittered by a pixel."""
  base = mgrr_patches.mean_face_landmarks(68, SIZE)
  noise = np.random.default_rng(seed).normal(0, 0.5, (b, 68, 2))
  return jnp.asarray(base[None] + noise, jnp.float32)


def _batch(b: int = 2, seed: int = 0) -> dict[str, jax.Array]:
  return {'image': jax.random.normal(jax.random.key(seed), (b, SIZE, SIZE, 3)),
          'landmarks': _face(b, seed)}


@pytest.fixture(scope='module')
def model() -> mgrr_net.MGRRNet:
  return _built()


def _np(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


# --------------------------------------------------------------------------- eq. 1-2: the prior


def test_prior_matches_loop_reference_of_eq_1_2(model):
  labels, mask = _labels()
  n, c = labels.shape
  ref = np.zeros((c, c))
  for i in range(c):
    for j in range(c):
      both = (mask[:, i] > 0) & (mask[:, j] > 0)
      yi, yj = labels[both, i], labels[both, j]
      p11 = np.mean(yi[yj == 1] == 1) if np.any(yj == 1) else 0.5   # P(a_i = 1 | a_j = 1)
      p00 = np.mean(yi[yj == 0] == 0) if np.any(yj == 0) else 0.5   # P(a_i = 0 | a_j = 0)
      ref[i, j] = abs((0.5 * (p11 + p00) - 0.5) * 2)                 # eq. 1-2
  np.testing.assert_allclose(relations.mgrr_prior(labels, mask), ref, atol=1e-12)
  # The model's adjacency of every layer starts at this prior.
  assert len(model.layers) == 2
  for layer in model.layers:
    np.testing.assert_allclose(np.asarray(layer.region.adjacency[...]), ref, atol=1e-6)


def _torch_fan(path: str, shape: tuple[int, ...], params: dict) -> int | None:
  """torch's fan-in of a parameter of MGRR-Net (None: not a torch Linear / Conv weight or bias):
  the kernel's own for a weight, the kernel's of the same layer for a bias."""
  module, _, name = path.rpartition('/')
  if name in ('adjacency', 'scale') or (name == 'bias' and f'{module}/scale' in params):
    return None                                     # A^k (eq. 1-2) and the BatchNorms
  if name == 'local_kernel':
    return shape[-1]                                # (N, flat): one Linear(flat, 1) per AU
  if name == 'local_bias':
    return params['local_kernel'].shape[-1]
  if 'bias' in name:
    kernel = {'bias': 'kernel', 'bias_a': 'kernel_a', 'bias_b': 'kernel_b',
              'gate_bias': 'gate_a'}.get(name, name[:-len('_bias')])
    return _torch_fan(f'{module}/{kernel}', params[f'{module}/{kernel}'].shape, params)
  if module.endswith('deconv'):
    return torch_init.fan_in(shape, 'conv_transpose')
  if len(shape) == 5:                               # the stem's per-patch convs, stacked
    return torch_init.fan_in(shape[1:], 'conv')
  return torch_init.fan_in(shape, 'conv' if len(shape) == 4 else 'linear')


def test_parameters_start_from_pytorchs_default_initialisation():
  """Sec. 4.2, "the default initializer of PyTorch" (``config.model.init='torch'``, the default):
  every weight and bias of every layer -- stem, W_i, U_q, U_k, U_v, U_c, the deconvolution, the
  GFC convolutions, the heads -- is U(+-1/sqrt(fan_in)) with torch's fan-in (the
  deconvolution's: its output channels x 2 x 2); a GFC's gate bias is the sum of its two
  convolutions' biases. Kolmogorov-Smirnov on the pooled draws divided by their bounds."""
  assert models.default_config('mgrr_net').init == 'torch'
  params = model_state.flatten(model_state.variables(_built())['params'])
  scaled, gates = [], []
  for path, value in params.items():
    fan = _torch_fan(path, np.shape(value), params)
    if fan is None:
      continue
    x = np.asarray(value, np.float64).ravel() * np.sqrt(fan)
    (gates if path.endswith('gate_bias') else scaled).append(x)
    assert np.abs(x).max() <= (2.0 if path.endswith('gate_bias') else 1.0), path
  scaled, gates = np.concatenate(scaled), np.concatenate(gates)
  assert scaled.size > 10_000 and gates.size >= 64
  assert stats.kstest(scaled, stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3
  # U(-1, 1) + U(-1, 1): the triangular law on [-2, 2].
  assert stats.kstest(gates, stats.triang(c=0.5, loc=-2, scale=4).cdf).pvalue > 1e-3
  # config.model.init='glorot' (faujax's earlier draw) breaks torch's bounds in the MH-GATs.
  glorot = mgrr_global.PixelAttention(16, 8, hidden_dim=16, num_heads=4, init='glorot',
                                      rngs=nnx.Rngs(0))
  assert np.abs(glorot.attention.query[...]).max() * np.sqrt(16) > 1.2
  assert np.abs(glorot.deconv.bias[...]).max() == 0.0   # Flax's zero bias
  with pytest.raises(ValueError, match='config.model.init'):
    tiny(init='pytorch')


def test_random_adjacency_init_is_not_the_prior():
  constants = mgrr_net.MGRRNet.prepare(_info())
  a = np.asarray(mgrr_net.initial_adjacency(constants, len(AUS), 'random', jax.random.key(0)))
  assert a.shape == (len(AUS), len(AUS)) and np.all((a >= 0) & (a < 1))
  assert np.abs(a - relations.mgrr_prior(*_labels())).max() > 0.1
  np.testing.assert_allclose(
      mgrr_net.initial_adjacency(constants, len(AUS), 'prior', jax.random.key(0)),
      relations.mgrr_prior(*_labels()), atol=1e-6)


# ----------------------------------------------------------------- eq. 3-4: the two MH-GAT levels


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _mh_gat_reference(p: dict, nodes: np.ndarray, heads: int) -> np.ndarray:
  """Eq. 3-4 by loops: per head l and node i, alpha^l_i. over Omega_i = every node."""
  b, n, _ = nodes.shape
  hidden = p['query'].shape[1]
  d = hidden // heads
  out = np.zeros((b, n, p['output'].shape[1]))
  for e in range(b):
    x = nodes[e].astype(np.float64)
    q, k, v = (x @ p[name] + p[name + '_bias'] for name in ('query', 'key', 'value'))
    cat = np.zeros((n, hidden))
    for h in range(heads):
      sl = slice(h * d, (h + 1) * d)
      for i in range(n):
        alpha = _softmax(np.array([q[i, sl] @ k[j, sl] for j in range(n)]) / np.sqrt(d))
        cat[i, sl] = sum(alpha[j] * v[j, sl] for j in range(n))
    out[e] = np.maximum(cat @ p['output'] + p['output_bias'], 0.0)   # ReLU(U_c ||_l ...)
  return out


def _stride2_conv_reference(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
  """torch Conv2d(3, stride 2, padding 1) by loops, NHWC / HWIO."""
  b, s, _, _ = x.shape
  r = (s + 1) // 2
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((b, r, r, kernel.shape[-1]))
  for i in range(r):
    for j in range(r):
      out[:, i, j] = np.einsum('bhwc,hwco->bo', xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3], kernel)
  return out + bias


@pytest.mark.parametrize('side', [8, 7])
def test_channel_attention_matches_eq_3_4(side):
  c, heads = 6, 2
  module = mgrr_global.ChannelAttention(c, side, hidden_dim=8, num_heads=heads,
                                        rngs=nnx.Rngs(1))
  o_g = jax.random.normal(jax.random.key(2), (2, side, side, c))
  got = np.asarray(module(o_g, train=False))
  reduced = _stride2_conv_reference(np.asarray(o_g, np.float64),
                                    np.asarray(module.reduce.conv.kernel[...]),
                                    np.asarray(module.reduce.conv.bias[...]))
  b, r = reduced.shape[:2]
  nodes = reduced.reshape(b, r * r, c).transpose(0, 2, 1)            # C_i = channel i's plane
  ref = _mh_gat_reference(_np(params_lib.declared_params(module.attention)), nodes, heads)
  ref = ref.transpose(0, 2, 1).reshape(b, side, side, c)              # back to O_G's shape
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize('side', [8, 7])
def test_pixel_attention_matches_eq_3_4_and_deconvolution(side):
  c, heads = 4, 2
  module = mgrr_global.PixelAttention(c, side, hidden_dim=8, num_heads=heads, rngs=nnx.Rngs(3))
  o_g = jax.random.normal(jax.random.key(4), (2, side, side, c))
  got = np.asarray(module(o_g, train=False))
  reduced = _stride2_conv_reference(np.asarray(o_g, np.float64),
                                    np.asarray(module.reduce.conv.kernel[...]),
                                    np.asarray(module.reduce.conv.bias[...]))
  b, r = reduced.shape[:2]
  attended = _mh_gat_reference(_np(params_lib.declared_params(module.attention)),
                               reduced.reshape(b, r * r, c), heads).reshape(b, r, r, c)
  kernel = np.asarray(module.deconv.kernel[...])
  up = np.zeros((b, 2 * r, 2 * r, c))
  for dy in range(2):  # stride-2 2 x 2 transposed conv: every input pixel paints a 2 x 2 block
    for dx in range(2):
      up[:, dy::2, dx::2] = attended @ kernel[1 - dy, 1 - dx]
  ref = up[:, :side, :side] + np.asarray(module.deconv.bias[...])
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


# ------------------------------------------------------------- eq. 5 and eq. 6-8 in one layer


def _gfc_reference(p: dict, a: np.ndarray, b: np.ndarray, gated: bool = True) -> np.ndarray:
  """Eq. 7-8: beta l2n(W_a a) + (1 - beta) l2n(W_b b), beta = sigmoid(W'_a a + W'_b b)."""
  l2n = lambda t: t / np.linalg.norm(t, axis=-1, keepdims=True)
  beta = 1 / (1 + np.exp(-(a @ p['gate_a'] + b @ p['gate_b'] + p['gate_bias'])))
  beta = beta if gated else 0.5
  return beta * l2n(a @ p['kernel_a'] + p['bias_a']) + (1 - beta) * l2n(b @ p['kernel_b'] +
                                                                         p['bias_b'])


def _layer_inputs(n=3, c=4, side=6, p=2, seed=5):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  v = jax.random.normal(k1, (2, n, 2, p, p, c))
  o_g = jax.random.normal(k2, (2, side, side, c))
  centres = jax.random.uniform(k3, (2, n, 2, 2), minval=0.0, maxval=side - 1.0)
  return v, o_g, centres


def test_region_graph_is_eq_5_at_every_patch_position():
  v, o_g, centres = _layer_inputs()
  n, c = v.shape[1], v.shape[-1]
  prior = np.random.default_rng(0).random((n, n))
  layer = mgrr_layer.RelationalLayer(n, c, 6, patch_size=2, adjacency=prior, use_global=False,
                                     use_channel=False, use_pixel=False, rngs=nnx.Rngs(0))
  got = np.asarray(layer(v, o_g, centres, train=False))
  w = np.asarray(layer.region.kernel[...])                            # (N, c, c): W_i
  a = np.asarray(layer.region.adjacency[...])
  vv = np.asarray(v, np.float64)
  ref = np.zeros_like(vv)
  for i in range(n):
    ref[:, i] = vv[:, i] @ w[i] + sum(a[i, j] * (vv[:, j] @ w[j]) for j in range(n))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fusion', ['gated', 'mean'])
def test_full_layer_is_the_gfc_hierarchy_of_eq_6_8(fusion):
  v, o_g, centres = _layer_inputs()
  n, c, side, p = v.shape[1], v.shape[-1], o_g.shape[1], v.shape[3]
  layer = mgrr_layer.RelationalLayer(n, c, side, patch_size=p, adjacency=np.eye(n) * 0.5,
                                     use_global=True, use_channel=True, use_pixel=True,
                                     fusion=fusion, hidden_dim=8, num_heads=2, rngs=nnx.Rngs(0))
  got = np.asarray(layer(v, o_g, centres, train=False))
  gated = fusion == 'gated'
  cell = lambda m: _np(params_lib.declared_params(m))
  c_g = np.asarray(layer.channel(o_g, train=False), np.float64)
  p_g = np.asarray(layer.pixel(o_g, train=False), np.float64)
  g = _gfc_reference(cell(layer.fuse_og), np.asarray(o_g, np.float64),
                     _gfc_reference(cell(layer.fuse_cp), c_g, p_g, gated), gated)
  v_bar = np.asarray(layer.region(jnp.moveaxis(v, 1, -2)))
  v_bar = np.moveaxis(v_bar, -2, 1)
  # G read at AU i's patch positions: the bilinear samples of the fused map.
  g_i = np.asarray(mgrr_patches.sample_patches(jnp.asarray(g, jnp.float32), centres, p))
  ref = _gfc_reference(cell(layer.fuse_v), v_bar, g_i, gated)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_gfc_scale_switch_scales_each_cell_of_the_hierarchy():
  """gfc_scale = s (a faujax deviation): every GFC of eq. 6 is s x eq. 7-8, i.e. the l2n maps
  have norm s per position; s = 1 (the default) is exactly the paper's cell."""
  v, o_g, centres = _layer_inputs()
  n, c, side, p = v.shape[1], v.shape[-1], o_g.shape[1], v.shape[3]
  s = 2.5
  layer = mgrr_layer.RelationalLayer(n, c, side, patch_size=p, adjacency=np.eye(n) * 0.5,
                                     use_global=True, use_channel=True, use_pixel=True,
                                     gfc_scale=s, hidden_dim=8, num_heads=2, rngs=nnx.Rngs(0))
  got = np.asarray(layer(v, o_g, centres, train=False))
  cell = lambda m: _np(params_lib.declared_params(m))
  c_g = np.asarray(layer.channel(o_g, train=False), np.float64)
  p_g = np.asarray(layer.pixel(o_g, train=False), np.float64)
  g = s * _gfc_reference(cell(layer.fuse_og), np.asarray(o_g, np.float64),
                         s * _gfc_reference(cell(layer.fuse_cp), c_g, p_g))
  v_bar = np.moveaxis(np.asarray(layer.region(jnp.moveaxis(v, 1, -2))), -2, 1)
  g_i = np.asarray(mgrr_patches.sample_patches(jnp.asarray(g, jnp.float32), centres, p))
  ref = s * _gfc_reference(cell(layer.fuse_v), v_bar, g_i)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
  # With beta = 1/2 and equal inputs the output of one cell has norm s per position.
  a = np.asarray(jax.random.normal(jax.random.key(1), (5, c)))
  params = {k: np.asarray(x) for k, x in params_lib.declared_params(layer.fuse_v).items()}
  params['kernel_b'], params['bias_b'] = params['kernel_a'], params['bias_a']
  params['gate_a'] = params['gate_b'] = np.zeros_like(params['gate_a'])
  params['gate_bias'] = np.zeros_like(params['gate_bias'])
  for key, value in params.items():
    getattr(layer.fuse_v, key)[...] = jnp.asarray(value)
  out = np.asarray(mgrr_layer.fuse(layer.fuse_v, jnp.asarray(a), jnp.asarray(a), 'gated', s))
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), s, rtol=1e-5)
  with pytest.raises(ValueError, match='config.model.gfc_scale'):
    mgrr_layer.RelationalLayer(n, c, side, patch_size=p, adjacency=None, use_global=True,
                               use_channel=False, use_pixel=False, gfc_scale=0.0,
                               rngs=nnx.Rngs(0))


def test_ablation_levels_build_only_their_modules():
  v, o_g, centres = _layer_inputs()
  n, c = v.shape[1], v.shape[-1]
  common = dict(patch_size=2, hidden_dim=8, num_heads=2, rngs=nnx.Rngs(0))
  og_only = mgrr_layer.RelationalLayer(n, c, 6, adjacency=None, use_global=True,
                                       use_channel=False, use_pixel=False, **common)
  assert og_only.region is None and og_only.channel is None and og_only.pixel is None
  assert og_only.fuse_cp is None and og_only.fuse_og is None and og_only.fuse_v is not None
  # D_G off + O_G only: v^{k+1} = GFC(v, O_G read at the patches).
  got = np.asarray(og_only(v, o_g, centres, train=False))
  g_i = np.asarray(mgrr_patches.sample_patches(o_g, centres, 2))
  ref = _gfc_reference(_np(params_lib.declared_params(og_only.fuse_v)), np.asarray(v), g_i)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match='config.model.fusion'):
    mgrr_layer.RelationalLayer(n, c, 6, adjacency=None, use_global=True, use_channel=False,
                               use_pixel=False, fusion='sum', **common)


# ------------------------------------------------------------------- eq. 10: the alignment loss


def _eq_10(pred: np.ndarray, gt: np.ndarray, eyes) -> float:
  per = []
  for e in range(pred.shape[0]):
    d_o = np.linalg.norm(gt[e, list(eyes[0])].mean(0) - gt[e, list(eyes[1])].mean(0))
    per.append(sum((gt[e, i, 0] - pred[e, i, 0])**2 + (gt[e, i, 1] - pred[e, i, 1])**2
                   for i in range(pred.shape[1])) / (2 * d_o**2))
  return float(np.mean(per))


def test_alignment_loss_on_the_model_output_is_eq_10(model):
  batch = _batch()
  pred = _forward(model, batch)['landmarks']                          # (B, 68, 2) pixels
  got = float(losses.landmark_alignment_loss(pred, batch['landmarks']))
  ref = _eq_10(np.asarray(pred, np.float64), np.asarray(batch['landmarks'], np.float64),
               (range(36, 42), range(42, 48)))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # The 49-point lists of BP4D / DISFA: eyes 19-24 / 25-30.
  gt49 = np.asarray(batch['landmarks'])[:, schemes.IDX_49_IN_68]
  pred49 = gt49 + np.random.default_rng(0).normal(0, 2, gt49.shape)
  np.testing.assert_allclose(float(losses.landmark_alignment_loss(pred49, gt49)),
                             _eq_10(pred49, gt49, (range(19, 25), range(25, 31))), rtol=1e-5)


# --------------------------------------------------- patches follow the predicted landmarks


def test_patches_move_with_the_landmarks():
  side, image = 16, 64
  ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
  ramp = jnp.asarray(np.stack([xs, ys], -1)[None])                    # value = (x, y) of the cell
  lm = _face(1) * (image / SIZE)
  centres = mgrr_patches.au_patch_centres(lm, AUS, image_size=image, map_size=side)
  patch = np.asarray(mgrr_patches.sample_patches(ramp, centres, 3))   # (1, N, 2, 3, 3, 2)
  ref, _ = au_centres_lib.au_centres(lm, AUS)
  # The centre cell of each patch reads the centre itself, in map coordinates.
  np.testing.assert_allclose(patch[..., 1, 1, :], (np.asarray(ref) + 0.5) / 4 - 0.5, atol=1e-4)
  shifted = mgrr_patches.au_patch_centres(lm + jnp.array([8.0, -4.0]), AUS, image_size=image,
                                          map_size=side)
  moved = np.asarray(mgrr_patches.sample_patches(ramp, shifted, 3))
  np.testing.assert_allclose(moved[..., 1, 1, :] - patch[..., 1, 1, :],
                             np.broadcast_to([2.0, -1.0], moved[..., 1, 1, :].shape), atol=1e-4)


def test_patch_features_are_differentiable_in_the_landmarks():
  fmap = jax.random.normal(jax.random.key(0), (1, 8, 8, 3))
  f = lambda lm: jnp.sum(mgrr_patches.sample_patches(
      fmap, mgrr_patches.au_patch_centres(lm, AUS, image_size=SIZE, map_size=8), 3) ** 2)
  grad = np.asarray(jax.grad(f)(_face(1)))
  rows = [int(i) for roi in au_centres_lib.au_regions(AUS) for c in roi for i in c.points]
  assert np.abs(grad[0, rows]).sum() > 1e-3       # the points the centres are built from
  unused = sorted(set(range(17)) - set(rows))      # the jaw: no AU centre uses it
  assert np.abs(grad[0, unused]).max() == 0.0


def test_au_loss_reaches_the_landmark_branch_through_the_patches(model):
  # The local head sees the landmarks only through the patch positions, so its gradient on the
  # alignment branch's last layer comes through the sampled AU patches.
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def grad(p, batch):
    return jax.grad(lambda p: jnp.sum(
        nnx.merge(graphdef, p, rest)(batch, train=False)['au_logits/local']))(p)

  fc2 = grad(params, _batch())['backbone']['landmark']['fc2']
  assert float(jnp.sum(jnp.abs(fc2['kernel'][...]))) > 1e-6


# ----------------------------------------------------------------------------- the whole model


def test_outputs_heads_and_final_mean(model):
  # The alignment head is sized from the dataset (68 synthetic points; 49 for the JAA-Net lists).
  small = nnx.eval_shape(lambda: _mgrr(_info(num_landmarks=49), backbone=STEM, hidden_dim=16,
                                       num_heads=4, patch_size=3, integrated_dim=8))
  assert small.backbone.landmark.fc2.kernel.shape[-1] == 2 * 49
  out = _forward(model, _batch())
  assert set(out) == {'au_logits/local', 'au_logits/integrated', 'au_probs', 'landmarks'}
  assert out['landmarks'].shape == (2, 68, 2)
  mean = (jax.nn.sigmoid(out['au_logits/local']) + jax.nn.sigmoid(out['au_logits/integrated']))
  np.testing.assert_allclose(out['au_probs'], mean / 2, rtol=1e-6)
  assert all(v.dtype == jnp.float32 for v in out.values())


def _params(model) -> dict:
  return model_state.variables(model)['params']


def test_ablation_rows_and_num_layers_switch_the_modules():
  assert set(models.ablations('mgrr_net')) == {
      'baseline', 'dg', 'dg_random', 'dg+og', 'dg+cg+pg', 'dg+og+cg', 'dg+og+pg', 'full',
      'full_ungated'}
  keys = lambda row: {k.split('.')[-1]: v for k, v in mgrr_net.ABLATIONS[row].items()}
  base = nnx.eval_shape(lambda: tiny(**keys('baseline')))
  assert all(layer.region is None and layer.fuse_v is None for layer in base.layers)
  for row in ('dg+og+cg', 'dg+cg+pg'):
    model = nnx.eval_shape(lambda: tiny(**keys(row)))
    layer = model.layers[0]
    assert (layer.channel is not None) and (layer.pixel is None) == ('pg' not in row)
    assert (layer.fuse_og is None) == ('og' not in row)
  for k in (1, 3):
    model = nnx.eval_shape(lambda: tiny(num_layers=k))
    assert len(model.layers) == k
    assert len(_params(model)['layers']) == k
  # The baseline is the stem's patches straight into the heads.
  out = jax.eval_shape(lambda b: tiny(**keys('baseline'))(b, train=False), _batch())
  assert out['au_probs'].shape == (2, len(AUS))


def test_bad_settings_name_their_config_key():
  with pytest.raises(ValueError, match='num_landmarks'):
    _mgrr(_info(num_landmarks=0), backbone=STEM)
  with pytest.raises(ValueError, match='num_heads'):
    tiny(hidden_dim=10, num_heads=4)
  with pytest.raises(ValueError, match='adjacency_init'):
    tiny(adjacency_init='ones')
  with pytest.raises(ValueError, match='train_labels'):
    _mgrr(_info(train_labels={}), backbone=STEM)
  with pytest.raises(ValueError, match='jaanet_stem'):
    _mgrr(_info(), backbone={'name': 'small_cnn'})


def _load_config(name: str, arg: str | None = None):
  path = os.path.join(ROOT, 'configs', 'mgrr_net', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'test_mgrr_cfg_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def test_paper_recipe_config():
  cfg = _load_config('bp4d')
  assert cfg.model.name == 'mgrr_net' and cfg.model.num_layers == 2
  assert (cfg.model.hidden_dim, cfg.model.num_heads) == (1024, 8)
  assert cfg.augment.image_size == 176 and cfg.data.image_size == 200
  assert tuple(cfg.augment.crop_scale) == (0.88, 0.88) and cfg.augment.flip
  assert (cfg.optim.name, cfg.optim.nesterov, cfg.optim.learning_rate) == ('sgd', True, 0.01)
  assert (cfg.schedule.name, cfg.schedule.decay_every_epochs, cfg.schedule.decay_factor) == (
      'step', 2.0, 0.5)
  assert cfg.loss.landmark_weight == 0.5 and cfg.train.num_epochs == 15
  assert _load_config('disfa').data.name == 'disfa'
  assert _load_config('synthetic', 'disfa').data.builder_config == 'disfa'


def test_landmark_mean_error_matches_a_loop():
  from faujax import metrics
  gt = np.asarray(_face(3), np.float64)
  pred = gt + np.random.default_rng(1).normal(0, 1.5, gt.shape)
  valid = np.array([1, 0, 1])
  ref = []
  for e in (0, 2):
    d_o = np.linalg.norm(gt[e, 36:42].mean(0) - gt[e, 42:48].mean(0))
    ref.append(np.mean([np.hypot(*(pred[e, i] - gt[e, i])) for i in range(68)]) / d_o)
  np.testing.assert_allclose(metrics.landmark_mean_error(pred, gt, valid), np.mean(ref),
                             rtol=1e-10)

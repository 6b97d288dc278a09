"""Tests of the Swin and MAE-ViT trunks (faujax.backbones.swin / vit) and their torch key maps.

The key-map tests rebuild the public code's state-dict names and shapes from the public layout
written out below (CVI-SZU/ME-GraphAU ``model/swin_transformer.py`` and
``OpenGraphAU/model/modeling_pretrain.py``; neither timm nor the public code is needed). The
parity tests run the public modules themselves and need ``FAUJAX_PUBLIC_CODE`` pointing at a
directory holding ``ME-GraphAU/`` plus an environment with torch, torchvision and timm::

  FAUJAX_PUBLIC_CODE=/work/public /work/pvenv/bin/python -m pytest -q \
      tests/test_transformer_trunks.py
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import backbones, model_state
import public_code
import public_layouts
from faujax.backbones import swin, vit

TRANSFORMERS = ('swin_tiny', 'swin_small', 'swin_base', 'mae_vit_base')
NUM_FEATURES = {'swin_tiny': 768, 'swin_small': 768, 'swin_base': 1024, 'mae_vit_base': 768}
GRID_224 = {'swin_tiny': 7, 'swin_small': 7, 'swin_base': 7, 'mae_vit_base': 14}
NUM_PARAMS = {'swin_tiny': 27_519_354, 'swin_small': 48_837_258, 'swin_base': 86_743_224,
              'mae_vit_base': 85_637_376}


def key_map(name):
  return (vit if name == 'mae_vit_base' else swin).torch_key_map(name)


def abstract_params(name, **kwargs):
  trunk = nnx.eval_shape(lambda: backbones.build(name, rngs=nnx.Rngs(0), **kwargs))
  return trunk, model_state.flatten(model_state.variables(trunk)['params'])


# --------------------------------------------------------------------------------------------------
# The public state-dict layouts, written out.

PUBLIC_SWIN = public_layouts.PUBLIC_SWIN
public_state_shapes = public_layouts.transformer_shapes


# --------------------------------------------------------------------------------------------------
# Registry, shapes, dtypes.


def test_registry_entries():
  for name in TRANSFORMERS:
    assert name in backbones.ARCHS
    assert name not in backbones.TORCHVISION_ARCHS
    assert backbones.DEFAULT_INPUT_SIZE[name] == 224
  assert backbones.default_kwargs('swin_tiny') == {
      'window_size': 7, 'drop_rate': 0.0, 'attn_drop_rate': 0.0, 'drop_path_rate': 0.2}
  assert backbones.default_kwargs('swin_small')['drop_path_rate'] == 0.3
  assert backbones.default_kwargs('swin_base')['drop_path_rate'] == 0.5
  assert backbones.default_kwargs('mae_vit_base') == {
      'drop_rate': 0.0, 'attn_drop_rate': 0.0, 'drop_path_rate': 0.0}


@pytest.mark.parametrize('name', TRANSFORMERS)
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_output_shape_at_224(name, dtype):
  trunk = nnx.eval_shape(lambda: backbones.build(name, dtype=dtype, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(trunk)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  out, inter = jax.eval_shape(
      lambda s, x: nnx.merge(graphdef, s)(x, train=False, return_intermediates=True), state, x)
  g = GRID_224[name]
  assert trunk.num_features == NUM_FEATURES[name]
  assert out.shape == (2, g, g, NUM_FEATURES[name]) and out.dtype == dtype
  params = model_state.variables(trunk)['params']
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(params)) == NUM_PARAMS[name]
  assert not model_state.variables(trunk)['batch_stats']
  if name.startswith('swin'):
    c0 = PUBLIC_SWIN[name][0]
    assert {k: v.shape for k, v in inter.items()} == {
        'patch_embed': (2, 56, 56, c0), 'stage1': (2, 56, 56, c0),
        'stage2': (2, 28, 28, 2 * c0), 'stage3': (2, 14, 14, 4 * c0),
        'stage4': (2, 7, 7, 8 * c0)}
  else:
    assert sorted(inter) == sorted(['patch_embed'] + [f'block{i}' for i in range(1, 13)])
    assert all(v.shape == (2, 14, 14, 768) for v in inter.values())


def test_public_swin_geometry_at_224():
  """Odd blocks shift by 3 except in the last stage (7 x 7 map: one window, no shift)."""
  trunk = nnx.eval_shape(lambda: backbones.build('swin_base', rngs=nnx.Rngs(0)))
  for i, (layer, res) in enumerate(zip(trunk.layers, (56, 28, 14, 7))):
    for j, blk in enumerate(layer.blocks):
      assert blk.geometry(res, res) == (7, 3 if j % 2 and i < 3 else 0)
    assert (layer.downsample is None) == (i == 3)
  rates = [blk.drop_path_rate for layer in trunk.layers for blk in layer.blocks]
  np.testing.assert_allclose(rates, np.linspace(0, 0.5, 24))


def small_swin(**kwargs):
  """Two stages: a plain and a shifted block on an 8 x 8 map (4 x 4 windows), then one block on
  the merged 4 x 4 map (a single window, unshifted)."""
  return swin.SwinTransformer(embed_dim=16, depths=(2, 1), num_heads=(2, 4), window_size=4,
                              rngs=nnx.Rngs(0), **kwargs)


def small_vit(**kwargs):
  return vit.VisionTransformer(embed_dim=32, depth=2, num_heads=4, patch_size=8,
                               rngs=nnx.Rngs(0), **kwargs)


SMALL = {'swin': (small_swin, 32, (2, 4, 4, 32)), 'vit': (small_vit, 32, (2, 4, 4, 32))}
_JITTED = {}


def forward(model, x, *, train=False, seed=None, **kwargs):
  """``model(x, train=train, rngs=Rngs(dropout=seed) or None)`` under jit (compiled once per
  module structure and call options)."""
  graphdef, state = nnx.split(model)
  cache_key = (graphdef, train, seed is None, tuple(sorted(kwargs.items())))
  if cache_key not in _JITTED:

    def run(state, x, key):
      rngs = None if key is None else nnx.Rngs(dropout=key)
      return nnx.merge(graphdef, state)(x, train=train, rngs=rngs, **kwargs)

    _JITTED[cache_key] = jax.jit(run)
  return _JITTED[cache_key](state, x, None if seed is None else jax.random.key(seed))


@pytest.mark.parametrize('kind', [pytest.param('swin', marks=pytest.mark.slow), 'vit'])  # swin ~40 s
def test_small_trunk_runs_bf16_and_has_finite_gradients(kind):
  make, size, shape = SMALL[kind]
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  out32 = forward(make(), x)
  out16 = forward(make(dtype=jnp.bfloat16), x)
  assert out32.shape == out16.shape == shape
  assert out16.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(out16)))
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.15)

  model = make(drop_path_rate=0.3)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(p):
    m = nnx.merge(graphdef, p, rest)
    y = m(x, train=True, rngs=nnx.Rngs(dropout=1))
    return jnp.mean(y**2 * jnp.arange(y.shape[-1]))

  grads = jax.jit(jax.grad(loss))(params)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0


@pytest.mark.parametrize('kind', sorted(SMALL))
def test_stochastic_depth_only_in_training_with_rngs(kind):
  make, size, _ = SMALL[kind]
  x = jax.random.normal(jax.random.key(0), (4, size, size, 3))
  model = make(drop_path_rate=0.5)
  ref = forward(model, x)
  np.testing.assert_array_equal(forward(model, x, train=True), ref)  # no rngs: deterministic
  np.testing.assert_array_equal(forward(model, x, seed=0), ref)  # eval: rngs unused
  a = forward(model, x, train=True, seed=0)
  b = forward(model, x, train=True, seed=0)
  c = forward(model, x, train=True, seed=1)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, ref) and not np.allclose(a, c)
  # Some samples keep every block (their output is the eval one), others not.
  same = [np.allclose(a[i], ref[i], rtol=1e-5, atol=1e-5) for i in range(x.shape[0])]
  assert not all(same)
  # Rate 0 (the public MAE default): training is the eval forward even with rngs.
  plain = make(drop_path_rate=0.0)
  np.testing.assert_array_equal(forward(plain, x, train=True, seed=0), forward(plain, x))


def test_swin_other_sizes_pad_and_match_exact_tilings():
  model = small_swin()
  x = jax.random.normal(jax.random.key(0), (1, 40, 44, 3))  # 10 x 11 patches: padded windows
  out = forward(model, x)
  assert out.shape == (1, 5, 6, 32) and bool(jnp.all(jnp.isfinite(out)))
  with pytest.raises(ValueError, match='multiples of the patch size'):
    model(jnp.zeros((1, 30, 32, 3)), train=False)
  with pytest.raises(ValueError, match='multiples of the patch size'):
    small_vit()(jnp.zeros((1, 30, 32, 3)), train=False)


def test_intermediates_end_in_the_output():
  model = small_swin()
  x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
  out, inter = forward(model, x, return_intermediates=True)
  np.testing.assert_allclose(model.norm(inter['stage2']), out, rtol=1e-6, atol=1e-6)
  model = small_vit()
  out, inter = forward(model, x, return_intermediates=True)
  np.testing.assert_allclose(model.norm(inter['block2']), out, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Derived constants against their definitions.


@pytest.mark.parametrize('window,table', [(7, 7), (3, 3), (2, 4)])
def test_relative_position_index_brute_force(window, table):
  index = swin.relative_position_index(window, table)
  tokens = [(r, c) for r in range(window) for c in range(window)]
  for i, (ri, ci) in enumerate(tokens):
    for j, (rj, cj) in enumerate(tokens):
      assert index[i, j] == (ri - rj + table - 1) * (2 * table - 1) + (ci - cj + table - 1)


@pytest.mark.parametrize('size,window,shift', [(56, 7, 3), (14, 7, 3), (8, 4, 2)])
def test_shifted_window_mask_brute_force(size, window, shift):
  mask = swin.shifted_window_mask(size, size, window, shift)

  def region(v):  # the public slices (0, -w), (-w, -s), (-s, None) as labels
    return 0 if v < size - window else (1 if v < size - shift else 2)

  nw = size // window
  assert mask.shape == (nw * nw, window * window, window * window)
  for w in range(nw * nw):
    wr, wc = divmod(w, nw)
    cells = [(wr * window + r, wc * window + c) for r in range(window) for c in range(window)]
    labels = [(region(r), region(c)) for r, c in cells]
    expected = np.array([[0.0 if a == b else -100.0 for b in labels] for a in labels])
    np.testing.assert_array_equal(mask[w], expected)


def test_sinusoid_table_formula():
  table = vit.sinusoid_table(196, 768)
  assert table.shape == (196, 768) and table.dtype == np.float32
  for pos, j in [(0, 0), (0, 1), (5, 10), (195, 767), (100, 301)]:
    angle = pos / np.power(10000, 2 * (j // 2) / 768)
    assert table[pos, j] == np.float32(np.sin(angle) if j % 2 == 0 else np.cos(angle))


# --------------------------------------------------------------------------------------------------
# Key maps.


def _distinct_state_dict(shapes):
  """``({key: float32 array}, total size)``: all values distinct (``public_layouts``)."""
  state = public_layouts.distinct_state_dict(shapes)
  return state, sum(x.size for x in state.values())


@pytest.mark.parametrize('name', [
    'swin_tiny', pytest.param('swin_small', marks=pytest.mark.slow),
    pytest.param('swin_base', marks=pytest.mark.slow), 'mae_vit_base'])
def test_key_map_fills_every_parameter_exactly_once(name):
  shapes = public_state_shapes(name)
  targets, skipped = key_map(name)
  assert not set(targets) & set(skipped)
  assert set(targets) | set(skipped) == set(shapes)
  assert all(isinstance(v, str) and v for v in skipped.values())
  if name.startswith('swin'):
    assert all(k.endswith(('relative_position_index', 'attn_mask')) for k in skipped)
  else:
    assert not skipped

  trunk, expected = abstract_params(name)
  paths = ['/'.join(path) for collection, path, _ in targets.values()]
  assert all(collection == 'params' for collection, _, _ in targets.values())
  assert sorted(paths) == sorted(expected)  # every faujax parameter exactly once

  state, total = _distinct_state_dict({k: shapes[k] for k in targets})
  filled = {}
  for key, (_, path, transform) in targets.items():
    out = transform(state[key])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.flags.c_contiguous and not np.shares_memory(out, state[key])
    assert out.shape == tuple(expected['/'.join(path)].shape), key
    filled['/'.join(path)] = out
  # Every source value lands exactly once (sorted faujax values == sorted source values).
  values = np.concatenate([v.reshape(-1).view(np.int32) for v in filled.values()])
  values = np.sort(values - np.int32(0x3F800000), kind='stable')
  np.testing.assert_array_equal(values, np.arange(total, dtype=np.int32))
  del values
  tree = {}
  for flat, value in filled.items():
    node = tree
    *parents, leaf = flat.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  model_state.check_same_structure(model_state.variables(trunk)['params'], tree, 'params')


@pytest.mark.parametrize('name', ['swin_tiny', 'mae_vit_base'])
def test_key_map_transforms(name):
  targets, _ = key_map(name)
  prefix = 'encoder.' if name == 'mae_vit_base' else 'layers.0.'
  linear = targets[prefix + 'blocks.1.attn.qkv.weight']
  conv = targets[prefix.replace('layers.0.', '') + 'patch_embed.proj.weight']
  ln = targets[prefix + 'blocks.0.norm1.weight']
  assert linear[1][-1] == 'kernel' and conv[1][-1] == 'kernel' and ln[1][-1] == 'scale'
  w = np.arange(12, dtype=np.float64).reshape(3, 4)
  np.testing.assert_array_equal(linear[2](w), w.T)
  k = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
  np.testing.assert_array_equal(conv[2](k), k.transpose(2, 3, 1, 0))
  assert conv[2](k).dtype == np.float32
  if name == 'mae_vit_base':
    assert targets['encoder.blocks.3.attn.q_bias'][1] == ('blocks', '3', 'attn', 'q_bias')
  else:
    assert targets['layers.2.blocks.5.attn.relative_position_bias_table'][1] == (
        'layers', '2', 'blocks', '5', 'attn', 'relative_position_bias_table')


# --------------------------------------------------------------------------------------------------
# Parity with the public code (FAUJAX_PUBLIC_CODE=<dir holding ME-GraphAU/>).

def public_backbone(repo, name):
  """The public backbone exactly as ME-GraphAU / OpenGraphAU's MEFARG builds it (eval mode)."""
  repo = 'ME-GraphAU' if repo == 'ME-GraphAU' else 'ME-GraphAU/OpenGraphAU'
  alias = '_public_megau_trunks' if repo == 'ME-GraphAU' else '_public_ogau_trunks'
  if name == 'mae_vit_base':
    module = public_code.load(repo, 'model.modeling_pretrain', alias)
    model = module.pretrain_mae_base_patch16_224(pretrained=False)
  else:
    module = public_code.load(repo, 'model.swin_transformer', alias)
    model = getattr(module, 'swin_transformer_' + name.split('_')[1])(pretrained=False)
    model.head = None
  return model.eval()


def randomise_(model, seed):
  """Every parameter random: unit-gain weights, LayerNorm scales 1 +- 0.2, biases 0.1 scale."""
  import torch  # pylint: disable=g-import-not-at-top
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if key.endswith('relative_position_bias_table'):
        p.copy_(noise)
      elif p.ndim >= 2:
        p.copy_(noise / math.sqrt(math.prod(p.shape[1:])))
      elif 'norm' in key and key.endswith('weight'):
        p.copy_(1.0 + 0.2 * noise)
      else:
        p.copy_(0.1 * noise)


PARITY_CASES = [('ME-GraphAU', 'swin_tiny'), ('ME-GraphAU', 'swin_small'),
                ('ME-GraphAU', 'swin_base'), ('OpenGraphAU', 'swin_base'),
                ('OpenGraphAU', 'mae_vit_base')]


@pytest.mark.slow
@pytest.mark.parametrize('repo,name', PARITY_CASES)
def test_parity_with_public_code(repo, name, tmp_path, record_property):
  torch = pytest.importorskip('torch')
  model = public_backbone(repo, name)
  randomise_(model, seed=PARITY_CASES.index((repo, name)))
  path = tmp_path / 'backbone.pth'
  torch.save(model.state_dict(), path)
  state = {k: v.numpy() for k, v in torch.load(path, map_location='cpu',
                                               weights_only=True).items()}
  assert {k: tuple(v.shape) for k, v in state.items()} == public_state_shapes(name)

  targets, skipped = key_map(name)
  assert set(targets) | set(skipped) == set(state) and not set(targets) & set(skipped)
  for key in skipped:  # the skipped buffers are what faujax recomputes
    if key.endswith('relative_position_index'):
      np.testing.assert_array_equal(state[key], swin.relative_position_index(7))
    else:
      i = int(key.split('.')[1])
      res = 56 // 2**i
      np.testing.assert_array_equal(state[key], swin.shifted_window_mask(res, res, 7, 3))
  tree = {}
  for key, (_, path, transform) in targets.items():
    node = tree
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = transform(state[key])
  trunk = backbones.build(name, rngs=nnx.Rngs(0))
  model_state.load_variables(trunk, {'params': tree, 'batch_stats': {}})

  x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
  with torch.no_grad():
    expected = model(x).numpy()
  graphdef, variables = nnx.split(trunk)
  run = jax.jit(lambda v, x: nnx.merge(graphdef, v)(x, train=False))
  got = np.asarray(run(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 1))))
  b, g, _, c = got.shape
  assert expected.shape == (b, g * g, c)
  diff = np.abs(got.reshape(b, g * g, c) - expected)
  max_abs, rel = float(diff.max()), float(diff.max() / np.abs(expected).max())
  record_property('max_abs_diff', max_abs)
  record_property('max_rel_diff', rel)
  print(f'\nparity {repo} {name}: max |out| {np.abs(expected).max():.4g}, max abs diff '
        f'{max_abs:.3g}, max rel diff {rel:.3g}')
  assert rel <= 1e-5


@pytest.mark.slow
def test_opengraphau_swin_has_the_same_trunk_keys():
  for name in ('swin_tiny', 'swin_small', 'swin_base'):
    me = public_backbone('ME-GraphAU', name).state_dict()
    og = public_backbone('OpenGraphAU', name).state_dict()
    assert {k: tuple(v.shape) for k, v in me.items()} == {
        k: tuple(v.shape) for k, v in og.items()}

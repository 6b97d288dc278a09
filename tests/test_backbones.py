"""Tests of faujax.backbones: torchvision equivalence (via import tool), counts, JAA-Net stem."""

from __future__ import annotations

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import backbones, layers, model_state
from faujax.backbones import jaanet, pretrained, resnet
from faujax.backbones.pretrained import load_pretrained
from faujax.tools import import_weights

torch = pytest.importorskip('torch')
tnn = torch.nn


# --------------------------------------------------------------------------------------------------
# PyTorch reference networks with torchvision's exact module names (torchvision is not installable).


class TBottleneck(tnn.Module):

  def __init__(self, inplanes: int, planes: int, stride: int):
    super().__init__()
    self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = tnn.BatchNorm2d(planes)
    self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = tnn.BatchNorm2d(planes)
    self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = tnn.BatchNorm2d(planes * 4)
    self.relu = tnn.ReLU()
    self.downsample = None
    if stride != 1 or inplanes != planes * 4:
      self.downsample = tnn.Sequential(
          tnn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), tnn.BatchNorm2d(planes * 4))

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class TResNet50(tnn.Module):

  def __init__(self):
    super().__init__()
    self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = tnn.BatchNorm2d(64)
    self.relu = tnn.ReLU()
    self.maxpool = tnn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for i, n in enumerate((3, 4, 6, 3)):
      planes = 64 * 2**i
      blocks = []
      for j in range(n):
        blocks.append(TBottleneck(inplanes, planes, (1 if i == 0 else 2) if j == 0 else 1))
        inplanes = planes * 4
      setattr(self, f'layer{i + 1}', tnn.Sequential(*blocks))
    self.fc = tnn.Linear(2048, 1000)

  def features(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def randomise_bn(net, seed: int, gamma=(0.5, 1.5)):
  """Random affine params and running statistics in every BatchNorm2d."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, tnn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(torch.empty(n).uniform_(*gamma, generator=g))
        m.bias.copy_(0.1 * torch.randn(n, generator=g))
        m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
        m.running_var.copy_(torch.empty(n).uniform_(0.5, 1.5, generator=g))
        m.num_batches_tracked.fill_(7)


def round_trip(net, arch: str, tmp_path) -> dict:
  src = tmp_path / f'{arch}.pth'
  torch.save(net.state_dict(), src)
  out = str(tmp_path / 'ck')
  assert import_weights.main(['--arch', arch, '--src', str(src), '--out', out]) == 0
  return load_pretrained(str(tmp_path / 'ck'), arch)


def to_nchw(x) -> np.ndarray:
  return np.asarray(x).transpose(0, 3, 1, 2)


def n_params(tree) -> int:
  return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def shape_of(tree) -> dict:
  return jax.tree.map(lambda a: tuple(a.shape), tree)


def build(name: str, seed: int = 0, **kwargs):
  return backbones.build(name, rngs=nnx.Rngs(seed), **kwargs)


def pure_apply(model, **call_kwargs):
  """A jitted pure function ``(variables, x) -> (output, new batch_stats)`` of ``model``."""
  fn = model_state.ModelFn.from_model(model)

  def apply(variables, x):
    m = fn.module(variables)
    out = m(x, **call_kwargs)
    return out, model_state.to_tree(nnx.state(m, nnx.BatchStat))

  return apply


def set_batch_norm_axis(model, axis_name):
  """What the training code does for ``jax.pmap``: ``axis_name`` on every BatchNorm."""
  count = 0
  for _, m in nnx.iter_modules(model):
    if isinstance(m, layers.BatchNorm):
      m.axis_name = axis_name
      count += 1
  assert count > 0


# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resnet50_matches_torch_after_import(tmp_path):
  torch.manual_seed(0)
  net = TResNet50()
  # Small gamma on the residual branch's last BN keeps activations O(1) through 16 blocks.
  randomise_bn(net, 1)
  for name, m in net.named_modules():
    if name.endswith('bn3'):
      with torch.no_grad():
        m.weight.mul_(0.3)
  net.eval()
  assert sum(p.numel() for p in net.parameters()) == 25_557_032
  variables = round_trip(net, 'resnet50', tmp_path)
  assert n_params(variables['params']) + 2048 * 1000 + 1000 == 25_557_032
  x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
  model = build('resnet50')
  model_state.load_variables(model, variables)  # what the training code does with config.pretrained_backbone
  np.testing.assert_array_equal(model.layer2[0].downsample[0].kernel[...],
                                variables['params']['layer2']['0']['downsample']['0']['kernel'])
  out, inter = nnx.jit(lambda m, x: m(x, train=False, return_intermediates=True))(
      model, jnp.asarray(x))
  with torch.no_grad():
    ref = net.features(torch.from_numpy(to_nchw(x))).numpy()
  assert out.shape == (2, 2, 2, 2048) and model.num_features == 2048
  assert float(np.abs(ref).max()) > 0.1
  np.testing.assert_allclose(to_nchw(out), ref, atol=1e-4, rtol=1e-4)
  assert set(inter) == {'stem', 'layer1', 'layer2', 'layer3', 'layer4'}

  # Train mode: same output (batch statistics) and the same running-mean update as torch.
  net.train()
  with torch.no_grad():
    ref_train = net.features(torch.from_numpy(to_nchw(x))).numpy()
  out_train = nnx.jit(lambda m, x: m(x, train=True))(model, jnp.asarray(x))
  np.testing.assert_allclose(to_nchw(out_train), ref_train, atol=1e-4, rtol=1e-4)
  upd = model_state.variables(model)  # the call updated the module's statistics in place
  np.testing.assert_allclose(upd['batch_stats']['bn1']['mean'], net.bn1.running_mean.numpy(),
                             atol=1e-5)
  # torch stores the unbiased batch variance, faujax the biased one (n = 2 * 32 * 32 per channel).
  n = 2 * 32 * 32
  unbiased = (net.bn1.running_var.numpy() - 0.9 * variables['batch_stats']['bn1']['var']) / 0.1
  np.testing.assert_allclose(upd['batch_stats']['bn1']['var'],
                             net.bn1.running_var.numpy() - 0.1 * unbiased / n, rtol=1e-4)


@pytest.mark.parametrize('name,count', [
    ('resnet18', 11_689_512 - 513_000), ('resnet34', 21_797_672 - 513_000),
    ('resnet50', 25_557_032 - 2_049_000), ('resnet101', 44_549_160 - 2_049_000),
    ('densenet121', 7_978_856 - 1_025_000)])
def test_param_counts_equal_torchvision_minus_head(name, count):
  model = nnx.eval_shape(lambda: build(name))
  assert n_params(model_state.variables(model)['params']) == count


def test_build_rejects_unknown_name():
  with pytest.raises(ValueError, match='resnet50.*densenet121.*small_cnn'):
    build('vgg16')


def test_build_rejects_unknown_option():
  with pytest.raises(ValueError, match=r"'small_cnn' has no option 'width'.*widths, extra_convs"):
    build('small_cnn', width=(8,))
  with pytest.raises(ValueError, match="'resnet50' has no option 'stage_sizes'.*none"):
    build('resnet50', stage_sizes=(1, 1))


@pytest.mark.parametrize('name', backbones.ARCHS)
def test_default_kwargs_are_plain_and_are_the_defaults(name):
  defaults = backbones.default_kwargs(name)

  def plain(v):
    if isinstance(v, tuple):
      return all(plain(e) for e in v)
    return isinstance(v, (int, float, bool, str))

  assert all(plain(v) for v in defaults.values()), defaults
  assert 'dtype' not in defaults and 'rngs' not in defaults
  implicit = nnx.eval_shape(lambda: build(name))
  explicit = nnx.eval_shape(lambda: build(name, **defaults))
  assert shape_of(model_state.variables(explicit)) == shape_of(model_state.variables(implicit))


def test_default_kwargs_values():
  assert backbones.default_kwargs('resnet50') == {}
  assert backbones.default_kwargs('small_cnn') == {'widths': (32, 64, 96, 128), 'extra_convs': 0}
  assert backbones.default_kwargs('jaanet_stem') == {
      'widths': (32, 64), 'grids': (8, 4, 2), 'hierarchical': True, 'with_landmarks': True,
      'num_landmarks': 49, 'input_size': 176}
  with pytest.raises(ValueError, match='unknown'):
    backbones.default_kwargs('vgg16')


@pytest.mark.parametrize('name', backbones.ARCHS)
def test_bf16_compute_keeps_fp32_params(name):
  size = 64
  kwargs = {'input_size': size} if name == 'jaanet_stem' else {}
  x = jnp.zeros((1, size, size, 3))

  def run():
    model = build(name, dtype=jnp.bfloat16, **kwargs)
    return model(x, train=False), model_state.variables(model)['params'], model.num_features

  out, params = jax.eval_shape(lambda: run()[:2])
  num_features = nnx.eval_shape(lambda: build(name, **kwargs)).num_features
  assert out.dtype == jnp.bfloat16
  assert out.shape[-1] == num_features
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


@pytest.mark.parametrize('stages,block,channels', [
    ((2, 1), resnet.BasicBlock, 128), ((1, 2), resnet.Bottleneck, 512),
    ((1,), resnet.BasicBlock, 64)])
def test_resnet_num_features_is_the_output_width(stages, block, channels):
  x = jnp.zeros((1, 32, 32, 3))
  out = jax.eval_shape(lambda: resnet.ResNet(stages, block, rngs=nnx.Rngs(0))(x, train=False))
  model = nnx.eval_shape(lambda: resnet.ResNet(stages, block, rngs=nnx.Rngs(0)))
  assert out.shape[-1] == model.num_features == channels


def test_torchvision_variable_paths():
  shapes = pretrained.variable_shapes('resnet50')
  assert shapes['params']['layer1']['0']['downsample']['0']['kernel'].shape == (1, 1, 64, 256)
  assert shapes['batch_stats']['layer4']['2']['bn3']['var'].shape == (2048,)
  assert 'downsample' not in shapes['params']['layer1']['1']
  assert set(shapes['params']) == {'conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4'}
  dense = pretrained.variable_shapes('densenet121')
  assert dense['params']['denseblock4']['denselayer16']['conv2']['kernel'].shape == (3, 3, 128, 32)
  assert dense['batch_stats']['transition3']['norm']['mean'].shape == (1024,)
  assert dense['params']['norm5']['scale'].shape == (1024,)


def test_small_cnn_paths_and_train_step_changes_batch_stats():
  model = build('small_cnn', widths=(8, 16, 16, 32), extra_convs=1)
  assert model_state.variables(model)['params']['conv2_1']['kernel'].shape == (3, 3, 16, 16)
  assert model_state.variables(model)['batch_stats']['bn4_1']['mean'].shape == (32,)
  x = jax.random.normal(jax.random.key(1), (4, 64, 64, 3))
  v = model_state.variables(model)
  out, inter = jax.eval_shape(lambda: model(x, train=False, return_intermediates=True))
  assert out.shape == (4, 4, 4, 32) and list(inter) == ['stage1', 'stage2', 'stage3', 'stage4']
  # The running mean moves by (1 - momentum) times the batch mean of conv1's output.
  expected = 0.1 * np.asarray(model.conv1(x)).mean(axis=(0, 1, 2))
  _, upd = jax.jit(pure_apply(model, train=True))(v, x)
  np.testing.assert_allclose(upd['bn1']['mean'], expected, rtol=1e-4, atol=1e-6)
  assert float(np.abs(expected).max()) > 1e-3
  # Eval mode leaves the statistics alone.
  _, same = jax.jit(pure_apply(model, train=False))(v, x)
  np.testing.assert_array_equal(same['bn1']['mean'], v['batch_stats']['bn1']['mean'])


@pytest.mark.skipif(jax.local_device_count() < 2, reason='needs >= 2 (host) devices')
def test_batch_norm_statistics_are_global_under_pmap_and_sharded_jit():
  ref_model = build('small_cnn', widths=(8, 16))
  model = build('small_cnn', widths=(8, 16))
  set_batch_norm_axis(model, 'batch')
  # The two device shards have different scales, so per-shard statistics would differ.
  x = jax.random.normal(jax.random.key(2), (2, 4, 16, 16, 3)) * jnp.arange(1., 3.)[:, None, None,
                                                                                    None, None]
  v = model_state.variables(ref_model)
  ref_apply = jax.jit(pure_apply(ref_model, train=True))
  ref_out, ref_upd = ref_apply(v, x.reshape(8, 16, 16, 3))
  rep = jax.tree.map(lambda a: jnp.stack([a, a]), v)
  out, upd = jax.pmap(pure_apply(model, train=True), axis_name='batch',
                      devices=jax.local_devices()[:2])(rep, x)
  np.testing.assert_allclose(out.reshape(ref_out.shape), ref_out, atol=1e-4)
  assert jax.tree.structure(upd) == jax.tree.structure(ref_upd)
  for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves(ref_upd)):
    np.testing.assert_allclose(a[0], b, atol=1e-5)
    np.testing.assert_allclose(a[1], b, atol=1e-5)
  # Without the axis name the two shards' statistics differ (the check above can fail).
  _, local = jax.pmap(pure_apply(ref_model, train=True), axis_name='batch',
                      devices=jax.local_devices()[:2])(rep, x)
  assert not np.allclose(local['bn1']['var'][0], local['bn1']['var'][1], atol=1e-3)
  # jit with the batch sharded over a 2-device mesh (no axis name): statistics are global too.
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:2]), ('data',))
  xs = jax.device_put(x.reshape(8, 16, 16, 3),
                      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  out_s, upd_s = ref_apply(v, xs)
  np.testing.assert_allclose(out_s, ref_out, atol=1e-4)
  for a, b in zip(jax.tree.leaves(upd_s), jax.tree.leaves(ref_upd)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bf16_output_close_to_fp32():
  x = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
  m32 = build('small_cnn', widths=(8, 16))
  m16 = build('small_cnn', widths=(8, 16), dtype=jnp.bfloat16)
  v = model_state.variables(m32)
  o32, _ = jax.jit(pure_apply(m32, train=False))(v, x)
  o16, _ = jax.jit(pure_apply(m16, train=False))(v, x)
  assert o16.dtype == jnp.bfloat16
  assert float(np.abs(o32).max()) > 0.1
  np.testing.assert_allclose(np.asarray(o16, np.float32), o32, atol=5e-2, rtol=5e-2)


# --------------------------------------------------------------------------------------------------
# JAA-Net stem.


def test_jaanet_stem_shapes_and_landmarks():
  x = jnp.zeros((2, 176, 176, 3))

  def run():
    model = build('jaanet_stem')
    return model_state.variables(model), model(x, train=False, return_intermediates=True)

  v, (out, inter) = jax.eval_shape(run)
  assert nnx.eval_shape(lambda: build('jaanet_stem')).num_features == 64
  assert out.shape == (2, 44, 44, 64)
  assert inter['hmr1'].shape == (2, 88, 88, 32)
  assert inter['landmarks'].shape == (2, 98)
  region = v['params']['hmr1']['region1']['patches']
  assert region['conv']['kernel'].shape == (64, 3, 3, 32, 16)  # 8x8 patches, C -> C/2
  assert region['conv']['bias'].shape == (64, 16)
  assert region['bn']['scale'].shape == (64, 32)
  assert v['batch_stats']['hmr1']['region1']['patches']['bn']['var'].shape == (64, 32)
  assert v['params']['hmr2']['region3']['patches']['conv']['kernel'].shape == (4, 3, 3, 16, 16)
  assert v['params']['landmark']['fc1']['kernel'].shape == (160 * 5 * 5, 512)
  assert v['params']['landmark']['conv6']['kernel'].shape == (3, 3, 160, 160)
  # The landmark Linear follows input_size.
  small = nnx.eval_shape(lambda: build('jaanet_stem', input_size=64))
  assert model_state.variables(small)['params']['landmark']['fc1']['kernel'].shape == (
      160 * 2 * 2, 512)


def test_jaanet_stacked_init_is_per_patch_torch_default():
  layer = jaanet.LocalConv(4, 8, 6, rngs=nnx.Rngs(0))
  k = np.asarray(layer.patches.conv.kernel[...])
  b = np.asarray(layer.patches.conv.bias[...])
  bound = 1.0 / np.sqrt(9 * 8)  # torch: U(+-1/sqrt(fan_in)), fan_in = 3 * 3 * Cin of one patch
  assert k.shape == (16, 3, 3, 8, 6) and b.shape == (16, 6)
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.9 * bound
  assert np.abs(b).max() <= bound and np.abs(b).max() > 0.8 * bound
  assert not np.allclose(k[0], k[1])  # independent patches


def _random_local_conv(grid, cin, cout, h, seed):
  layer = jaanet.LocalConv(grid, cin, cout, rngs=nnx.Rngs(seed + 1))
  x = jax.random.normal(jax.random.key(seed), (2, h, h, cin))
  k = jax.random.split(jax.random.key(seed + 2), 4)
  bn = layer.patches.bn
  bn.mean[...] = 0.3 * jax.random.normal(k[0], bn.mean.shape)
  bn.var[...] = jax.random.uniform(k[1], bn.var.shape, minval=0.5, maxval=1.5)
  bn.scale[...] = jax.random.uniform(k[2], bn.scale.shape, minval=0.5, maxval=1.5)
  bn.bias[...] = 0.2 * jax.random.normal(k[3], bn.bias.shape)
  return layer, model_state.variables(layer), x


def test_local_conv_matches_loop_over_patches():
  grid, cin, cout, h = 3, 3, 5, 12
  layer, v, x = _random_local_conv(grid, cin, cout, h, 0)
  # Train mode: per-patch batch statistics, and per-patch running-average updates of the (random)
  # stacked running statistics.
  out, upd = jax.jit(pure_apply(layer, train=True))(v, x)
  p = h // grid
  # Reference: one ordinary BatchNorm + torch-style conv per patch, holding that patch's slice.
  bn = layers.BatchNorm(cin, rngs=nnx.Rngs(0))
  conv = jaanet.torch_conv3x3(cin, cout, dtype=jnp.float32, rngs=nnx.Rngs(0))
  single = nnx.jit(lambda bn, conv, x: conv(jax.nn.relu(bn(x, train=True))))
  pv = v['params']['patches']
  pstats = v['batch_stats']['patches']['bn']
  for i in range(grid):
    for j in range(grid):
      k = i * grid + j
      bn.scale[...], bn.bias[...] = pv['bn']['scale'][k], pv['bn']['bias'][k]
      bn.mean[...], bn.var[...] = pstats['mean'][k], pstats['var'][k]
      conv.kernel[...], conv.bias[...] = pv['conv']['kernel'][k], pv['conv']['bias'][k]
      ref = single(bn, conv, x[:, i * p:(i + 1) * p, j * p:(j + 1) * p])
      np.testing.assert_allclose(out[:, i * p:(i + 1) * p, j * p:(j + 1) * p], ref, atol=1e-5)
      for name in ('mean', 'var'):
        np.testing.assert_allclose(upd['patches']['bn'][name][k], getattr(bn, name)[...],
                                   atol=1e-6)
        assert not np.allclose(upd['patches']['bn'][name][k], pstats[name][k])


def test_local_conv_patches_are_independent():
  grid, h = 4, 16
  layer, v, x = _random_local_conv(grid, 3, 4, h, 3)
  apply = jax.jit(lambda x: pure_apply(layer, train=False)(v, x)[0])
  base = apply(x)
  x2 = x.at[:, 5, 6].add(10.0)  # a pixel inside patch (1, 1) of the 4x4 grid (patch side 4)
  diff = np.abs(np.asarray(apply(x2) - base)).max(axis=(0, 3))
  changed = diff > 1e-6
  assert changed[4:8, 4:8].any()
  changed[4:8, 4:8] = False
  assert not changed.any()  # zero padding at patch borders: no leak into the neighbours


def test_hmr_layer_hierarchical_vs_parallel_wiring():
  x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
  outs = {}
  for hier in (True, False):
    def run(hier=hier):
      layer = jaanet.HMRLayer(3, 8, hierarchical=hier, rngs=nnx.Rngs(1))
      return model_state.variables(layer), layer(x, train=False)

    outs[hier] = jax.eval_shape(run)
    assert outs[hier][1].shape == (1, 16, 16, 8)
  # 4x4 branch reads C/2 channels when hierarchical, C when parallel.
  assert outs[True][0]['params']['region2']['patches']['conv']['kernel'].shape[-2] == 4
  assert outs[False][0]['params']['region2']['patches']['conv']['kernel'].shape[-2] == 8
  assert outs[True][0]['params']['region3']['patches']['conv']['kernel'].shape[-2] == 2
  # The wiring, recomputed from the layer's own parts.
  x = x[:, :16, :16]
  for hier in (True, False):
    layer = jaanet.HMRLayer(3, 8, hierarchical=hier, rngs=nnx.Rngs(1))
    y = layer.conv(x)
    r1 = layer.region1(y, train=False)
    r2 = layer.region2(r1 if hier else y, train=False)
    r3 = layer.region3(r2 if hier else y, train=False)
    ref = nnx.max_pool(jax.nn.relu(layer.bn(jnp.concatenate([r1, r2, r3], -1) + y, train=False)),
                       (2, 2), strides=(2, 2))
    np.testing.assert_allclose(layer(x, train=False), ref, atol=1e-6)
    assert float(jnp.abs(r3).max()) > 1e-3


def test_jaanet_stem_rejects_indivisible_input():
  model = build('jaanet_stem', with_landmarks=False, widths=(8, 16))
  with pytest.raises(ValueError, match='not divisible'):
    jax.eval_shape(lambda: model(jnp.zeros((1, 100, 100, 3)), train=False))
  assert jax.eval_shape(lambda: model(jnp.zeros((1, 48, 48, 3)), train=False)).shape == (
      1, 12, 12, 16)
  with pytest.raises(ValueError, match='input_size: expected a positive multiple of 16.*100'):
    nnx.eval_shape(lambda: build('jaanet_stem', input_size=100))
  with pytest.raises(ValueError, match='multiple of 32'):
    nnx.eval_shape(lambda: build('jaanet_stem', widths=(8, 8, 8), input_size=48))
  with pytest.raises(ValueError, match=r'sized for 64x64 inputs \(input_size=64\)'):
    jax.eval_shape(lambda: build('jaanet_stem', widths=(8, 16), input_size=64)(
        jnp.zeros((1, 96, 96, 3)), train=False))


def test_wrong_channel_count_is_rejected():
  with pytest.raises(ValueError, match='3 channels'):
    jax.eval_shape(lambda: build('resnet18')(jnp.zeros((1, 32, 32, 1)), train=False))

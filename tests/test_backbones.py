"""Tests of faujax.backbones: torchvision equivalence (via import tool), counts, JAA-Net stem."""

from __future__ import annotations

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faujax import backbones
from faujax.backbones import jaanet
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


# --------------------------------------------------------------------------------------------------


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
  model = backbones.build('resnet50')
  out, inter = jax.jit(lambda v, x: model.apply(v, x, train=False, return_intermediates=True))(
      variables, jnp.asarray(x))
  with torch.no_grad():
    ref = net.features(torch.from_numpy(to_nchw(x))).numpy()
  assert out.shape == (2, 2, 2, 2048)
  assert float(np.abs(ref).max()) > 0.1
  np.testing.assert_allclose(to_nchw(out), ref, atol=1e-4, rtol=1e-4)
  assert set(inter) == {'stem', 'layer1', 'layer2', 'layer3', 'layer4'}

  # Train mode: same output (batch statistics) and the same running-mean update as torch.
  net.train()
  with torch.no_grad():
    ref_train = net.features(torch.from_numpy(to_nchw(x))).numpy()
  out_train, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, jnp.asarray(x))
  np.testing.assert_allclose(to_nchw(out_train), ref_train, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(upd['batch_stats']['bn1']['mean'], net.bn1.running_mean.numpy(),
                             atol=1e-5)
  # torch stores the unbiased batch variance, Flax the biased one (n = 2 * 32 * 32 per channel).
  n = 2 * 32 * 32
  unbiased = (net.bn1.running_var.numpy() - 0.9 * variables['batch_stats']['bn1']['var']) / 0.1
  np.testing.assert_allclose(upd['batch_stats']['bn1']['var'],
                             net.bn1.running_var.numpy() - 0.1 * unbiased / n, rtol=1e-4)


@pytest.mark.parametrize('name,count', [
    ('resnet18', 11_689_512 - 513_000), ('resnet34', 21_797_672 - 513_000),
    ('resnet50', 25_557_032 - 2_049_000), ('resnet101', 44_549_160 - 2_049_000),
    ('densenet121', 7_978_856 - 1_025_000)])
def test_param_counts_equal_torchvision_minus_head(name, count):
  model = backbones.build(name)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  assert n_params(shapes['params']) == count


def test_build_rejects_unknown_name():
  with pytest.raises(ValueError, match='resnet50.*densenet121.*small_cnn'):
    backbones.build('vgg16')


@pytest.mark.parametrize('name', backbones.ARCHS)
def test_bf16_compute_keeps_fp32_params(name):
  size = 64
  model = backbones.build(name, dtype=jnp.bfloat16)
  x = jnp.zeros((1, size, size, 3))
  out, params = jax.eval_shape(
      lambda: (lambda v: (model.apply(v, x, train=False), v['params']))(
          model.init(jax.random.key(0), x, train=False)))
  assert out.dtype == jnp.bfloat16
  assert out.shape[-1] == model.num_features
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def test_small_cnn_train_step_changes_batch_stats():
  model = backbones.build('small_cnn', widths=(8, 16, 16, 32))
  x = jax.random.normal(jax.random.key(1), (4, 64, 64, 3))
  v = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
  out, inter = jax.eval_shape(lambda: model.apply(v, x, train=False, return_intermediates=True))
  assert out.shape == (4, 4, 4, 32) and list(inter) == ['stage1', 'stage2', 'stage3', 'stage4']
  _, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(v, x)
  assert not np.allclose(upd['batch_stats']['bn1']['mean'], 0.0)


@pytest.mark.skipif(jax.local_device_count() < 2, reason='needs >= 2 (host) devices')
def test_batch_norm_statistics_are_global_under_pmap_and_sharded_jit():
  model = backbones.build('small_cnn', bn_axis_name='batch', widths=(8, 16))
  ref_model = backbones.build('small_cnn', widths=(8, 16))
  # The two device shards have different scales, so per-shard statistics would differ.
  x = jax.random.normal(jax.random.key(2), (2, 4, 16, 16, 3)) * jnp.arange(1., 3.)[:, None, None,
                                                                                    None, None]
  v = jax.jit(lambda x: ref_model.init(jax.random.key(0), x, train=False))(x[0])
  ref_out, ref_upd = jax.jit(lambda v, x: ref_model.apply(v, x, train=True,
                                                          mutable=['batch_stats']))(
                                                              v, x.reshape(8, 16, 16, 3))
  rep = jax.tree.map(lambda a: jnp.stack([a, a]), v)
  out, upd = jax.pmap(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']),
                      axis_name='batch', devices=jax.local_devices()[:2])(rep, x)
  np.testing.assert_allclose(out.reshape(ref_out.shape), ref_out, atol=1e-4)
  for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves(ref_upd)):
    np.testing.assert_allclose(a[0], b, atol=1e-5)
    np.testing.assert_allclose(a[1], b, atol=1e-5)
  # jit with the batch sharded over a 2-device mesh (no axis name): statistics are global too.
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:2]), ('data',))
  xs = jax.device_put(x.reshape(8, 16, 16, 3),
                      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  out_s, upd_s = jax.jit(lambda v, x: ref_model.apply(v, x, train=True,
                                                      mutable=['batch_stats']))(v, xs)
  np.testing.assert_allclose(out_s, ref_out, atol=1e-4)
  for a, b in zip(jax.tree.leaves(upd_s), jax.tree.leaves(ref_upd)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bf16_output_close_to_fp32():
  x = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
  m32 = backbones.build('small_cnn', widths=(8, 16))
  m16 = backbones.build('small_cnn', widths=(8, 16), dtype=jnp.bfloat16)
  v = jax.jit(lambda x: m32.init(jax.random.key(0), x, train=False))(x)
  o32, o16 = jax.jit(lambda v, x: (m32.apply(v, x, train=False), m16.apply(v, x, train=False)))(
      v, x)
  assert o16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(o16, np.float32), o32, atol=5e-2, rtol=5e-2)


# --------------------------------------------------------------------------------------------------
# JAA-Net stem.


def test_jaanet_stem_shapes_and_landmarks():
  model = backbones.build('jaanet_stem')
  x = jnp.zeros((2, 176, 176, 3))
  v, (out, inter) = jax.eval_shape(
      lambda: (lambda v: (v, model.apply(v, x, train=False, return_intermediates=True)))(
          model.init(jax.random.key(0), x, train=False)))
  assert out.shape == (2, 44, 44, 64) and model.num_features == 64
  assert inter['hmr1'].shape == (2, 88, 88, 32)
  assert inter['landmarks'].shape == (2, 98)
  region = v['params']['hmr1']['region1']['patches']
  assert region['conv']['kernel'].shape == (64, 3, 3, 32, 16)  # 8x8 patches, C -> C/2
  assert v['params']['hmr2']['region3']['patches']['conv']['kernel'].shape == (4, 3, 3, 16, 16)
  assert v['params']['landmark']['fc1']['kernel'].shape == (160 * 5 * 5, 512)


def _random_local_conv(grid, cin, cout, h, seed):
  layer = jaanet.LocalConv(grid, cout)
  x = jax.random.normal(jax.random.key(seed), (2, h, h, cin))
  v = jax.jit(lambda x: layer.init(jax.random.key(seed + 1), x, train=False))(x)
  k = jax.random.split(jax.random.key(seed + 2), 4)
  bs = v['batch_stats']['patches']['bn']
  v = {'params': v['params'], 'batch_stats': {'patches': {'bn': {
      'mean': 0.3 * jax.random.normal(k[0], bs['mean'].shape),
      'var': jax.random.uniform(k[1], bs['var'].shape, minval=0.5, maxval=1.5)}}}}
  return layer, v, x


def test_local_conv_matches_loop_over_patches():
  grid, cin, cout, h = 3, 3, 5, 12
  layer, v, x = _random_local_conv(grid, cin, cout, h, 0)
  # Train mode: per-patch batch statistics, and per-patch running-average updates of the (random)
  # stacked running statistics.
  out, upd = jax.jit(lambda v, x: layer.apply(v, x, train=True, mutable=['batch_stats']))(v, x)
  p = h // grid
  single = jaanet.PatchBNReLUConv(cout, True)
  apply_single = jax.jit(lambda v, x: single.apply(v, x, mutable=['batch_stats']))
  for i in range(grid):
    for j in range(grid):
      k = i * grid + j
      pv = jax.tree.map(lambda a: a[k], {c: v[c]['patches'] for c in v})
      ref, ref_upd = apply_single(pv, x[:, i * p:(i + 1) * p, j * p:(j + 1) * p])
      np.testing.assert_allclose(out[:, i * p:(i + 1) * p, j * p:(j + 1) * p], ref, atol=1e-5)
      for name in ('mean', 'var'):
        np.testing.assert_allclose(upd['batch_stats']['patches']['bn'][name][k],
                                   ref_upd['batch_stats']['bn'][name], atol=1e-6)


def test_local_conv_patches_are_independent():
  grid, h = 4, 16
  layer, v, x = _random_local_conv(grid, 3, 4, h, 3)
  apply = jax.jit(lambda x: layer.apply(v, x, train=False))
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
    layer = jaanet.HMRLayer(8, hierarchical=hier)
    outs[hier] = jax.eval_shape(
        lambda: (lambda v: (v, layer.apply(v, x, train=False)))(
            layer.init(jax.random.key(1), x, train=False)))
    assert outs[hier][1].shape == (1, 16, 16, 8)
  # 4x4 branch reads C/2 channels when hierarchical, C when parallel.
  assert outs[True][0]['params']['region2']['patches']['conv']['kernel'].shape[-2] == 4
  assert outs[False][0]['params']['region2']['patches']['conv']['kernel'].shape[-2] == 8


def test_jaanet_stem_rejects_indivisible_input():
  model = backbones.build('jaanet_stem', with_landmarks=False)
  with pytest.raises(ValueError, match='not divisible'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 100, 100, 3)), train=False))


def test_wrong_channel_count_is_rejected():
  with pytest.raises(ValueError, match='3 channels'):
    jax.eval_shape(lambda: backbones.build('resnet18').init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False))

"""Tests of faujax.tools.import_weights and faujax.backbones.pretrained (round trips, bad input)."""

from __future__ import annotations

import collections
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import backbones, model_state
from faujax.backbones import pretrained
from faujax.tools import import_weights

torch = pytest.importorskip('torch')
tnn = torch.nn

REPO = pathlib.Path(__file__).resolve().parents[1]


def randomise_bn(net, seed: int):
  """Random affine params and running statistics in every BatchNorm2d."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, tnn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(torch.empty(n).uniform_(0.5, 1.5, generator=g))
        m.bias.copy_(0.1 * torch.randn(n, generator=g))
        m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
        m.running_var.copy_(torch.empty(n).uniform_(0.5, 1.5, generator=g))


def to_nchw(x) -> np.ndarray:
  return np.asarray(x).transpose(0, 3, 1, 2)


def n_params(tree) -> int:
  return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def round_trip(net, arch: str, tmp_path) -> dict:
  src = tmp_path / f'{arch}.pth'
  torch.save(net.state_dict(), src)
  out = str(tmp_path / 'ck')
  assert import_weights.main(['--arch', arch, '--src', str(src), '--out', out]) == 0
  return pretrained.load_pretrained(str(tmp_path / 'ck'), arch)


def synthetic_state_dict(arch: str, seed: int = 0, head: bool = True) -> dict[str, np.ndarray]:
  """Random tensors under torchvision's keys and shapes (built from the converter's own map)."""
  rng = np.random.default_rng(seed)
  sd = {k: rng.normal(size=shape).astype(np.float32)
        for k, (_, _, shape) in import_weights.torch_key_map(arch).items()}
  if head:
    if arch.startswith('densenet'):
      sd['classifier.weight'] = np.zeros((1000, 1024), np.float32)
      sd['classifier.bias'] = np.zeros((1000,), np.float32)
    else:
      sd['fc.weight'] = np.zeros((1000, 512 if arch in ('resnet18', 'resnet34') else 2048),
                                 np.float32)
      sd['fc.bias'] = np.zeros((1000,), np.float32)
  return sd


# --------------------------------------------------------------------------------------------------
# DenseNet-121 reference with torchvision's names (torchvision itself is not installable here).


class TDenseLayer(tnn.Module):

  def __init__(self, cin: int):
    super().__init__()
    self.norm1 = tnn.BatchNorm2d(cin)
    self.relu1 = tnn.ReLU()
    self.conv1 = tnn.Conv2d(cin, 128, 1, bias=False)
    self.norm2 = tnn.BatchNorm2d(128)
    self.relu2 = tnn.ReLU()
    self.conv2 = tnn.Conv2d(128, 32, 3, 1, 1, bias=False)

  def forward(self, x):
    return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class TDenseBlock(tnn.ModuleDict):

  def __init__(self, n: int, cin: int):
    super().__init__()
    for i in range(n):
      self.add_module(f'denselayer{i + 1}', TDenseLayer(cin + 32 * i))

  def forward(self, x):
    feats = [x]
    for layer in self.values():
      feats.append(layer(torch.cat(feats, 1)))
    return torch.cat(feats, 1)


def t_densenet121():
  layers = collections.OrderedDict([
      ('conv0', tnn.Conv2d(3, 64, 7, 2, 3, bias=False)), ('norm0', tnn.BatchNorm2d(64)),
      ('relu0', tnn.ReLU()), ('pool0', tnn.MaxPool2d(3, 2, 1))])
  c = 64
  for i, n in enumerate((6, 12, 24, 16)):
    layers[f'denseblock{i + 1}'] = TDenseBlock(n, c)
    c += 32 * n
    if i != 3:
      layers[f'transition{i + 1}'] = tnn.Sequential(collections.OrderedDict([
          ('norm', tnn.BatchNorm2d(c)), ('relu', tnn.ReLU()),
          ('conv', tnn.Conv2d(c, c // 2, 1, bias=False)), ('pool', tnn.AvgPool2d(2, 2))]))
      c //= 2
  layers['norm5'] = tnn.BatchNorm2d(c)
  net = tnn.Module()
  net.features = tnn.Sequential(layers)
  net.classifier = tnn.Linear(1024, 1000)
  return net



# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_densenet121_matches_torch_after_import(tmp_path):
  torch.manual_seed(1)
  net = t_densenet121()
  randomise_bn(net, 2)
  net.eval()
  params_only = sum(p.numel() for p in net.parameters())
  assert params_only == 7_978_856
  variables = round_trip(net, 'densenet121', tmp_path)
  assert n_params(variables['params']) + 1024 * 1000 + 1000 == 7_978_856
  x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
  model = backbones.build('densenet121', rngs=nnx.Rngs(0))
  model_state.load_variables(model, variables)
  assert model.num_features == 1024
  out = nnx.jit(lambda m, x: m(x, train=False))(model, jnp.asarray(x))
  with torch.no_grad():
    ref = net.features(torch.from_numpy(to_nchw(x))).numpy()
  assert out.shape == (2, 2, 2, 1024)
  assert (ref < 0).any()  # ends at norm5, no final ReLU
  np.testing.assert_allclose(to_nchw(out), ref, atol=1e-4, rtol=1e-4)


class _Evil:
  """Unpickling this object would create a marker file (never allowed to happen)."""

  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickle_refused_by_weights_only_is_never_unpickled(tmp_path):
  marker = tmp_path / 'pwned'
  src = tmp_path / 'evil.pth'
  torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'payload': _Evil(str(marker))}, src)
  assert not marker.exists()
  with pytest.raises(import_weights.UnsafeCheckpointError, match='weights_only=True.*refused'):
    import_weights.load_state_dict(str(src))
  assert not marker.exists()
  # Through the command line as well: clean error, exit status 1, nothing written.
  proc = subprocess.run(
      [sys.executable, '-m', 'faujax.tools.import_weights', '--arch', 'resnet18', '--src', str(src),
       '--out', str(tmp_path / 'out')], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert proc.returncode == 1
  assert 'never unpickles it another way' in proc.stderr
  assert not marker.exists() and not (tmp_path / 'out').exists()


def test_state_dict_of_another_architecture_is_named(tmp_path):
  sd = synthetic_state_dict('densenet121')
  with pytest.raises(import_weights.StateDictMismatchError) as err:
    import_weights.convert_state_dict('resnet50', sd)
  msg = str(err.value)
  assert "--arch 'resnet50'" in msg
  assert 'missing keys' in msg and 'conv1.weight (64, 3, 7, 7)' in msg
  assert 'unexpected keys' in msg and 'features.conv0.weight' in msg
  assert "looks like a 'densenet121' state dict" in msg
  # resnet18 weights offered as resnet34: the missing blocks are listed by name.
  with pytest.raises(import_weights.StateDictMismatchError, match=r'layer1\.2\.conv1\.weight'):
    import_weights.convert_state_dict('resnet34', synthetic_state_dict('resnet18'))


def test_missing_unexpected_and_wrong_shapes_are_listed():
  sd = synthetic_state_dict('resnet18')
  del sd['layer2.0.bn1.running_var']
  sd['layer9.0.conv1.weight'] = np.zeros((3, 3), np.float32)
  sd['conv1.weight'] = np.zeros((64, 3, 3, 3), np.float32)
  with pytest.raises(import_weights.StateDictMismatchError) as err:
    import_weights.convert_state_dict('resnet18', sd)
  msg = str(err.value)
  assert 'missing keys (1)' in msg and 'layer2.0.bn1.running_var (128,)' in msg
  assert 'unexpected keys (1)' in msg and 'layer9.0.conv1.weight (3, 3)' in msg
  assert 'wrong shapes (1)' in msg
  assert 'conv1.weight: expected (64, 3, 7, 7), got (64, 3, 3, 3)' in msg


def test_conversion_layout_and_skips():
  sd = synthetic_state_dict('resnet18')
  sd['bn1.num_batches_tracked'] = np.array(5)
  sd = {f'module.{k}': v for k, v in sd.items()}  # a DataParallel checkpoint
  variables, report = import_weights.convert_state_dict('resnet18', sd)
  np.testing.assert_array_equal(variables['params']['conv1']['kernel'],
                                sd['module.conv1.weight'].transpose(2, 3, 1, 0))
  down = variables['params']['layer2']['0']['downsample']['0']['kernel']
  np.testing.assert_array_equal(down[0, 0], sd['module.layer2.0.downsample.0.weight'][:, :, 0, 0].T)
  np.testing.assert_array_equal(variables['params']['layer1']['1']['bn2']['scale'],
                                sd['module.layer1.1.bn2.weight'])
  np.testing.assert_array_equal(variables['batch_stats']['layer4']['1']['bn2']['var'],
                                sd['module.layer4.1.bn2.running_var'])
  assert set(report['skipped_keys']) == {'fc.weight', 'fc.bias', 'bn1.num_batches_tracked'}
  assert 'classifier head' in report['skipped_keys']['fc.weight']
  assert any('module.' in note for note in report['notes'])


def test_converted_variables_do_not_share_memory_with_the_torch_tensors():
  """A torch step after the conversion (in place, as an optimiser or a BatchNorm update does)
  must not change the converted arrays: biases, BatchNorm scales and statistics included."""
  sd = {k: torch.from_numpy(v.copy()) for k, v in synthetic_state_dict('resnet18').items()}
  variables, _ = import_weights.convert_state_dict('resnet18', sd)
  before = jax.tree.map(np.copy, variables)
  with torch.no_grad():
    for tensor in sd.values():
      tensor.add_(1.0)
  for (path, now), then in zip(jax.tree_util.tree_leaves_with_path(variables),
                               jax.tree.leaves(before)):
    np.testing.assert_array_equal(now, then, err_msg=jax.tree_util.keystr(path))
  for collection, path in (('params', ('conv1', 'kernel')), ('params', ('bn1', 'bias')),
                           ('batch_stats', ('bn1', 'var'))):
    assert import_weights.to_flax(sd['conv1.weight'], collection, path).flags.owndata


def test_legacy_densenet_key_names_are_accepted():
  sd = synthetic_state_dict('densenet121', head=False)
  legacy = {k.replace('denselayer1.norm1.', 'denselayer1.norm.1.').replace(
      'denselayer1.conv2.', 'denselayer1.conv.2.'): v for k, v in sd.items()}
  assert 'features.denseblock1.denselayer1.norm.1.weight' in legacy
  variables, report = import_weights.convert_state_dict('densenet121', legacy)
  np.testing.assert_array_equal(
      variables['params']['denseblock1']['denselayer1']['norm1']['scale'],
      sd['features.denseblock1.denselayer1.norm1.weight'])
  assert report['notes']


def test_safetensors_round_trip_and_load_checks(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  sd = synthetic_state_dict('resnet18', seed=3)
  src = tmp_path / 'r18.safetensors'
  save_file(sd, str(src))
  out = tmp_path / 'ck'
  assert import_weights.main(['--arch', 'resnet18', '--src', str(src), '--out', str(out)]) == 0
  meta = json.loads((out / pretrained.META_FILE).read_text())
  assert meta['arch'] == 'resnet18' and sorted(meta['torch_keys']) == sorted(sd)
  assert set(meta['skipped_keys']) == {'fc.weight', 'fc.bias'}
  loaded = pretrained.load_pretrained(str(out), 'resnet18')
  np.testing.assert_array_equal(loaded['params']['layer3']['0']['conv2']['kernel'],
                                sd['layer3.0.conv2.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(loaded['batch_stats']['bn1']['mean'], sd['bn1.running_mean'])
  # Refuses to overwrite; arch mismatch and non-directories are clear errors.
  assert import_weights.main(['--arch', 'resnet18', '--src', str(src), '--out', str(out)]) == 1
  with pytest.raises(ValueError, match="holds 'resnet18' weights but the model builds 'resnet34'"):
    pretrained.load_pretrained(str(out), 'resnet34')
  with pytest.raises(ValueError, match='not a directory'):
    pretrained.load_pretrained(str(tmp_path / 'nowhere'), 'resnet18')

  # Placing the weights under a model's backbone submodule.
  class Wrapper(nnx.Module):

    def __init__(self, rngs):
      self.backbone = backbones.build('resnet18', rngs=rngs)
      self.head = nnx.Linear(512, 3, rngs=rngs)

    def __call__(self, x, *, train):
      return self.head(self.backbone(x, train=train).mean((1, 2)))

  shapes = model_state.variables(nnx.eval_shape(lambda: Wrapper(nnx.Rngs(0))))
  model_vars = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  merged = pretrained.merge_pretrained(model_vars, loaded)
  np.testing.assert_array_equal(merged['params']['backbone']['conv1']['kernel'],
                                loaded['params']['conv1']['kernel'])
  assert float(jnp.abs(model_vars['params']['backbone']['conv1']['kernel']).max()) == 0.0
  assert 'head' in merged['params']
  with pytest.raises(pretrained.PretrainedMismatchError, match='missing'):
    pretrained.merge_pretrained(model_vars, {'params': {'conv1': loaded['params']['conv1']}})
  # What the training code does: replace the backbone sub-trees, load them into the model.
  model = Wrapper(nnx.Rngs(1))
  variables = model_state.variables(model)
  variables['params']['backbone'] = loaded['params']
  variables['batch_stats']['backbone'] = loaded['batch_stats']
  model_state.load_variables(model, variables)
  np.testing.assert_array_equal(model.backbone.layer3[0].conv2.kernel[...],
                                sd['layer3.0.conv2.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(model.backbone.layer2[0].downsample[1].var[...],
                                sd['layer2.0.downsample.1.running_var'])
  assert model(jnp.zeros((1, 32, 32, 3)), train=False).shape == (1, 3)


def test_tool_rejects_architectures_without_torchvision_weights():
  with pytest.raises(ValueError, match='torchvision weights exist only for'):
    import_weights.torch_key_map('jaanet_stem')


def test_faujax_import_does_not_import_torch():
  code = ('import sys, faujax.backbones, faujax.backbones.pretrained, faujax.tools.import_weights; '
          "assert 'torch' not in sys.modules, 'torch imported'")
  subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO, timeout=120)

"""The NNX models and trunks compute what the linen versions they replaced computed.

``tests/data/linen_reference.npz`` was written by ``tests/data/make_linen_reference.py`` with the
last linen code (commit 'tests/data: linen reference outputs ...'): for fixed weights (redrawn
here from each variable's path and recorded mean / std, so the weights need not be stored) and
fixed inputs, the eval-mode outputs, the train-mode outputs and the updated BatchNorm statistics.
Loading the same weights into the NNX modules must reproduce all three to 1e-5; loading also
checks that every variable path and shape is unchanged (checkpoints and the torchvision key maps
depend on them).
"""

from __future__ import annotations

import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import model_state
from faujax.backbones import densenet, jaanet, resnet
from faujax.models import emotion_gcn, macg
from faujax.models.baseline import Baseline

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, 'data', 'linen_reference.npz')
_SMALL = {'name': 'small_cnn', 'widths': (8, 8, 8, 16), 'extra_convs': 0}
_TINY_MACG = dict(backbone=_SMALL, node_dim=8, rel_features=4, top_k=2, mafg_kernel_sizes=(3, 5),
                  mafg_square_kernel=3)


def _info(task: str, n: int) -> types.SimpleNamespace:
  return types.SimpleNamespace(task=task, num_labels=n, label_names=[f'L{i}' for i in range(n)])


def _redraw(path: str, spec: np.ndarray) -> np.ndarray:
  """The fixture's weights (``make_linen_reference.redraw``, without importing linen)."""
  loc, scale, shape = spec[0], spec[1], tuple(int(s) for s in spec[2:])
  import zlib  # pylint: disable=g-import-not-at-top
  x = loc + scale * np.random.default_rng(zlib.crc32(path.encode())).standard_normal(shape)
  if path.endswith('/var'):
    x = np.abs(x) + 0.5
  return x.astype(np.float32)


class _Trunk(nnx.Module):
  """A trunk as a model: ``{'features': map[, 'landmarks']}`` (the fixture's trunk cases)."""

  def __init__(self, trunk):
    self.trunk = trunk

  def __call__(self, batch, *, train, rngs=None):
    fmap, inter = self.trunk(batch['image'], train=train, return_intermediates=True)
    out = {'features': fmap}
    if 'landmarks' in inter:
      out['landmarks'] = inter['landmarks']
    return out


def _emotion_gcn(rngs):
  rng = np.random.default_rng(0)
  z = rng.normal(size=(9, 16))
  adj = rng.uniform(size=(9, 9))
  info = types.SimpleNamespace(task='expression', num_labels=7, label_names=[f'c{i}' for i in
                                                                             range(7)])
  model = emotion_gcn.EmotionGCN(info, backbone=_SMALL, classifier='linear', rngs=rngs)
  # The reference model was built from these constants; the GCN replaces the linear heads.
  model.classifier = 'gcn'
  del model.head, model.va_head
  model.label_gcn = emotion_gcn.LabelGCN(z, adj, 16, num_layers=2, hidden_dim=8, rngs=rngs)
  return model


CASES = {
    'baseline_au': lambda r: Baseline(_info('au', 5), backbone={**_SMALL, 'widths': (8, 16),
                                                                'extra_convs': 1}, rngs=r),
    'baseline_expression': lambda r: Baseline(_info('expression', 7), backbone=_SMALL,
                                              pooling='max', rngs=r),
    'macg_full': lambda r: macg.MACG(_info('au', 5), **_TINY_MACG, rngs=r),
    'macg_public': lambda r: macg.MACG(_info('au', 5), **_TINY_MACG, axial_order='xy',
                                       shared_ccfg_block=True, rngs=r),
    'macg_baseline': lambda r: macg.MACG(_info('au', 5), **_TINY_MACG, use_mafg=False,
                                         use_ccfg=False, rngs=r),
    'emotion_gcn': _emotion_gcn,
    'resnet_basic': lambda r: _Trunk(resnet.ResNet((2, 1), resnet.BasicBlock, rngs=r)),
    'resnet_bottleneck': lambda r: _Trunk(resnet.ResNet((1, 2), resnet.Bottleneck, rngs=r)),
    'densenet_tiny': lambda r: _Trunk(densenet.DenseNet(growth_rate=8, block_config=(2, 3),
                                                        num_init_features=16, rngs=r)),
    'jaanet_stem': lambda r: _Trunk(jaanet.JAANetStem(widths=(8, 16), num_landmarks=5,
                                                      input_size=64, rngs=r)),
}


@pytest.fixture(scope='module')
def reference():
  return dict(np.load(FIXTURE))


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  out: dict = {}
  for path, value in flat.items():
    node = out
    *parents, leaf = path.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def _case_arrays(reference, name: str, kind: str) -> dict[str, np.ndarray]:
  prefix = f'{name}/{kind}/'
  return {k[len(prefix):]: v for k, v in reference.items() if k.startswith(prefix)}


def _strip_trunk_scope(flat: dict[str, np.ndarray], name: str,
                       depth: int = 1) -> dict[str, np.ndarray]:
  """The fixture's trunk cases sit under a linen scope ('ResNet_0', path component ``depth``);
  the NNX test wrapper's under 'trunk'."""
  if name not in ('resnet_basic', 'resnet_bottleneck', 'densenet_tiny', 'jaanet_stem'):
    return flat
  out = {}
  for path, v in flat.items():
    parts = path.split('/')
    out['/'.join(parts[:depth] + ['trunk'] + parts[depth + 1:])] = v
  return out


@pytest.mark.parametrize('name', list(CASES))
def test_nnx_equals_linen(reference, name):
  specs = _strip_trunk_scope(_case_arrays(reference, name, 'variables'), name)
  raw = {path: spec for path, spec in _case_arrays(reference, name, 'variables').items()}
  # Redraw with the linen path (the seed of each leaf's values), place at the NNX path.
  values = dict(zip(specs, (_redraw(p, s) for p, s in raw.items())))
  model = CASES[name](nnx.Rngs(0))
  model_state.load_variables(model, _unflatten(values))  # raises on any path / shape change
  size = int(reference[f'{name}/image_size'])
  images = jnp.asarray(np.random.default_rng(1).standard_normal((4, size, size, 3)), jnp.float32)
  fn = model_state.ModelFn.from_model(model)
  v = model_state.variables(model)
  eval_out, _ = jax.jit(lambda v, b: fn(v, b, train=False))(v, {'image': images})
  train_out, new_stats = jax.jit(lambda v, b: fn(v, b, train=True))(v, {'image': images})
  # 1e-5 relative to each output's scale: the redrawn weights give activations up to ~100 in the
  # deep trunks, where float32 summation order alone moves the last digits.
  worst = 0.0
  for kind, got in (('eval', eval_out), ('train', train_out)):
    expected = _case_arrays(reference, name, kind)
    assert set(expected) == set(got), (kind, sorted(expected), sorted(got))
    for key, ref in expected.items():
      scale = max(1.0, float(np.max(np.abs(ref))))
      np.testing.assert_allclose(np.asarray(got[key]), ref, rtol=1e-5, atol=1e-5 * scale,
                                 err_msg=f'{name} {kind} {key}')
      worst = max(worst, float(np.max(np.abs(np.asarray(got[key]) - ref))) / scale)
  ref_stats = _strip_trunk_scope(_case_arrays(reference, name, 'new_batch_stats'), name, 0)
  got_stats = model_state.flatten(new_stats)
  assert set(ref_stats) == set(got_stats)
  for path, ref in ref_stats.items():
    scale = max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(np.asarray(got_stats[path]), ref, rtol=1e-5, atol=1e-5 * scale,
                               err_msg=f'{name} batch_stats {path}')
    worst = max(worst, float(np.max(np.abs(np.asarray(got_stats[path]) - ref))) / scale)
  print(f'{name}: max |NNX - linen| / max(1, |linen|) = {worst:.2e}')

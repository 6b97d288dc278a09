"""Records the linen models' outputs for fixed weights and inputs (run once, before the NNX port).

It imports the linen modules, so it runs only on the commit that wrote the fixture (7dc1ab2, the
last linen code): ``git worktree add /tmp/linen 7dc1ab2 && cd /tmp/linen &&
python tests/data/make_linen_reference.py`` -> tests/data/linen_reference.npz. Kept as the record
of how the fixture was made.

For each case: the flattened variables (``<collection>/<path>``), the input images, the eval-mode
outputs and the train-mode outputs with the updated ``batch_stats``. ``tests/test_nnx_equivalence.py``
loads the same variables into the NNX models and compares.
"""

import os
import zlib

import flax
import jax
import jax.numpy as jnp
import numpy as np

from faujax import backbones
from faujax.backbones import densenet, resnet
from faujax.models import emotion_gcn, macg
from faujax.models.baseline import Baseline

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'linen_reference.npz')
SMALL = {'widths': (8, 8, 8, 16)}


def _cases():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(9, 16)).astype(np.float64)
  adj = rng.uniform(size=(9, 9)).astype(np.float64)
  t = emotion_gcn._as_tuple
  yield 'baseline_au', Baseline(task='au', num_labels=5, backbone='small_cnn',
                                backbone_kwargs={'widths': (8, 16), 'extra_convs': 1}), 32
  yield 'baseline_expression', Baseline(task='expression', num_labels=7, backbone='small_cnn',
                                        backbone_kwargs=SMALL, pooling='max'), 32
  tiny = dict(num_labels=5, backbone='small_cnn', backbone_kwargs=SMALL, node_dim=8,
              rel_features=4, top_k=2, mafg_kernel_sizes=(3, 5), mafg_square_kernel=3)
  yield 'macg_full', macg.MACG(**tiny), 48
  yield 'macg_public', macg.MACG(**tiny, axial_order='xy', shared_ccfg_block=True), 48
  yield 'macg_baseline', macg.MACG(**tiny, use_mafg=False, use_ccfg=False), 48
  yield 'emotion_gcn', emotion_gcn.EmotionGCN(embeddings=t(z), adjacency=t(adj), num_classes=7,
                                              arch='small_cnn', backbone_kwargs=SMALL,
                                              gcn_layers=2, hidden_dim=8), 32
  yield 'resnet_basic', _Trunk(arch='resnet_basic'), 32
  yield 'resnet_bottleneck', _Trunk(arch='resnet_bottleneck'), 32
  yield 'densenet_tiny', _Trunk(arch='densenet_tiny'), 32
  yield 'jaanet_stem', _Trunk(arch='jaanet_stem', kwargs=(('widths', (8, 16)),
                                                        ('num_landmarks', 5))), 64


class _Trunk(flax.linen.Module):
  arch: str
  kwargs: tuple = ()

  @flax.linen.compact
  def __call__(self, batch, *, train):
    if self.arch == 'resnet_basic':
      trunk = resnet.ResNet(stage_sizes=(2, 1), block=resnet.BasicBlock)
    elif self.arch == 'resnet_bottleneck':
      trunk = resnet.ResNet(stage_sizes=(1, 2), block=resnet.Bottleneck)
    elif self.arch == 'densenet_tiny':
      trunk = densenet.DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16)
    else:
      trunk = backbones.build(self.arch, **dict(self.kwargs))
    fmap, inter = trunk(batch['image'], train=train, return_intermediates=True)
    out = {'features': fmap}
    if 'landmarks' in inter:
      out['landmarks'] = inter['landmarks']
    return out


def synthetic_variables(init_variables):
  """Replaces every leaf by values drawn from (its path, its init's mean and std).

  Returns the variables and ``{path: [mean, std, *shape]}``; ``tests/test_nnx_equivalence.py``
  redraws the same values with ``redraw`` (so the weights need not be stored).
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(init_variables), sep='/')
  out, manifest = {}, {}
  for path, v in flat.items():
    v = np.asarray(v, np.float64)
    loc, scale = float(v.mean()), max(float(v.std()), 0.1)
    manifest[path] = np.asarray([loc, scale, *v.shape], np.float64)
    out[path] = jnp.asarray(redraw(path, manifest[path]))
  return flax.traverse_util.unflatten_dict(out, sep='/'), manifest


def test_images(size):
  """The fixed input batch (4, size, size, 3) float32."""
  return np.random.default_rng(1).standard_normal((4, size, size, 3)).astype(np.float32)


def redraw(path, spec):
  """The values of leaf ``path`` (``[mean, std, *shape]``), float32; variances kept positive."""
  loc, scale, shape = spec[0], spec[1], tuple(int(s) for s in spec[2:])
  x = loc + scale * np.random.default_rng(zlib.crc32(path.encode())).standard_normal(shape)
  if path.endswith('/var'):
    x = np.abs(x) + 0.5
  return x.astype(np.float32)


def main():
  arrays = {}
  for name, model, size in _cases():
    images = jnp.asarray(test_images(size))
    batch = {'image': images}
    shapes = model.init(jax.random.key(0), batch, train=False)
    variables, manifest = synthetic_variables(shapes)
    eval_out = model.apply(variables, batch, train=False)
    train_out, new_vars = model.apply(variables, batch, train=True, mutable=['batch_stats'])
    arrays[f'{name}/image_size'] = np.asarray(size)
    for path, spec in manifest.items():
      arrays[f'{name}/variables/{path}'] = spec
    for k, v in eval_out.items():
      arrays[f'{name}/eval/{k}'] = np.asarray(v)
    for k, v in train_out.items():
      arrays[f'{name}/train/{k}'] = np.asarray(v)
    for path, v in flax.traverse_util.flatten_dict(new_vars.get('batch_stats', {}),
                                                   sep='/').items():
      arrays[f'{name}/new_batch_stats/{path}'] = np.asarray(v)
    print(name, {k: v.shape for k, v in eval_out.items()})
  np.savez_compressed(OUT, **arrays)
  print(OUT, os.path.getsize(OUT), 'bytes')


if __name__ == '__main__':
  main()

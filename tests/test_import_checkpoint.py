"""faujax.tools.import_checkpoint: ME-GraphAU stage-1 state dicts (public key names and shapes)
-> a faujax workdir that Predictor loads; every faujax parameter filled exactly once; mismatches
named; a pickle that would run code refused."""

import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from faujax import model_state  # noqa: E402
from faujax import predictor as predictor_lib  # noqa: E402
from faujax.tools import import_checkpoint  # noqa: E402
from faujax.tools import import_weights  # noqa: E402


def _me_graphau_state_dict(num_aus=12, seed=0):
  """ME-GraphAU MEFARG(backbone='resnet18') keys and shapes, written from its public module
  names (model/ANFL.py, model/basic_block.py): in 512 -> out 128 = 512 // 4; every tensor random
  with distinct values, so each faujax value can be traced to one source value."""
  rng = np.random.default_rng(seed)

  def linear_block(prefix, c_in, c_out):
    return {f'{prefix}.fc.weight': (c_out, c_in), f'{prefix}.fc.bias': (c_out,),
            f'{prefix}.bn.weight': (c_out,), f'{prefix}.bn.bias': (c_out,),
            f'{prefix}.bn.running_mean': (c_out,), f'{prefix}.bn.running_var': (c_out,),
            f'{prefix}.bn.num_batches_tracked': ()}

  def bn(prefix, c):
    return {f'{prefix}.{n}': (c,) for n in ('weight', 'bias', 'running_mean', 'running_var')} | {
        f'{prefix}.num_batches_tracked': ()}

  # torchvision's ResNet-18 names (ME-GraphAU's model/resnet.py keeps them), fc dropped.
  shapes = {'backbone.conv1.weight': (64, 3, 7, 7), **bn('backbone.bn1', 64)}
  c_in = 64
  for layer, c in enumerate((64, 128, 256, 512), start=1):
    for block in range(2):
      p = f'backbone.layer{layer}.{block}'
      first_in = c_in if block == 0 else c
      shapes.update({f'{p}.conv1.weight': (c, first_in, 3, 3), **bn(f'{p}.bn1', c),
                     f'{p}.conv2.weight': (c, c, 3, 3), **bn(f'{p}.bn2', c)})
      if block == 0 and layer > 1:
        shapes.update({f'{p}.downsample.0.weight': (c, c_in, 1, 1), **bn(f'{p}.downsample.1', c)})
    c_in = c
  shapes.update(linear_block('global_linear', 512, 128))
  for i in range(num_aus):
    shapes.update(linear_block(f'head.class_linears.{i}', 128, 128))
  shapes.update({'head.gnn.U.weight': (128, 128), 'head.gnn.U.bias': (128,),
                 'head.gnn.V.weight': (128, 128), 'head.gnn.V.bias': (128,),
                 'head.gnn.bnv.weight': (num_aus,), 'head.gnn.bnv.bias': (num_aus,),
                 'head.gnn.bnv.running_mean': (num_aus,), 'head.gnn.bnv.running_var': (num_aus,),
                 'head.gnn.bnv.num_batches_tracked': (), 'head.sc': (num_aus, 128)})
  sd = {}
  for k, shape in shapes.items():
    sd[k] = (np.asarray(7, np.int64) if k.endswith('num_batches_tracked')
             else rng.uniform(0.1, 1.0, shape).astype(np.float32))
  return sd


@pytest.mark.slow  # ~25 s: builds, saves and restores a ResNet-18 model twice
def test_me_graphau_converts_every_parameter_exactly_once(tmp_path):
  sd = _me_graphau_state_dict()
  out = str(tmp_path / 'imported')
  report = import_checkpoint.import_me_graphau(sd, out)
  assert report['arch'] == 'resnet18' and report['num_aus'] == 12
  assert sorted(report['skipped']) == sorted(k for k in sd if k.endswith('num_batches_tracked'))
  pred = predictor_lib.Predictor.from_checkpoint(out, which='latest', batch_size=2)
  assert pred.config.model.name == 'macg' and pred.config.ablation == 'baseline'
  assert pred.task.label_names[0] == 'AU1' and pred.info.name == 'bp4d'
  values = {'params': pred.state.params, 'batch_stats': pred.state.batch_stats}
  got = np.sort(np.concatenate([np.ravel(np.asarray(v)) for c in values
                                for v in model_state.flatten(values[c]).values()]))
  want = np.sort(np.concatenate([np.ravel(v) for k, v in sd.items()
                                 if not k.endswith('num_batches_tracked')]))
  np.testing.assert_array_equal(got, want)  # every source value lands exactly once
  p = pred.state.params
  np.testing.assert_array_equal(p['global_block']['fc']['kernel'], sd['global_linear.fc.weight'].T)
  np.testing.assert_array_equal(p['mafg']['au_blocks']['kernel'][3],
                                sd['head.class_linears.3.fc.weight'].T)
  np.testing.assert_array_equal(pred.state.batch_stats['mafg']['au_blocks']['bn']['var'][5],
                                sd['head.class_linears.5.bn.running_var'])
  np.testing.assert_array_equal(p['gnn_0']['U_kernel'], sd['head.gnn.U.weight'].T)
  np.testing.assert_array_equal(p['head']['sc'], sd['head.sc'])
  np.testing.assert_array_equal(p['backbone']['conv1']['kernel'],
                                sd['backbone.conv1.weight'].transpose(2, 3, 1, 0))
  assert 'AU24_p' in pred.columns()  # its label space came with the workdir, not a dataset


def test_mismatches_are_named(tmp_path):
  sd = _me_graphau_state_dict(num_aus=8)
  del sd['head.gnn.U.bias']
  sd['head.gnn.V.bias'] = np.zeros((64,), np.float32)
  sd['head.extra.weight'] = np.zeros((3,), np.float32)
  with pytest.raises(import_weights.StateDictMismatchError) as e:
    import_checkpoint.import_me_graphau(sd, str(tmp_path / 'x'))
  msg = str(e.value)
  for name in ('head.gnn.U.bias', 'head.gnn.V.bias', 'head.extra.weight'):
    assert name in msg
  assert not os.path.exists(tmp_path / 'x' / 'checkpoints')
  with pytest.raises(ValueError, match='--au_names'):
    import_checkpoint.import_me_graphau(_me_graphau_state_dict(num_aus=41), str(tmp_path / 'y'))


class _RunsCode:
  def __reduce__(self):
    return (os.system, (f'touch {_RunsCode.marker}',))


def test_pickle_that_runs_code_is_refused(tmp_path):
  _RunsCode.marker = str(tmp_path / 'pwned')
  path = tmp_path / 'evil.pth'
  torch.save({'head.sc': torch.zeros(12, 128), 'payload': _RunsCode()}, path)
  assert not os.path.exists(_RunsCode.marker)
  rc = import_checkpoint.main([str(path), '--format', 'me_graphau_stage1', '--out',
                               str(tmp_path / 'out')])
  assert rc == 2
  assert not os.path.exists(_RunsCode.marker)
  assert not os.path.exists(tmp_path / 'out')


def _densenet121_features(rng):
  """torchvision DenseNet-121 ``features`` names and shapes (growth 32, bn_size 4, blocks
  6-12-24-16, transitions halving the channels), random values."""
  shapes = {'features.conv0.weight': (64, 3, 7, 7)}

  def bn(prefix, c):
    shapes.update({f'{prefix}.{n}': (c,) for n in ('weight', 'bias', 'running_mean',
                                                    'running_var')})
    shapes[f'{prefix}.num_batches_tracked'] = ()

  bn('features.norm0', 64)
  c = 64
  for b, layers in enumerate((6, 12, 24, 16), start=1):
    for j in range(1, layers + 1):
      p = f'features.denseblock{b}.denselayer{j}'
      c_in = c + (j - 1) * 32
      bn(f'{p}.norm1', c_in)
      shapes[f'{p}.conv1.weight'] = (128, c_in, 1, 1)
      bn(f'{p}.norm2', 128)
      shapes[f'{p}.conv2.weight'] = (32, 128, 3, 3)
    c += layers * 32
    if b < 4:
      bn(f'features.transition{b}.norm', c)
      shapes[f'features.transition{b}.conv.weight'] = (c // 2, c, 1, 1)
      c //= 2
  bn('features.norm5', c)
  assert c == 1024
  return {k: (np.asarray(3, np.int64) if k.endswith('num_batches_tracked')
              else rng.uniform(0.1, 1.0, s).astype(np.float32)) for k, s in shapes.items()}


@pytest.fixture(scope='module')
def expression_data(tmp_path_factory):
  """The tiny synthetic expression dataset (7 classes + valence / arousal) and a GloVe file."""
  from faujax import labels
  data_dir = str(tmp_path_factory.mktemp('tfds_expr'))
  data = {'name': 'synthetic_faces', 'builder_config': 'expression', 'data_dir': data_dir,
          'image_size': 48, 'num_subjects': 9, 'frames_per_subject': 6}
  glove = tmp_path_factory.mktemp('glove') / 'glove.300d.txt'
  rng = np.random.default_rng(1)
  words = list(labels.EXPRESSIONS_7) + ['valence', 'arousal']
  glove.write_text(''.join(f'{w} ' + ' '.join(f'{v:.5f}' for v in rng.normal(size=300)) + '\n'
                           for w in words))
  return data, str(glove)


@pytest.mark.slow  # ~30 s: a DenseNet-121 model built, saved and restored
def test_emotion_gcn_converts_and_checks_its_adjacency(expression_data, tmp_path):
  from faujax import main as main_lib
  from faujax import train
  from faujax.data import input_pipeline
  from faujax.models import emotion_gcn
  data, glove = expression_data
  rng = np.random.default_rng(0)
  config = main_lib._load_config_file(
      os.path.join(os.path.dirname(__file__), '..', 'configs', 'emotion_gcn', 'affectnet.py'))
  config.data.update(data)
  info = input_pipeline.get_dataset_info(train.resolve_config(config).data)
  a = emotion_gcn.build_adjacency(info, p=0.5, keep_va_edge=True)  # the public code's settings
  # models.py Emotion_GCN: features (DenseNet-121), gc1 (300, 512), gc2 (512, 1024), A (9, 9).
  sd = {**_densenet121_features(rng), 'gc1.weight': rng.uniform(0.1, 1, (300, 512)),
        'gc2.weight': rng.uniform(0.1, 1, (512, 1024)), 'A': a.astype(np.float32)}
  sd = {k: np.asarray(v, np.float32 if k not in ('A',) and v.dtype != np.int64 else v.dtype)
        for k, v in sd.items()}
  with pytest.raises(ValueError, match='adjacency differs'):
    import_checkpoint.import_emotion_gcn({**sd, 'A': sd['A'] + 0.1}, str(tmp_path / 'bad'),
                                         embeddings=glove, data=data)
  out = str(tmp_path / 'egcn')
  report = import_checkpoint.import_emotion_gcn(sd, out, embeddings=glove, data=data)
  assert report['adjacency_max_difference'] < 1e-6
  pred = predictor_lib.Predictor.from_checkpoint(out, which='latest')
  p = pred.state.params
  np.testing.assert_array_equal(p['label_gcn']['gcn0']['kernel'], sd['gc1.weight'])
  np.testing.assert_array_equal(p['label_gcn']['gcn1']['kernel'], sd['gc2.weight'])
  np.testing.assert_array_equal(p['backbone']['conv0']['kernel'],
                                sd['features.conv0.weight'].transpose(2, 3, 1, 0))
  values = {'params': pred.state.params, 'batch_stats': pred.state.batch_stats}
  got = np.sort(np.concatenate([np.ravel(np.asarray(v)) for c in values
                                for v in model_state.flatten(values[c]).values()]))
  want = np.sort(np.concatenate([np.ravel(v) for k, v in sd.items()
                                 if k != 'A' and not k.endswith('num_batches_tracked')]))
  np.testing.assert_array_equal(got, want)
  assert pred.columns()[-9:] == ['neutral', 'happy', 'sad', 'surprise', 'fear', 'disgust',
                                 'anger', 'valence', 'arousal']

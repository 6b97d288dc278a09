"""faujax.tools.import_checkpoint: every format and variant of the authors' checkpoints.

State dicts are built from the public code's key names and shapes (``public_layouts``) with all
values distinct, in the layouts its scripts save ({'epoch', 'state_dict' / 'model_state_dict',
'optimizer'}, with or without DataParallel's ``module.`` prefix): every faujax parameter and
statistic must be filled exactly once and no tensor left unused. The end-to-end tests write the
run and predict from it without any dataset; equality of the outputs with the public models
themselves is ``test_released_parity.py``.
"""

import os

import numpy as np
import pytest

import public_layouts

torch = pytest.importorskip('torch')

from faujax import labels  # noqa: E402
from faujax import model_state  # noqa: E402
from faujax import trained_run  # noqa: E402
from faujax.tools import import_checkpoint  # noqa: E402
from faujax.tools import import_weights  # noqa: E402


def _save(sd, path, *, wrapper='state_dict', module_prefix=True):
  """As a public training script saves: the weights, the optimiser state, the epoch."""
  tensors = {(f'module.{k}' if module_prefix else k): torch.from_numpy(np.asarray(v))
             for k, v in sd.items()}
  if wrapper is None:
    torch.save(tensors, path)
    return
  optimizer = {'state': {0: {'step': torch.tensor(3.0), 'exp_avg': torch.zeros(2)}},
               'param_groups': [{'lr': 1e-4, 'betas': (0.9, 0.999), 'weight_decay': 5e-4,
                                 'params': [0]}]}
  other = 'optimizer_state_dict' if wrapper == 'model_state_dict' else 'optimizer'
  torch.save({'epoch': 19, wrapper: tensors, other: optimizer}, path)


def _values(tree) -> np.ndarray:
  return np.sort(np.concatenate([np.ravel(np.asarray(v, np.float32))
                                 for v in model_state.flatten(tree).values()]))


def _check_every_value_once(sd, variables, not_weights=()):
  """Every float of the state dict (counters and ``not_weights`` aside) is in the faujax
  variables exactly once, and nothing else is."""
  want = np.sort(np.concatenate([np.ravel(v) for k, v in sd.items()
                                 if not k.endswith('num_batches_tracked') and k not in not_weights]))
  got = _values({c: variables[c] for c in ('params', 'batch_stats')})
  np.testing.assert_array_equal(got, want)


# ME-GraphAU (format, stage, trunk, AUs) and OpenGraphAU variants: the key map fills exactly.
FILL_CASES = [
    ('me_graphau', 1, 'resnet18', 12), ('me_graphau', 2, 'resnet18', 8),
    ('me_graphau', 1, 'resnet50', 8), ('me_graphau', 2, 'resnet50', 12),
    pytest.param('me_graphau', 2, 'resnet101', 12, marks=pytest.mark.slow),
    ('me_graphau', 2, 'swin_tiny', 12),
    pytest.param('me_graphau', 1, 'swin_small', 12, marks=pytest.mark.slow),
    pytest.param('me_graphau', 2, 'swin_base', 8, marks=pytest.mark.slow),
    ('opengraphau', 1, 'resnet18', 27), ('opengraphau', 2, 'resnet50', 27),
    pytest.param('opengraphau', 2, 'swin_base', 27, marks=pytest.mark.slow),
    ('opengraphau', 1, 'mae_vit_base', 27),
    pytest.param('opengraphau', 2, 'mae_vit_base', 27, marks=pytest.mark.slow),
]


@pytest.mark.parametrize('fmt,stage,arch,n', FILL_CASES)
def test_me_graphau_key_map_fills_every_variable_exactly_once(fmt, stage, arch, n):
  ogau = fmt == 'opengraphau'
  shapes = public_layouts.me_graphau_shapes(stage, arch, n, opengraphau=ogau,
                                            sided=14 if ogau else 0)
  sd = public_layouts.distinct_state_dict(shapes)
  found = import_checkpoint.detect(import_checkpoint.strip_module(
      {f'module.{k}': v for k, v in sd.items()}))
  assert (found.format, found.stage, found.arch, found.num_aus) == (fmt, stage, arch, n)
  key_map, known = import_checkpoint.me_graphau_key_map(arch, n, found.num_sided, stage, ogau)
  config, info = _config_and_info(found)
  template = import_checkpoint._template(config, info, {})  # pylint: disable=protected-access
  variables, skipped = import_checkpoint.fill(template, sd, key_map, known)
  _check_every_value_once(sd, variables, not_weights=known)
  assert set(skipped) == {k for k in sd if k.endswith('num_batches_tracked')} | set(known)


def _config_and_info(found):
  """What ``import_state_dict`` builds for a detected AU checkpoint (without writing it)."""
  from faujax import config_base
  from faujax import models
  name, names = import_checkpoint._au_names(found, None, None)  # pylint: disable=protected-access
  relative = ('me_graphau/opengraphau.py' if found.format == 'opengraphau'
              else f'me_graphau/{name}.py')
  config = config_base.repository_config(f'{relative}:stage{found.stage}')
  config.model.backbone = models.backbone_config(found.arch)
  config = config_base.resolve_config(config)
  info = import_checkpoint._au_info(name, names, 256, 'eye_level')  # pylint: disable=protected-access
  return config, info


@pytest.mark.parametrize('n', [8, 12])
def test_macg_key_map_fills_every_variable_exactly_once(n):
  from faujax import config_base
  sd = public_layouts.distinct_state_dict(public_layouts.macg_shapes(n))
  found = import_checkpoint.detect(sd)
  assert (found.format, found.arch, found.num_aus) == ('macg', 'resnet50', n)
  key_map, known = import_checkpoint.macg_key_map(n)
  config = config_base.resolve_config(config_base.repository_config(
      f'macg/{"disfa" if n == 8 else "bp4d"}.py:public_code'))
  info = import_checkpoint._au_info('x', labels.au_label_names(tuple(range(1, n + 1))), 256,  # pylint: disable=protected-access
                                    'eye_level')
  template = import_checkpoint._template(config, info, {})  # pylint: disable=protected-access
  variables, skipped = import_checkpoint.fill(template, sd, key_map, known)
  _check_every_value_once(sd, variables, not_weights=known)
  assert sorted(k for k in skipped if 'class_linear.' in k and 'ccfg' not in k) == sorted(
      k for k in sd if k.startswith('head.class_linear.'))  # the public forward's unused block
  assert config.model.shared_ccfg_block and config.model.axial_order == 'xy'


@pytest.mark.slow  # ~20 s: a ResNet-18 ME-GraphAU run written, loaded and run on a photo
@pytest.mark.parametrize('module_prefix', [True, False])
def test_me_graphau_file_becomes_a_run_that_predicts(module_prefix, tmp_path):
  sd = public_layouts.distinct_state_dict(public_layouts.me_graphau_shapes(2, 'resnet18', 12))
  path = str(tmp_path / 'ME-GraphAU_resnet18_BP4D_fold1.pth')
  _save(sd, path, module_prefix=module_prefix)
  rc = import_checkpoint.main([path, '--out', str(tmp_path / 'run')])
  assert rc == 0
  run = trained_run.load_run(str(tmp_path / 'run'))
  assert run.config.model.name == 'me_graphau' and run.config.model.stage == 2
  assert run.info.label_names == labels.au_label_names(labels.BP4D_AUS)
  assert (run.info.image_size, run.config.augment.image_size) == (256, 224)
  assert run.info.alignment == 'eye_level' and run.config.augment.eval_crop_scale == 224 / 256
  _check_every_value_once(sd, run.variables)
  p = run.variables['params']
  np.testing.assert_array_equal(p['head']['sc'], sd['head.sc'])
  np.testing.assert_array_equal(p['gnn']['1']['E'], sd['head.gnn.E2.weight'].T)
  np.testing.assert_array_equal(run.variables['batch_stats']['gnn']['0']['bn_edges']['var'],
                                sd['head.gnn.bne1.running_var'].reshape(12, 12))
  np.testing.assert_array_equal(p['edge_extractor']['arm']['q']['kernel'],
                                sd['head.edge_extractor.ARM.linear_q.weight'].T)


@pytest.mark.slow  # ~25 s: an OpenGraphAU ResNet-18 run through python -m faujax.predict's path
def test_opengraphau_file_predicts_41_named_aus(tmp_path, monkeypatch):
  from faujax import predict
  sd = public_layouts.distinct_state_dict(public_layouts.me_graphau_shapes(
      2, 'resnet18', 27, opengraphau=True, sided=14))
  sd = {k: (v / np.abs(v).max() if v.dtype == np.float32 else v) for k, v in sd.items()}
  path = str(tmp_path / 'OpenGprahAU-ResNet18_second_stage.pth')
  _save(sd, path)
  monkeypatch.setenv('FAUJAX_CACHE_DIR', str(tmp_path / 'cache'))
  face = (np.random.default_rng(0).random((300, 260, 3)) * 255).astype(np.uint8)
  from PIL import Image
  Image.fromarray(face).save(tmp_path / 'face.png')
  out = str(tmp_path / 'au.csv')
  assert predict.main(['--checkpoint', path, str(tmp_path / 'face.png'), '--faces', 'cropped',
                       '--out', out]) == 0
  import pandas as pd
  table = pd.read_csv(out)
  assert 'AUL01_p' in table and 'AUR14_c' in table and 'AU39_p' in table
  assert len([c for c in table if c.endswith('_p')]) == 41
  cached = os.listdir(tmp_path / 'cache' / 'imported')
  assert len(cached) == 1
  stamp = os.path.getmtime(tmp_path / 'cache' / 'imported' / cached[0])
  assert predict.main(['--checkpoint', path, str(tmp_path / 'face.png'), '--faces', 'cropped',
                       '--out', out]) == 0  # converted once: the cache is reused
  assert os.path.getmtime(tmp_path / 'cache' / 'imported' / cached[0]) == stamp


def _emotion_gcn_sd(rng):
  sd = public_layouts.distinct_state_dict(public_layouts.emotion_gcn_shapes())
  sd['A'] = (rng.uniform(0, 1, (9, 9)) * (rng.uniform(size=(9, 9)) < 0.5) + np.eye(9)
             ).astype(np.float32)  # a re-weighted adjacency with its own values
  return sd


@pytest.mark.slow  # ~30 s: a DenseNet-121 run written and loaded twice
@pytest.mark.parametrize('layout', ['main.py', 'state dict'])
def test_emotion_gcn_file_becomes_a_run_with_its_own_adjacency(layout, tmp_path):
  rng = np.random.default_rng(0)
  sd = _emotion_gcn_sd(rng)
  path = str(tmp_path / 'emotion_gcn.pth')
  _save(sd, path, wrapper='model_state_dict' if layout == 'main.py' else None,
        module_prefix=layout == 'main.py')
  z = rng.normal(size=(9, 300)).astype(np.float32)
  if layout == 'main.py':  # the authors' embedding file: a torch-saved (9, 300) tensor
    emb = str(tmp_path / 'emb.pkl')
    torch.save(torch.from_numpy(z), emb)
  else:  # a GloVe text file with the nine node words
    emb = str(tmp_path / 'glove.300d.txt')
    words = list(labels.EXPRESSIONS_7) + ['valence', 'arousal']
    with open(emb, 'w', encoding='utf-8') as f:
      f.writelines(f'{w} ' + ' '.join(f'{v:.6f}' for v in row) + '\n' for w, row in zip(words, z))
  assert import_checkpoint.main([path, '--out', str(tmp_path / 'run'), '--embeddings',
                                 emb]) == 0
  run = trained_run.load_run(str(tmp_path / 'run'))
  assert run.config.model.name == 'emotion_gcn' and run.config.model.p == 0.5
  constants = run.variables['constants']['label_gcn']
  np.testing.assert_array_equal(constants['adjacency'], sd['A'])  # the checkpoint's own A
  np.testing.assert_allclose(constants['embeddings'], z, atol=1e-6)
  _check_every_value_once(sd, run.variables, not_weights=('A',))
  assert run.info.label_names == list(labels.EXPRESSIONS_7) and run.info.alignment == 'emotion_gcn'


def test_mismatches_and_ambiguities_are_named(tmp_path):
  sd = public_layouts.distinct_state_dict(public_layouts.me_graphau_shapes(1, 'resnet18', 8))
  del sd['head.gnn.U.bias']
  sd['head.gnn.V.bias'] = np.zeros((64,), np.float32)
  sd['head.extra.weight'] = np.zeros((3,), np.float32)
  with pytest.raises(import_weights.StateDictMismatchError) as e:
    import_checkpoint.import_state_dict(sd, str(tmp_path / 'x'))
  for name in ('head.gnn.U.bias', 'head.gnn.V.bias', 'head.extra.weight'):
    assert name in str(e.value)
  assert not os.path.exists(tmp_path / 'x')
  macg12 = public_layouts.distinct_state_dict(public_layouts.macg_shapes(12))
  with pytest.raises(ValueError, match='--dataset bp4d or emotionet'):
    import_checkpoint.import_state_dict(macg12, str(tmp_path / 'y'))
  with pytest.raises(ValueError, match='those of macg'):
    import_checkpoint.import_state_dict(macg12, str(tmp_path / 'y'), format='me_graphau')
  odd = public_layouts.distinct_state_dict(public_layouts.me_graphau_shapes(1, 'resnet18', 5))
  with pytest.raises(ValueError, match='--au_names'):
    import_checkpoint.import_state_dict(odd, str(tmp_path / 'z'))
  with pytest.raises(import_weights.StateDictMismatchError, match='fit none of the formats'):
    import_checkpoint.detect({'fc.weight': np.zeros((2, 2))})
  resnet34 = dict(sd)  # ResNet-18's basic blocks with six in layer3
  resnet34['backbone.layer3.5.conv1.weight'] = np.zeros((256, 256, 3, 3), np.float32)
  with pytest.raises(import_weights.StateDictMismatchError, match='not ResNet-18/50/101'):
    import_checkpoint.detect(resnet34)


class _RunsCode:
  def __reduce__(self):
    return (os.system, (f'touch {_RunsCode.marker}',))


@pytest.mark.parametrize('where', ['checkpoint', 'embeddings'])
def test_a_pickle_that_would_run_code_is_refused(where, tmp_path, capsys):
  _RunsCode.marker = str(tmp_path / 'pwned')
  evil = tmp_path / 'evil.pth'
  torch.save({'head.sc': torch.zeros(12, 128), 'payload': _RunsCode()}, evil)
  if where == 'checkpoint':
    rc = import_checkpoint.main([str(evil), '--out', str(tmp_path / 'out')])
  else:
    sd = _emotion_gcn_sd(np.random.default_rng(1))
    good = str(tmp_path / 'egcn.pth')
    _save(sd, good, wrapper='model_state_dict')
    rc = import_checkpoint.main([good, '--out', str(tmp_path / 'out'), '--embeddings',
                                 str(evil)])
  assert rc == 2 and 'weights_only' in capsys.readouterr().err
  assert not os.path.exists(_RunsCode.marker)
  assert not os.path.exists(tmp_path / 'out')


def test_skipped_entries_are_summarised_in_one_line():
  report = {'out': '/x', 'format': 'me_graphau', 'stage': 2, 'arch': 'resnet50',
            'labels': ['AU1'] * 12, 'converted': 10,
            'skipped': {**{f'backbone.bn{i}.num_batches_tracked': 'BatchNorm step counter'
                           for i in range(60)},
                        'optimizer': 'optimiser state (250 tensors\' state)', 'epoch': 'epoch 19'}}
  lines = import_checkpoint.summary('f.pth', report)
  assert len(lines) == 2 and '60 BatchNorm step counters' in lines[1]
  assert 'optimiser state' in lines[1] and 'epoch 19' in lines[1]

"""A run directory works anywhere on its own: one small training per model.

Each model trains a few steps on the tiny synthetic faces (its side files, GloVe vectors and
SVML-RGCN's visual nodes, in their own folders). The run directory is then copied elsewhere,
and the dataset and the side files are deleted: the copy must give the same predictions as the
original run (1e-6), evaluate to the same metrics on the same split (rebuilt in another folder)
and hold its constants (graphs, embeddings, class means) in its checkpoint. This is the one
end-to-end training of each model in the suite: it also checks the run's results (every label's
metrics, the checkpoint selected on validation, the figures and numbers of the model's
evaluators).
"""

import os
import shutil

import numpy as np
import pytest

import conftest
from faujax import config_base
from faujax import labels
from faujax import models
from faujax import train
from faujax import trained_run
from faujax.data import input_pipeline

SMALL = {'name': 'small_cnn', 'widths': (8, 16), 'extra_convs': 0}


def _config(tmp_path, builder_config: str, model: str, **options):
  config = config_base.get_config(model)
  config_base.synthetic_data(config, builder_config)
  config.data.update({'data_dir': str(tmp_path / 'tfds'), **conftest.TINY_DATA})
  config_base.synthetic_augment(config, 32)
  config.model.update(options)
  config.train.update({'batch_size': 8, 'num_steps': 4, 'log_every': 4, 'eval_every': 4})
  config.eval.batch_size = 16
  config.checkpoint.every = 4
  return config


def _glove(path) -> str:
  words = list(labels.EXPRESSIONS_7) + ['valence', 'arousal']
  rng = np.random.default_rng(0)
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(f'{w} ' + ' '.join(f'{v:.5f}' for v in rng.normal(size=16)) + '\n'
                 for w in words)
  return str(path)


def _visual_nodes(path) -> str:
  from faujax.models import visual_nodes
  means = np.random.default_rng(1).normal(size=(len(labels.BASIC_6), 12))
  return visual_nodes.save(str(path), means, labels.BASIC_6, np.ones(len(labels.BASIC_6)))


def _setup(name, tmp_path):
  """(config, side files) of model ``name``'s small run."""
  side = tmp_path / 'side'
  side.mkdir()
  small = models.backbone_config('small_cnn', widths=(8, 16))
  if name == 'baseline':
    return _config(tmp_path, 'bp4d', 'baseline', backbone=small), []
  if name == 'macg':
    config = _config(tmp_path, 'disfa', 'macg', backbone=small, node_dim=16, rel_features=4,
                     top_k=3)
    config.loss.name = 'asymmetric'  # MACG eq. 15-16 (its head gives probabilities)
    return config, []
  if name == 'me_graphau':
    config = _config(tmp_path, 'disfa', 'me_graphau', backbone=small, node_dim=8)
    config.loss.name = 'asymmetric'
    return config, []
  if name == 'au_gcn':
    config = _config(tmp_path, 'bp4d', 'au_gcn', roi_size=6, latent_dim=8, gcn_dims=(6, 4),
                     ae_widths=(4, 4, 4))
    config.loss.update({'name': 'bce_dice', 'reconstruction_weight': 1.0})
    return config, []
  if name == 'mgrr_net':
    config = _config(tmp_path, 'disfa', 'mgrr_net', hidden_dim=8, num_heads=2, patch_size=3,
                     integrated_dim=8)
    config.model.backbone = models.backbone_config('jaanet_stem', widths=(8, 16), input_size=32)
    config.loss.landmark_weight = 0.5
    return config, []
  if name == 'emotion_gcn':
    glove = _glove(side / 'glove.txt')
    config = _config(tmp_path, 'expression', 'emotion_gcn', backbone=small, embeddings=glove,
                     hidden_dim=8)
    return config, [glove]
  if name == 'svml_rgcn':
    nodes = _visual_nodes(side / 'visual_nodes.npz')
    config = _config(tmp_path, 'expression_multi', 'svml_rgcn', backbone=small,
                     visual_nodes=nodes, hidden_dim=8, mfb_dim=8, mfb_factor=2)
    return config, [nodes]
  raise AssertionError(name)


MODELS = ('baseline', 'macg', 'me_graphau', 'au_gcn', 'mgrr_net', 'emotion_gcn', 'svml_rgcn')
# What each model's evaluators (its module's EVALUATORS) add to results.json after the test
# evaluation: files (the figures and arrays) or numbers.
EVALS = {'emotion_gcn': {'adjacency', 'confusion', 'cosine'},
         'svml_rgcn': {'relations', 'relations_npz'}, 'mgrr_net': {'landmark_error'}}


def _check_results(name: str, results: dict, run) -> None:
  """The task's metrics for every label, a checkpoint selected on validation, the evaluators'
  outputs."""
  metrics = results['metrics']
  assert results['model'] == name and results['label_names'] == list(run.info.label_names)
  assert results['checkpoint'].startswith(f'best validation {run.task.selection_metric}')
  assert np.isfinite(results['validation_history'][-1][run.task.selection_metric])
  if run.info.task == 'au':
    assert {f'f1/{n}' for n in run.info.label_names} <= set(metrics)
  elif run.info.task == 'expression':
    assert {'mean_class_accuracy', 'accuracy', 'ccc_valence', 'ccc_arousal'} <= set(metrics)
    assert results['trivial_baseline']['name'] == 'majority class'
  else:
    assert all(np.isfinite(metrics[f'ml/{k}']) for k in (
        'hamming_loss', 'coverage', 'one_error', 'ranking_loss', 'average_precision'))
  evals = results.get('evals', {})
  assert set(evals) == EVALS.get(name, set())
  for key, value in evals.items():
    if isinstance(value, str):
      assert os.path.getsize(value) > 1000, key
    else:
      assert np.isfinite(value), key


@pytest.mark.slow  # 30-220 s each on 2 cores: a training, a copy, predictions and evaluations
@pytest.mark.parametrize('name', MODELS)
def test_a_copied_run_predicts_and_evaluates_without_its_data(name, tmp_path):
  config, side_files = _setup(name, tmp_path)
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  run = trained_run.load_run(workdir)
  _check_results(name, results, run)
  batch = next(input_pipeline.create_split(run.config.data, 'test', batch_size=8, train=False))
  want = run.predict_batch(batch)
  metrics = run.evaluate('test')
  assert metrics[run.task.selection_metric] == pytest.approx(
      results['metrics'][run.task.selection_metric], abs=1e-6)
  constants = run.variables['constants']

  copy = str(tmp_path / 'elsewhere' / 'run')
  shutil.copytree(workdir, copy)
  shutil.rmtree(tmp_path / 'tfds')
  shutil.rmtree(tmp_path / 'side')
  for path in side_files:
    assert not os.path.exists(path)
  moved = trained_run.load_run(copy)
  got = moved.predict_batch(batch)
  for key, value in want.items():
    np.testing.assert_allclose(np.asarray(got[key]), np.asarray(value), rtol=1e-6, atol=1e-6)
  for key, value in _flat(constants).items():  # graphs, embeddings, class means came along
    np.testing.assert_array_equal(_flat(moved.variables['constants'])[key], value)
  again = moved.evaluate('test', data_dir=str(tmp_path / 'tfds_rebuilt'))
  for key, value in metrics.items():
    if isinstance(value, float) and np.isfinite(value):
      assert again[key] == pytest.approx(value, abs=1e-6), key


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = np.asarray(v)
  return out


def test_models_with_data_derived_constants_store_them():
  """The constants a model derives from the data are named by its prepare(); the four that
  have them do."""
  for name in ('au_gcn', 'mgrr_net', 'emotion_gcn', 'svml_rgcn'):
    assert callable(getattr(models._check_name(name), 'prepare', None)), name  # pylint: disable=protected-access
  assert getattr(models._check_name('macg'), 'prepare', None) is None  # pylint: disable=protected-access

"""Every config file in configs/ loads, names a known model, task and optimiser, and its model
traces at the config's input size; the shared config blocks behave."""

import glob
import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest

from faujax import bench
from faujax import config_blocks
from faujax import models
from faujax import optim
from faujax import tasks
from faujax.models import emotion_gcn

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs')
# Config files that take an argument, and the arguments to try (None = the default).
ARGUMENTS = {
    'macg/synthetic.py': (None, 'disfa', 'emotionet'),
    'emotion_gcn/synthetic.py': (None,) + tuple(emotion_gcn.VARIANTS),
    'emotion_gcn/affectnet.py': (None,) + tuple(emotion_gcn.VARIANTS),
    'emotion_gcn/aff_wild2.py': (None,) + tuple(emotion_gcn.VARIANTS),
}


def _config_files():
  return sorted(os.path.relpath(p, CONFIG_DIR)
                for p in glob.glob(os.path.join(CONFIG_DIR, '**', '*.py'), recursive=True))


def _load(relpath, argument):
  spec = importlib.util.spec_from_file_location('config_under_test',
                                                os.path.join(CONFIG_DIR, relpath))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()


CASES = [(f, a) for f in _config_files() for a in ARGUMENTS.get(f, (None,))]


def test_every_config_file_is_covered():
  assert {f for f, _ in CASES} >= {'default.py', 'macg/bp4d.py', 'macg/synthetic.py',
                                   'emotion_gcn/affectnet.py', 'emotion_gcn/synthetic.py'}


@pytest.mark.parametrize('relpath, argument', CASES)
def test_config_builds_its_model_task_and_optimiser(relpath, argument):
  config = _load(relpath, argument)
  info = bench.stand_in_info(config)
  models.check_config(config.model)
  model = models.build(config.model, info)
  task = tasks.build(config, info)
  assert task is not None
  schedule = optim.create_schedule(config, base_lr=config.optim.learning_rate,
                                   steps_per_epoch=10, total_steps=100)
  assert float(schedule(50)) > 0.0
  if argument is None:  # trace the model once per file, at the config's input size
    size = config.augment.image_size
    batch = {'image': jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)}
    shapes = jax.eval_shape(lambda b: model.init(jax.random.key(0), b, train=False), batch)
    tx, _ = optim.create_optimizer(config, shapes['params'], steps_per_epoch=10, total_steps=100)
    jax.eval_shape(tx.init, shapes['params'])


def test_synthetic_configs_use_the_synthetic_data_and_aligned_faces():
  for relpath in ('default.py', 'macg/synthetic.py', 'emotion_gcn/synthetic.py'):
    config = _load(relpath, None)
    assert config.data.name == 'synthetic_faces', relpath
    assert config.augment.align == 'five_point', relpath


def test_load_sibling_names_the_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothere.py'):
    config_blocks.load_sibling(str(tmp_path / 'config.py'), 'nothere')

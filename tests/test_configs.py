"""Every config file in configs/ loads, resolves, builds its model, task and optimiser, and every
key it holds can be overridden on the command line (every key the code reads is declared)."""

import glob
import importlib.util
import os

import jax
import pytest
from absl import flags
from flax import nnx
from ml_collections import config_flags

from faujax import bench
from faujax import config_base
from faujax import config_schema
from faujax import model_state
from faujax import models
from faujax import optim
from faujax import tasks
from faujax.models import emotion_gcn
from faujax.models import svml_rgcn

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs')
# Config files that take an argument, and the arguments to try (None = the default).
ARGUMENTS = {
    'macg/synthetic.py': (None, 'disfa', 'emotionet'),
    'emotion_gcn/synthetic.py': (None,) + tuple(emotion_gcn.ABLATIONS),
    'emotion_gcn/affectnet.py': (None,) + tuple(emotion_gcn.ABLATIONS),
    'emotion_gcn/aff_wild2.py': (None,) + tuple(emotion_gcn.ABLATIONS),
    'svml_rgcn/synthetic.py': (None,) + tuple(svml_rgcn.ABLATIONS),
    'mgrr_net/synthetic.py': (None, 'disfa'),
    'au_gcn/synthetic.py': (None, 'disfa'),
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
  config = config_base.resolve_config(_load(relpath, argument))
  if config.model.name == 'svml_rgcn':  # its visual-node file comes from a command: a stand-in
    config.model.visual_nodes = 'random'
  info = bench.stand_in_info(config)
  model = nnx.eval_shape(lambda: models.build(config.model, info, rngs=nnx.Rngs(0)))
  params = model_state.variables(model)['params']
  # AU-GCN has no trunk: its ROI auto-encoders read the image (AU-GCN sec. 3.3).
  assert 'backbone' in params or config.model.name == 'au_gcn'
  assert len(jax.tree.leaves(params)) > 4
  task = tasks.build(info, config_schema.read(tasks.LossConfig, config.loss, 'loss'))
  assert task.name == info.task and task.selection_metric
  opt = config_schema.read(optim.OptimConfig, config.optim, 'optim')
  sched = config_schema.read(optim.ScheduleConfig, config.schedule, 'schedule')
  schedule = optim.create_schedule(sched, base_lr=opt.learning_rate, steps_per_epoch=10,
                                   total_steps=100)
  # The schedule starts at the base rate (or 0 with warm-up) and never exceeds it.
  lrs = [float(schedule(s)) for s in range(0, 100, 7)]
  assert max(lrs) <= opt.learning_rate * (1 + 1e-6) and min(lrs) >= 0
  tx, _ = optim.create_optimizer(opt, sched, params, steps_per_epoch=10, total_steps=100)
  jax.eval_shape(tx.init, params)


def _flat_keys(config, prefix=''):
  """(dotted key, (value, declared type)) of every leaf."""
  for key, value in config.items():
    path = f'{prefix}{key}'
    if hasattr(value, 'items'):
      yield from _flat_keys(value, path + '.')
    else:
      yield path, (value, config.get_type(key))


def _new_value(value, declared):
  """A command-line override that differs from ``value`` where the type allows it."""
  if value is None and declared is int:  # an overridable placeholder (sizes)
    return '7', 7
  if isinstance(value, bool):
    return str(not value), (not value)
  if isinstance(value, int):
    return str(value + 1), value + 1
  if isinstance(value, float):
    return repr(value * 0.5), value * 0.5
  if isinstance(value, tuple):
    return repr(value), value
  if value is None:  # an overridable placeholder (paths)
    return '/tmp/somewhere', '/tmp/somewhere'
  return str(value), value


@pytest.mark.parametrize('relpath', [f for f in _config_files()])
def test_every_key_can_be_overridden_on_the_command_line(relpath):
  """All keys of the config at once through ml_collections' flag parser, as ``faujax.main``
  parses them; an unknown key is rejected with its name."""
  path = os.path.join(CONFIG_DIR, relpath)
  keys = dict(_flat_keys(_load(relpath, None)))
  argv, expected = ['prog', f'--config={path}'], {}
  for key, (value, declared) in keys.items():
    if key.startswith('optim.lr_multipliers'):
      continue
    text, parsed = _new_value(value, declared)
    argv.append(f'--config.{key}={text}')
    expected[key] = parsed
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  got = dict(_flat_keys(fv.config))
  for key, value in expected.items():
    assert got[key][0] == value, key
  assert len(expected) > 60  # every section is declared in full
  bad_argv = ['prog', f'--config={path}', '--config.loss.bogus_key=1']
  bad = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=bad, lock_config=True,
                                  sys_argv=bad_argv)
  with pytest.raises(Exception, match='bogus_key'):
    bad(bad_argv)
    _ = bad.config


def test_keys_the_issue_named_are_declared_and_work():
  """``loss.dice_weight`` was read but undeclared; ``schedule.name=step`` crashed."""
  config = _load('default.py', None)
  assert config.loss.dice_weight == 1.0
  config.schedule.name = 'step'
  sched = config_schema.read(optim.ScheduleConfig, config.schedule, 'schedule')
  assert float(optim.create_schedule(sched, base_lr=1.0, steps_per_epoch=10,
                                     total_steps=300)(150)) == pytest.approx(0.1)


def test_unknown_and_out_of_range_keys_name_the_key():
  config = _load('default.py', None)
  config.train.batch_size = 0
  with pytest.raises(config_schema.ConfigError, match=r'config\.train\.batch_size=0'):
    config_base.resolve_config(config)
  config = _load('default.py', None)
  config.checkpoint.every = 0
  with pytest.raises(config_schema.ConfigError, match=r'config\.checkpoint\.every=0'):
    config_base.resolve_config(config)
  config = _load('default.py', None)
  config.unlock()
  config.optim.learing_rate = 1.0
  with pytest.raises(config_schema.ConfigError, match='Did you mean learning_rate'):
    config_base.resolve_config(config)


def test_base_declares_every_model_option_from_its_constructor():
  for name in models.MODELS:
    section = models.default_config(name)
    assert section.name == name and section.dtype == 'float32'
    if name == 'au_gcn':  # per-ROI auto-encoders instead of a shared trunk (AU-GCN sec. 3.3)
      assert 'backbone' not in section and section.latent_dim == 150
    else:
      assert 'backbone' in section and 'name' in section.backbone
  assert models.default_config('macg').top_k == 3  # the constructor's default
  assert models.default_config('emotion_gcn').p == 0.7


def test_synthetic_configs_use_the_synthetic_data_and_aligned_faces():
  for relpath in ('default.py', 'macg/synthetic.py', 'emotion_gcn/synthetic.py'):
    config = _load(relpath, None)
    assert config.data.name == 'synthetic_faces', relpath
    assert config.augment.align == 'five_point', relpath


def test_load_sibling_names_the_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothere.py'):
    config_base.load_sibling(str(tmp_path / 'config.py'), 'nothere')

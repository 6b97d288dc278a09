"""The training core: one step for 'jit' and 'pmap', NaN handling, checkpoints, resume, errors."""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from faujax import checkpoint as ckpt_lib
from faujax import labels
from faujax import parallel
from faujax import config_schema
from faujax import tasks
from faujax import train
from faujax.data import dataset_info

import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUS = (1, 2, 4, 6, 12)


def _fake_info():
  return dataset_info.DatasetInfo(
      name='fake', builder_config='fake', task='au', label_names=[f'AU{a}' for a in AUS],
      num_labels=len(AUS), aus=AUS, num_examples={'train': 64, 'validation': 0, 'test': 0},
      image_size=40, num_landmarks=68, fold=1,
      train_occurrence_rates=np.array([0.3, 0.2, 0.25, 0.1, 0.4], np.float32),
      class_counts=np.array([30, 20, 25, 10, 40], np.int64))


def _config():
  config = tiny_config.get_config()
  config.augment.image_size = 32
  config.model.backbone.widths = (8, 16)
  config.optim.learning_rate = 0.05
  config.schedule.warmup_epochs = 0.0
  return config


def _batches(info, n, batch_size, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    b = dataset_info.dummy_batch(info, batch_size)
    b['image'] = rng.integers(0, 256, b['image'].shape, dtype=np.uint8)
    b['landmarks'] = b['landmarks'] + rng.normal(0, 1, b['landmarks'].shape).astype(np.float32)
    b['au'] = (rng.random(b['au'].shape) < 0.3).astype(np.float32)
    b['au_mask'] = (rng.random(b['au'].shape) < 0.9).astype(np.float32)  # some unknown labels
    out.append(b)
  return out


def _task(config, info):
  return tasks.build(info, config_schema.read(tasks.LossConfig, config.loss, 'loss'))


def _run(mode, devices, batches, config, info):
  config = config.copy_and_resolve_references()
  config.parallelism = mode
  task = _task(config, info)
  state, schedule = train.create_train_state(jax.random.key(0), config, info,
                                             steps_per_epoch=4, total_steps=len(batches))
  steps = train.compile_steps(mode, task=task, aug_config=config.augment, schedule=schedule,
                              devices=devices)
  state = steps.put_state(state)
  losses = []
  device_batches = parallel.prefetch(iter(batches), steps.put_batch)
  for _ in batches:  # the training loop's dispatch: no implicit transfer inside (transfer guard)
    state, metrics = train.dispatch_step(steps, state, next(device_batches), jax.random.key(1))
    losses.append(steps.host_metrics(metrics)['loss'])
  return np.array(losses), steps.host_state(state)


def test_prefetch_keeps_size_batches_ahead_in_order():
  put_calls = []

  def put(b):
    put_calls.append(b)
    return b * 10

  it = parallel.prefetch(iter(range(5)), put, size=3)
  assert next(it) == 0 and put_calls == [0, 1, 2]  # two copies queued behind the first
  assert list(it) == [10, 20, 30, 40]
  assert list(parallel.prefetch(iter(range(3)), put, size=1)) == [0, 10, 20]
  with pytest.raises(ValueError, match='prefetch size'):
    next(parallel.prefetch(iter(range(3)), put, size=0))


def test_dispatch_step_raises_on_an_implicit_upload():
  """The guard is on: numpy handed to a device computation inside the step (an implicit,
  synchronous host-to-device copy at every step) raises; explicit puts pass."""

  class Uploading:
    train = staticmethod(lambda state, batch, rng: (state, {'loss': jax.numpy.sum(batch)}))

  with pytest.raises(Exception, match='Disallowed host-to-device'):
    train.dispatch_step(Uploading, None, np.ones(3, np.float32), None)
  _, metrics = train.dispatch_step(Uploading, None, jax.device_put(np.ones(3)), None)
  assert float(metrics['loss']) == 3.0


def test_dispatch_step_refuses_an_implicit_host_transfer():
  """A batch not yet on the devices (a numpy array, which the step would copy synchronously at
  every step) raises; the same batch on the devices runs. (The device-to-host direction, a
  ``float()`` in the step, is guarded too, but JAX checks it only off the CPU.)"""

  class Steps:
    train = staticmethod(jax.jit(lambda state, batch, rng: (state, {'loss': batch.sum()})))

  batch = np.ones(3, np.float32)
  with pytest.raises(Exception, match='Disallowed host-to-device'):
    train.dispatch_step(Steps, None, batch, None)
  _, metrics = train.dispatch_step(Steps, None, jax.device_put(batch), None)
  assert float(metrics['loss']) == 3.0


@pytest.mark.slow  # ~35 s: three compilations of the train step on 8 CPU devices
def test_jit_and_pmap_on_8_devices_equal_one_device():
  assert jax.device_count() == 8, 'conftest.py sets 8 CPU devices'
  info, config = _fake_info(), _config()
  batches = _batches(info, 5, 16)
  ref_loss, ref_state = _run('jit', jax.devices()[:1], batches, config, info)
  assert np.all(np.diff(ref_loss[:3]) != 0)  # the parameters really change
  for mode in ('jit', 'pmap'):
    loss, state = _run(mode, jax.devices(), batches, config, info)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6, err_msg=mode)
    flat_ref = jax.tree_util.tree_leaves_with_path(ref_state['params'])
    flat = jax.tree.leaves(state['params'])
    for (path, a), b in zip(flat_ref, flat):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=f'{mode} {path}')
    for a, b in zip(jax.tree.leaves(ref_state['batch_stats']), jax.tree.leaves(state['batch_stats'])):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=f'{mode} batch_stats')


def test_nonfinite_loss_freezes_state_and_names_the_step(tmp_path):
  info, config = _fake_info(), _config()
  task = _task(config, info)
  state, schedule = train.create_train_state(jax.random.key(0), config, info,
                                             steps_per_epoch=4, total_steps=6)
  step = jax.jit(functools.partial(train.train_step, task=task, aug_config=config.augment,
                                   schedule=schedule))
  batches = _batches(info, 4, 8)
  batches[2]['landmarks'][0, 0, 0] = np.nan  # unused by the baseline: loss stays finite
  batches[2]['au'][0, 0] = np.nan            # the loss becomes NaN at step 2
  for i, b in enumerate(batches):
    before = jax.device_get(state.params)
    state, _ = step(state, b, jax.random.key(1))
    if i == 2:
      frozen = before
  assert int(state.nonfinite_step) == 2
  for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)  # nothing changed from step 2 on
  with pytest.raises(train.NonFiniteError, match='step 2.*No checkpoint was saved'):
    train._check_finite(jax.device_get(state.to_host()))


def _initial_host_state(config):
  """The checkpointed pytree of a freshly initialised run of ``config`` on the fake dataset."""
  info = _fake_info()
  state, _ = train.create_train_state(jax.random.key(0), config, info, steps_per_epoch=4,
                                      total_steps=4)
  return jax.device_get(state.to_host())


def test_checkpoint_round_trip_and_incompatible_config(tmp_path):
  config = _config()
  host = _initial_host_state(config)
  host['step'] = np.array(3, np.int32)  # a checkpoint holds the step it is named after
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), config, keep=2)
  ckpt.save(3, host)
  ckpt.wait()
  restored = ckpt.restore_latest(jax.tree.map(np.zeros_like, host)).state
  for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, b)
  assert ckpt.latest_step == 3
  other = _config()
  other.model.backbone.widths = (8, 32)
  with pytest.raises(ckpt_lib.CheckpointError, match='config.model'):
    ckpt_lib.Checkpointer(str(tmp_path), other)


def test_nonfinite_parameters_are_caught_and_the_message_names_only_a_verified_checkpoint(
    tmp_path):
  """A NaN in the parameters (with a finite loss) stops the run too; the message names the
  newest checkpoint only once one exists and passes verification."""
  config = _config()
  host = _initial_host_state(config)
  bad = jax.tree.map(np.copy, host)
  jax.tree.leaves(bad['params'])[0].flat[0] = np.nan
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), config)
  with pytest.raises(train.NonFiniteError, match=r'Non-finite values in params/.*No checkpoint'):
    train._check_finite(bad, ckpt)
  host['step'] = np.array(4, np.int32)
  ckpt.save(4, host)
  ckpt.wait()
  with pytest.raises(train.NonFiniteError, match=str(tmp_path / 'checkpoints' / '4')):
    train._check_finite(bad, ckpt)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
  config = _config()
  host = _initial_host_state(config)
  host['step'] = np.array(1, np.int32)
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), config)
  ckpt.save(1, host)
  ckpt.wait()
  for root, _, files in os.walk(tmp_path / 'checkpoints' / '1' / 'state'):
    for f in files:
      with open(os.path.join(root, f), 'wb') as fh:
        fh.write(b'garbage')
  with pytest.raises(ckpt_lib.CheckpointError, match=str(tmp_path / 'checkpoints' / '1')):
    ckpt_lib.Checkpointer(str(tmp_path), config).restore_latest(host)


@pytest.mark.parametrize('override,match', [
    ({'model.name': 'resnet_gcn'}, 'config.model.name'),
    ({'train.batch_size': 12}, 'config.train.batch_size=12 is not divisible'),
    ({'parallelism': 'pjit'}, 'config.parallelism'),
    ({'model.backbone.name': 'vgg16'}, 'config.model.backbone.name'),
])
def test_bad_config_errors_before_compiling(tmp_path, override, match):
  config = _config()
  config.update_from_flattened_dict(override)
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path))


def test_an_unknown_selection_metric_is_named_and_the_steps_kept(tmp_path, tiny_data_dir):
  config = _config()
  config.data.data_dir = tiny_data_dir
  config.eval.selection_metric = 'bogus_metric'
  with pytest.raises(ValueError, match=r"config\.eval\.selection_metric: 'bogus_metric' is not "
                     r'a validation metric of this task; it has .*f1_mean'):
    train.train_and_evaluate(config, str(tmp_path))
  eval_every = config.train.eval_every
  assert (tmp_path / 'checkpoints' / str(eval_every)).is_dir()  # what trained is kept


def _main(workdir, data_dir, *extra, env=None):
  return [sys.executable, '-m', 'faujax.main', f'--config={REPO}/tests/tiny_config.py',
          f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', *extra]


def _env(devices=1):
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  env['PYTHONPATH'] = os.path.join(REPO, 'tests') + os.pathsep + env.get('PYTHONPATH', '')
  return env


def test_unknown_config_key_on_the_command_line(tmp_path, tiny_data_dir):
  proc = subprocess.run(_main(tmp_path, tiny_data_dir, '--config.train.bogus_key=3'),
                        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
  assert proc.returncode != 0
  assert 'bogus_key' in proc.stderr


def _final_params(workdir, step):
  import orbax.checkpoint as ocp
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state', 'config'))
  return mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes(tmp_path, tiny_data_dir):
  """A real SIGKILL while the run trains and saves: the workdir resumes from a verified
  checkpoint and finishes. (That a resumed run ends exactly as an uninterrupted one is shown in
  process: tests/test_checkpoint_faults.py, the fallback past a damaged checkpoint, and the
  AU-GCN stage resume.)"""
  steps = ['--config.train.num_steps=40', '--config.checkpoint.every=8',
           '--config.train.eval_every=100']
  killed = tmp_path / 'killed'
  proc = subprocess.Popen(_main(killed, tiny_data_dir, *steps), env=_env(), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (killed / 'checkpoints' / '8').exists() and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / 'results.json').exists(), 'the run finished before it was killed'
  config = tiny_config.get_config()
  config.data.data_dir = tiny_data_dir
  config.train.update(num_steps=40, eval_every=100)
  config.checkpoint.every = 8
  results = train.train_and_evaluate(config, str(killed))
  assert (killed / 'checkpoints' / '40').is_dir() and np.isfinite(results['metrics']['f1_mean'])
  assert not (killed / 'damaged').exists()  # nothing the kill left was taken for a checkpoint


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path, tiny_data_dir):
  workdir = tmp_path / 'run'
  proc = subprocess.Popen(_main(workdir, tiny_data_dir, '--config.train.num_steps=100000',
                                '--config.checkpoint.every=1000000'),
                          env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  # The first TensorBoard events file is written at the first progress line, inside the training
  # loop (whose SIGTERM handler is then installed), not while the run still builds and compiles.
  deadline = time.time() + 300
  while not list(workdir.glob('events.out.tfevents.*')) and time.time() < deadline:
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  saved = sorted(int(p) for p in os.listdir(workdir / 'checkpoints') if p.isdigit())
  assert saved and saved[-1] > 0
  assert 'SIGTERM' in out


@pytest.mark.slow
def test_two_processes_train_together(tmp_path, tiny_data_dir):
  """Two processes on loopback (jax.distributed, gloo), one CPU device each, global batch 8."""
  import socket
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  workdir = tmp_path / 'multi'
  args = ['--config.train.num_steps=6', '--config.checkpoint.every=6',
          '--config.train.eval_every=100', f'--coordinator_address=127.0.0.1:{port}',
          '--num_processes=2']
  procs = [subprocess.Popen(_main(workdir, tiny_data_dir, *args, f'--process_id={i}'),
                            env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  with open(workdir / 'results.json') as f:
    results = json.load(f)
  assert np.isfinite(results['metrics']['auc_mean'])
  # One checkpoint for the job (written by both processes together), at the last step.
  params = _final_params(workdir, 6)['params']
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
  # Each process fed its own shard of every batch; evaluation saw every test example exactly once,
  # as a single process does (the trivial predictor's F1 depends only on the labels seen).
  single = tmp_path / 'single'
  subprocess.run(_main(single, tiny_data_dir, *args[:3]), check=True, env=_env(devices=2),
                 cwd=REPO, capture_output=True, timeout=600)
  with open(single / 'results.json') as f:
    reference = json.load(f)
  np.testing.assert_allclose(results['trivial_baseline']['f1_mean'],
                             reference['trivial_baseline']['f1_mean'], rtol=1e-6)


def test_importing_faujax_does_not_start_the_xla_backend():
  """jax.distributed.initialize must run before the backend starts, so imports may not start it."""
  code = ('from jax._src import xla_bridge\nimport faujax, faujax.train, faujax.bench, faujax.cv\n'
          'assert not xla_bridge.backends_are_initialized()')
  subprocess.run([sys.executable, '-c', code], check=True, env=_env(), cwd=REPO, timeout=300)


def test_multilabel_expression_run_on_synthetic_data(tmp_path):
  """synthetic_faces/expression_multi: 6 multi-labels, the SVML-RGCN BCE and all nine metrics,
  against the label-prior baseline."""
  config = tiny_config.get_config()
  config.data.builder_config = 'expression_multi'
  config.data.data_dir = str(tmp_path / 'tfds')
  config.train.num_steps = 4
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['label_names'] == list(labels.BASIC_6)
  nine = {f'ml/{k}' for k in tasks.MULTILABEL_METRICS}
  assert len(nine) == 9 and nine <= set(results['metrics'])
  assert nine <= set(results['trivial_baseline'])
  table = (tmp_path / 'run' / 'results.md').read_text()
  assert '| hamming_loss |' in table and '| lower |' in table and '| higher |' in table
  assert results['checkpoint'].startswith('best validation ml/average_precision')


def test_writer_creates_no_events_file_until_it_writes(tmp_path):
  """A resume that writes nothing (e.g. of a finished run) leaves no empty events file."""
  from faujax import reporting  # pylint: disable=g-import-not-at-top
  writer = reporting.create_writer(str(tmp_path))
  writer.write_scalars(1, {})
  writer.flush()
  assert not any('tfevents' in f for f in os.listdir(tmp_path))
  writer.write_scalars(1, {'test/f1_mean': 0.5})
  writer.flush()
  assert sum('tfevents' in f for f in os.listdir(tmp_path)) == 1

"""Fault injection into checkpoints, and the resume policy (issue 20).

Every part of the newest checkpoint is damaged in turn; the damaged one must be reported by path
and the run must restore the previous good one, bitwise; when every checkpoint is damaged, the
run is refused with the list of them and nothing in the workdir is changed. Then the same
through ``train.train_and_evaluate``: fallback, the NaN message, the resume policy and the
validation history across resumes.
"""

import glob
import json
import os
import shutil

from hypothesis import HealthCheck, given, settings, strategies as st
import jax
import numpy as np
import pytest

from faujax import checkpoint as ckpt_lib
from faujax import reporting
from faujax import run_record
from faujax import train

import file_digests
import tiny_config


# ------------------------------------------------------------------------------------------------
# A checkpointed tree like a run's (several dtypes, nested dicts, a tuple like optax states).


def _state(step, seed):
  rng = np.random.default_rng(seed)
  f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)
  return {
      'step': np.array(step, np.int32),
      'params': {'conv': {'kernel': f32(3, 3, 3, 8), 'bias': f32(8)},
                 'head': {'kernel': f32(64, 12), 'bias': f32(12)}},
      'batch_stats': {'bn': {'mean': f32(8), 'var': np.abs(f32(8))}},
      'opt_state': ({'count': np.array(step, np.int32)},
                    {'mu': f32(64, 12), 'nu': np.abs(f32(64, 12))}),
      'nonfinite_step': np.array(-1, np.int32),
  }


def _target():
  return jax.tree.map(np.zeros_like, _state(0, 0))


def _config():
  return tiny_config.get_config()


def _assert_bitwise_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(la, lb):
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()


GOOD, DAMAGED = _state(1, 1), _state(2, 2)


def _save_two(root, best=False):
  ckpt = ckpt_lib.Checkpointer(root, _config(), best_metric='f1' if best else None)
  ckpt.save(1, GOOD, history=[{'step': 1, 'f1': 0.25}])
  ckpt.save(2, DAMAGED, history=[{'step': 1, 'f1': 0.25}, {'step': 2, 'f1': 0.5}])
  if best:
    ckpt.save_best(2, DAMAGED, {'f1': 0.5})
  ckpt.wait()
  ckpt.close()


@pytest.fixture(scope='module')
def pristine(tmp_path_factory):
  """A workdir with good periodic checkpoints at steps 1 and 2 and a best one at step 2."""
  root = str(tmp_path_factory.mktemp('pristine') / 'run')
  _save_two(root, best=True)
  return root


@pytest.fixture
def workdir(pristine, tmp_path):
  root = str(tmp_path / 'run')
  shutil.copytree(pristine, root)
  return root


# ------------------------------------------------------------------------------------------------
# The faults: each damages the step directory ``d`` (``root`` is the workdir).


def _data_files(d):
  """orbax/OCDBT array data files, largest first."""
  return sorted(glob.glob(os.path.join(d, 'state', 'ocdbt.process_*', 'd', '*')),
                key=os.path.getsize, reverse=True)


def _flip(path, n=8):
  data = bytearray(open(path, 'rb').read())
  i = len(data) // 2
  for j in range(i, min(i + n, len(data))):
    data[j] ^= 0xFF
  open(path, 'wb').write(bytes(data))


def _rewrite_json(path, edit):
  with open(path) as f:
    value = json.load(f)
  edit(value)
  with open(path, 'w') as f:
    json.dump(value, f)


def _edit_checksum(value):
  entry = value['arrays']['params/head/kernel']
  entry['sha256'] = ('0' if entry['sha256'][0] != '0' else '1') + entry['sha256'][1:]


def _replace_state(d, state):
  """The state item of ``d`` replaced by an orbax save of ``state`` (the checksums kept)."""
  other = d + '.other'
  ckpt = ckpt_lib.Checkpointer(other, _config())
  ckpt.save(2, state)
  ckpt.wait()
  ckpt.close()
  shutil.rmtree(os.path.join(d, 'state'))
  shutil.copytree(os.path.join(other, 'checkpoints', '2', 'state'), os.path.join(d, 'state'))
  shutil.rmtree(other)


def _wrong_shape(d):
  state = _state(2, 2)
  state['params']['head']['kernel'] = np.zeros((64, 13), np.float32)
  _replace_state(d, state)


def _wrong_dtype(d):
  state = _state(2, 2)
  state['params']['head']['kernel'] = state['params']['head']['kernel'].astype(np.float16)
  _replace_state(d, state)


def _empty_dir(d):
  for entry in os.listdir(d):
    p = os.path.join(d, entry)
    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


def _truncate(path):
  os.truncate(path, os.path.getsize(path) // 2)


def _whole_copy(d):
  """Step 1's complete checkpoint (consistent checksums) under step 2's name."""
  shutil.rmtree(d)
  shutil.copytree(os.path.join(os.path.dirname(d), '1'), d)


def _nan_params(d):
  """A checkpoint that is intact (checksums match) but holds a NaN: never resumed."""
  state = _state(2, 2)
  state['params']['conv']['bias'][3] = np.nan
  other = d + '.other'
  ckpt = ckpt_lib.Checkpointer(other, _config())
  ckpt.save(2, state)
  ckpt.wait()
  ckpt.close()
  shutil.rmtree(d)
  shutil.copytree(os.path.join(other, 'checkpoints', '2'), d)
  shutil.rmtree(other)


# name -> (damage(d), reason the report must contain); in each the newest checkpoint is damaged.
FAULTS = {
    # Compressed chunks: a flip decodes to other values (caught by the checksum) or fails to
    # decode, depending on where it lands.
    'flipped array bytes': (lambda d: _flip(_data_files(d)[0]), ('checksum mismatch',
                                                                 'unreadable')),
    'flipped bytes in every data file': (lambda d: [_flip(p) for p in _data_files(d)], ''),
    'flipped index bytes (state/d)': (
        lambda d: _flip(glob.glob(os.path.join(d, 'state', 'd', '*'))[0]), ''),
    'flipped manifest.ocdbt bytes': (
        lambda d: _flip(os.path.join(d, 'state', 'manifest.ocdbt'), 4), ''),
    'deleted manifest.ocdbt': (
        lambda d: os.remove(os.path.join(d, 'state', 'manifest.ocdbt')), 'unreadable'),
    'deleted state/d/': (lambda d: shutil.rmtree(os.path.join(d, 'state', 'd')), 'unreadable'),
    'truncated data file': (lambda d: _truncate(_data_files(d)[0]), 'unreadable'),
    'empty data file': (lambda d: open(_data_files(d)[0], 'wb').close(), 'unreadable'),
    'deleted data file': (lambda d: os.remove(_data_files(d)[0]), 'unreadable'),
    'deleted checksum item': (
        lambda d: shutil.rmtree(os.path.join(d, 'checksums')), 'checksums missing'),
    'edited checksum': (
        lambda d: _rewrite_json(os.path.join(d, 'checksums', 'metadata'), _edit_checksum),
        'checksum mismatch in params/head/kernel'),
    'garbage checksum JSON': (
        lambda d: open(os.path.join(d, 'checksums', 'metadata'), 'w').write('{"arrays": [1,'),
        'unreadable checksums'),
    'deleted whole state item': (
        lambda d: shutil.rmtree(os.path.join(d, 'state')), 'state missing'),
    'deleted config item': (lambda d: shutil.rmtree(os.path.join(d, 'config')), 'config missing'),
    'garbage config JSON': (
        lambda d: open(os.path.join(d, 'config', 'metadata'), 'w').write('{not json'),
        'unreadable'),
    'edited config JSON': (
        lambda d: _rewrite_json(os.path.join(d, 'config', 'metadata'),
                                lambda c: c['optim'].update(learning_rate=1.0)),
        'checksum mismatch in the config item'),
    'deleted history item': (
        lambda d: shutil.rmtree(os.path.join(d, 'history')), 'history missing'),
    'edited history JSON': (
        lambda d: _rewrite_json(os.path.join(d, 'history', 'metadata'),
                                lambda h: h[-1].update(f1=0.99)),
        'checksum mismatch in the history item'),
    'deleted tree metadata (state/_METADATA)': (
        lambda d: os.remove(os.path.join(d, 'state', '_METADATA')), ''),
    'garbage tree metadata': (
        lambda d: open(os.path.join(d, 'state', '_METADATA'), 'w').write('garbage'), ''),
    'wrong shape (stored array)': (_wrong_shape, 'params/head/kernel is stored as'),
    'wrong dtype (stored array)': (_wrong_dtype, 'params/head/kernel is stored as'),
    'state of another step (step 1) swapped in': (
        lambda d: (shutil.rmtree(os.path.join(d, 'state')),
                   shutil.copytree(os.path.join(os.path.dirname(d), '1', 'state'),
                                   os.path.join(d, 'state'))), 'checksum mismatch'),
    'whole checkpoint of step 1 copied to step 2': (_whole_copy, 'holds step 1'),
    'emptied step directory': (_empty_dir, 'missing'),
    'intact but NaN in params': (_nan_params, 'non-finite values in params/conv/bias'),
}

# Damage to files that hold no data of the checkpoint: the checkpoint is still restored and, being
# verified, is the right one to use (bitwise equal to what was saved).
HARMLESS = {
    'deleted per-process manifest': lambda d: os.remove(
        glob.glob(os.path.join(d, 'state', 'ocdbt.process_*', 'manifest.ocdbt'))[0]),
    'garbage _CHECKPOINT_METADATA': lambda d: open(
        os.path.join(d, '_CHECKPOINT_METADATA'), 'w').write('garbage'),
    'deleted commit_success.txt': lambda d: os.remove(os.path.join(d, 'commit_success.txt')),
}


def _restore(root):
  ckpt = ckpt_lib.Checkpointer(root, _config(), best_metric='f1')
  return ckpt, ckpt.restore_latest(_target())


@pytest.mark.parametrize('fault', sorted(FAULTS))
def test_damaged_newest_checkpoint_falls_back_to_the_previous_good_one(workdir, fault, capfd):
  damage, reason = FAULTS[fault]
  bad_dir = os.path.join(workdir, 'checkpoints', '2')
  damage(bad_dir)
  ckpt, restored = _restore(workdir)
  assert restored is not None and restored.step == 1
  _assert_bitwise_equal(restored.state, GOOD)
  assert restored.history == [{'step': 1, 'f1': 0.25}]
  err = capfd.readouterr().err
  lines = [line for line in err.splitlines() if bad_dir in line]
  assert len(lines) == 1, err  # reported once, by path, on one line
  assert any(r in lines[0] for r in ((reason,) if isinstance(reason, str) else reason)), lines[0]
  assert 'Falling back to the newest good checkpoint' in err
  assert 'Traceback' not in err and 'Event loop is closed' not in err, err
  assert all(line.startswith('WARNING: ') for line in err.splitlines() if line.strip()), err
  # The damaged one is kept for inspection, out of the way of the step being written again.
  assert not os.path.exists(bad_dir)
  assert os.path.isdir(os.path.join(workdir, 'damaged', 'checkpoints-2'))
  ckpt.save(2, DAMAGED)
  ckpt.wait()
  _assert_bitwise_equal(ckpt.restore_latest(_target()).state, DAMAGED)


@pytest.mark.parametrize('fault', sorted(HARMLESS))
def test_damage_outside_the_data_still_restores_the_verified_checkpoint(workdir, fault, capfd):
  HARMLESS[fault](os.path.join(workdir, 'checkpoints', '2'))
  _, restored = _restore(workdir)
  assert restored.step == 2
  _assert_bitwise_equal(restored.state, DAMAGED)
  assert 'Traceback' not in capfd.readouterr().err


@pytest.mark.parametrize('fault', ['flipped array bytes', 'deleted manifest.ocdbt',
                                   'deleted checksum item', 'garbage config JSON'])
def test_every_checkpoint_damaged_is_refused_naming_each(workdir, fault, capfd):
  damage, _ = FAULTS[fault]
  dirs = [os.path.join(workdir, 'checkpoints', s) for s in ('1', '2')]
  for d in dirs:
    damage(d)
  before = sorted(os.listdir(workdir))
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    _restore(workdir)
  message = str(info.value)
  for d in dirs:
    assert d in message
  assert 'Nothing was changed' in message and 'step 0' in message
  assert sorted(os.listdir(workdir)) == before and all(os.path.isdir(d) for d in dirs)
  assert 'Traceback' not in capfd.readouterr().err


def test_a_workdir_without_checkpoints_starts_from_scratch(tmp_path):
  ckpt = ckpt_lib.Checkpointer(str(tmp_path / 'run'), _config())
  assert ckpt.restore_latest(_target()) is None


@pytest.mark.parametrize('fault', ['flipped array bytes', 'deleted manifest.ocdbt',
                                   'deleted checksum item', 'wrong dtype (stored array)'])
def test_damaged_best_checkpoint_falls_back_to_the_final_state(workdir, fault, capfd):
  damage, _ = FAULTS[fault]
  best_dir = os.path.join(workdir, 'best', '2')
  damage(best_dir)
  ckpt = ckpt_lib.Checkpointer(workdir, _config(), best_metric='f1')
  assert ckpt.restore_best(_target()) is None
  assert best_dir in ckpt.best_failure
  err = capfd.readouterr().err
  assert best_dir in err and 'Evaluating the final state instead' in err
  assert 'Traceback' not in err
  assert os.path.isdir(os.path.join(workdir, 'damaged', 'best-2'))


def test_intact_best_checkpoint_restores_bitwise(workdir):
  ckpt = ckpt_lib.Checkpointer(workdir, _config(), best_metric='f1')
  state, step = ckpt.restore_best(_target())
  assert step == 2
  _assert_bitwise_equal(state, DAMAGED)


def test_damaged_best_checkpoint_found_at_resume_is_moved_aside(workdir, capfd):
  _flip(_data_files(os.path.join(workdir, 'best', '2'))[0])
  ckpt = ckpt_lib.Checkpointer(workdir, _config(), best_metric='f1')
  ckpt.check_best(_target())
  assert os.path.join(workdir, 'best', '2') in capfd.readouterr().err
  assert ckpt.restore_best(_target()) is None and ckpt.best_failure is None
  ckpt.save_best(3, _state(3, 3), {'f1': 0.1})  # a new best is chosen among the next ones
  ckpt.wait()
  assert ckpt.restore_best(_target())[1] == 3


def test_last_good_names_only_a_verified_finite_checkpoint(workdir):
  ckpt = ckpt_lib.Checkpointer(workdir, _config())
  assert ckpt.last_good(_target()).step == 2
  _nan_params(os.path.join(workdir, 'checkpoints', '2'))
  assert ckpt.last_good(_target()).step == 1
  _flip(_data_files(os.path.join(workdir, 'checkpoints', '1'))[0])
  assert ckpt.last_good(_target()) is None


def _all_files(d):
  return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


_FUZZ_COUNTS = {'restored intact': 0, 'fell back': 0}
# Kept small in the suite; FAUJAX_FUZZ_EXAMPLES=1000 for a longer campaign.
_FUZZ_EXAMPLES = int(os.environ.get('FAUJAX_FUZZ_EXAMPLES', '40'))


@settings(max_examples=_FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_damage_restores_only_what_was_saved(pristine, tmp_path_factory, data):
  """Random damage anywhere in the newest checkpoint: the run restores either that checkpoint,
  bitwise as saved (the damage hit nothing it reads), or the previous one, bitwise, after
  reporting the damaged one by path. Never a different state, never an unclear error."""
  root = str(tmp_path_factory.mktemp('fuzz') / 'run')
  shutil.copytree(pristine, root)
  bad_dir = os.path.join(root, 'checkpoints', '2')
  files = _all_files(bad_dir)
  path = os.path.join(bad_dir, data.draw(st.sampled_from(files), label='file'))
  mode = data.draw(st.sampled_from(['flip', 'truncate', 'zero', 'delete', 'append']),
                   label='mode')
  size = os.path.getsize(path)
  at = data.draw(st.integers(0, max(size - 1, 0)), label='offset')
  n = data.draw(st.integers(1, 16), label='bytes')
  content = bytearray(open(path, 'rb').read())
  if mode == 'flip':
    for j in range(at, min(at + n, size)):
      content[j] ^= data.draw(st.integers(1, 255), label='xor')
  elif mode == 'truncate':
    content = content[:at]
  elif mode == 'zero':
    content[at:at + n] = bytes(len(content[at:at + n]))
  elif mode == 'append':
    content += b'\0' * n
  if mode == 'delete':
    os.remove(path)
  else:
    open(path, 'wb').write(bytes(content))
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    _, restored = _restore(root)
  if restored.step == 2:
    _assert_bitwise_equal(restored.state, DAMAGED)
    assert bad_dir not in err.getvalue()
    _FUZZ_COUNTS['restored intact'] += 1
  else:
    assert restored.step == 1
    _assert_bitwise_equal(restored.state, GOOD)
    assert bad_dir in err.getvalue()
    _FUZZ_COUNTS['fell back'] += 1
  shutil.rmtree(os.path.dirname(root))


# ------------------------------------------------------------------------------------------------
# The resume policy (Checkpointer level: fast).


def test_changed_config_is_refused_with_every_changed_key(workdir):
  config = _config()
  config.optim.learning_rate = 0.5
  config.train.batch_size = 16
  config.seed = 7
  config.train.log_every = 1  # cannot change results: not listed
  with pytest.raises(ckpt_lib.ConfigChangeError) as info:
    ckpt_lib.Checkpointer(workdir, config)
  message = str(info.value)
  for key in ('config.optim.learning_rate', 'config.train.batch_size', 'config.seed'):
    assert key in message
  assert 'log_every' not in message and '--allow_config_change' in message


def test_structural_change_is_refused_even_with_the_flag(workdir):
  config = _config()
  config.model.backbone.widths = (8, 32)
  with pytest.raises(ckpt_lib.ConfigChangeError, match='config.model.backbone.widths'):
    ckpt_lib.Checkpointer(workdir, config, allow_config_change=True)


def test_allowed_change_is_recorded_and_nothing_overwritten(workdir):
  with open(os.path.join(workdir, 'config.json')) as f:
    original = json.load(f)
  config = _config()
  config.optim.learning_rate = 0.5
  config.data.data_dir = '/elsewhere'
  ckpt = ckpt_lib.Checkpointer(workdir, config, allow_config_change=True)
  restored = ckpt.restore_latest(_target())
  ckpt.record.record_config(restored.step, restored)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f) == original
  with open(os.path.join(workdir, 'config_history.json')) as f:
    history = json.load(f)
  assert [e['step'] for e in history] == [0, 2]
  assert history[0]['config'] == original
  assert history[1]['changed'] == ['data.data_dir', 'optim.learning_rate']
  assert history[1]['config']['optim']['learning_rate'] == 0.5
  # The same changed config again is now the run's config: accepted without the flag.
  ckpt_lib.Checkpointer(workdir, config).record.record_config(2)
  with open(os.path.join(workdir, 'config_history.json')) as f:
    assert len(json.load(f)) == 2
  # ... and going back to the original is a change again.
  with pytest.raises(ckpt_lib.ConfigChangeError, match='config.optim.learning_rate'):
    ckpt_lib.Checkpointer(workdir, _config())


def test_result_neutral_change_is_accepted_and_recorded(workdir):
  config = _config()
  config.data.data_dir = '/moved/tfds'
  config.checkpoint.every = 3
  ckpt = ckpt_lib.Checkpointer(workdir, config)
  ckpt.record.record_config(2, ckpt.restore_latest(_target()))
  with open(os.path.join(workdir, 'config_history.json')) as f:
    assert json.load(f)[-1]['changed'] == ['checkpoint.every', 'data.data_dir']


def test_garbage_config_record_is_a_clear_error(workdir):
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write('{garbage')
  os.remove(os.path.join(workdir, 'config_history.json'))
  with pytest.raises(ckpt_lib.CheckpointError, match='config.json is not valid JSON'):
    ckpt_lib.Checkpointer(workdir, _config())


def test_lost_config_record_is_rebuilt_from_the_checkpoint(workdir):
  os.remove(os.path.join(workdir, 'config.json'))
  os.remove(os.path.join(workdir, 'config_history.json'))
  config = _config()
  config.seed = 3
  ckpt = ckpt_lib.Checkpointer(workdir, config)  # nothing to compare with yet
  restored = ckpt.restore_latest(_target())
  with pytest.raises(ckpt_lib.ConfigChangeError, match='config.seed'):
    ckpt.record.record_config(restored.step, restored)
  ckpt = ckpt_lib.Checkpointer(workdir, _config())
  restored = ckpt.restore_latest(_target())
  ckpt.record.record_config(restored.step, restored)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f) == run_record.config_to_json(_config())
  with open(os.path.join(workdir, 'config_history.json')) as f:
    assert 'were missing' in json.load(f)[0]['note']


# ------------------------------------------------------------------------------------------------
# End to end: train_and_evaluate on the tiny synthetic dataset.


def _run_config(data_dir, **train_keys):
  config = tiny_config.get_config()
  config.data.data_dir = data_dir
  for key, value in train_keys.items():
    section, name = key.split('__')
    config[section][name] = value
  return config


@pytest.fixture(scope='module')
def finished_run(tiny_data_dir, tmp_path_factory):
  """A finished 12-step run: periodic checkpoints at 6 and 12, validations at 6 and 12."""
  root = str(tmp_path_factory.mktemp('finished') / 'run')
  results = train.train_and_evaluate(_run_config(tiny_data_dir), root)
  return root, results


def _json(x):
  """x as results.json holds it (NaN as null), for comparisons."""
  return json.loads(json.dumps(reporting.jsonable(x)))


def _periodic_state(root, step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  mgr = ocp.CheckpointManager(os.path.join(root, 'checkpoints'), item_names=('state',))
  return mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']


def test_run_falls_back_past_a_damaged_checkpoint_and_ends_as_without_damage(
    finished_run, tiny_data_dir, tmp_path, capfd):
  root, results = finished_run
  work = str(tmp_path / 'run')
  shutil.copytree(root, work)
  reference = _periodic_state(root, 12)
  os.remove(os.path.join(work, 'results.json'))
  for path in _data_files(os.path.join(work, 'checkpoints', '12')):  # every byte of every one
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(bytes(b ^ 0x5A for b in data))
  again = train.train_and_evaluate(_run_config(tiny_data_dir), work)
  err = capfd.readouterr().err
  assert f'Checkpoint {os.path.join(work, "checkpoints", "12")} is damaged' in err
  assert 'Falling back to the newest good checkpoint' in err and 'Traceback' not in err
  _assert_bitwise_equal(_periodic_state(work, 12), reference)  # steps 7-12 redone exactly
  assert _json(again['validation_history']) == _json(results['validation_history'])
  assert [e['step'] for e in again['validation_history']] == [6, 12]
  assert _json(again['metrics']) == _json(results['metrics'])


@pytest.mark.slow  # also covered by the fallback test above (resumed from step 6)
def test_validation_history_is_kept_across_a_resume(finished_run, tiny_data_dir, tmp_path):
  """A run killed after the step-6 checkpoint (step 12 never saved) and resumed."""
  root, results = finished_run
  work = str(tmp_path / 'run')
  shutil.copytree(root, work)
  shutil.rmtree(os.path.join(work, 'checkpoints', '12'))
  os.remove(os.path.join(work, 'results.json'))
  again = train.train_and_evaluate(_run_config(tiny_data_dir), work)
  assert [e['step'] for e in again['validation_history']] == [6, 12]
  assert _json(again['validation_history']) == _json(results['validation_history'])
  with open(os.path.join(work, 'results.json')) as f:
    assert [e['step'] for e in json.load(f)['validation_history']] == [6, 12]


def test_run_refuses_a_changed_config_then_records_it_with_the_flag(
    finished_run, tiny_data_dir, tmp_path):
  root, results = finished_run
  work = str(tmp_path / 'run')
  shutil.copytree(root, work)
  with open(os.path.join(work, 'config.json')) as f:
    original = json.load(f)
  longer = _run_config(tiny_data_dir, train__num_steps=18, optim__learning_rate=1e-3)
  with pytest.raises(ckpt_lib.ConfigChangeError) as info:
    train.train_and_evaluate(longer, work)
  assert 'config.train.num_steps' in str(info.value)
  assert 'config.optim.learning_rate' in str(info.value)
  extended = train.train_and_evaluate(longer, work, allow_config_change=True)
  with open(os.path.join(work, 'config.json')) as f:
    assert json.load(f) == original
  with open(os.path.join(work, 'config_history.json')) as f:
    history = json.load(f)
  assert [(e['step'], e['changed']) for e in history] == [
      (0, []), (12, ['optim.learning_rate', 'train.num_steps'])]
  assert [e['step'] for e in extended['validation_history']] == [6, 12, 18]
  assert _json(extended['validation_history'][:2]) == _json(results['validation_history'])


def test_nan_message_names_no_checkpoint_before_one_exists(tiny_data_dir, tmp_path):
  config = _run_config(tiny_data_dir, optim__learning_rate=1e30, schedule__warmup_epochs=0.0)
  work = str(tmp_path / 'run')
  with pytest.raises(train.NonFiniteError) as info:
    train.train_and_evaluate(config, work)
  message = str(info.value)
  assert 'No checkpoint was saved' in message and 'checkpoints/' not in message
  assert not glob.glob(os.path.join(work, 'checkpoints', '[0-9]*'))


def test_nan_message_names_the_verified_checkpoint(finished_run, tiny_data_dir, tmp_path):
  """The finished 12-step run extended with an exploding learning rate (--allow_config_change):
  the message must name checkpoint 12, the newest one, verified finite."""
  root, _ = finished_run
  work = str(tmp_path / 'run')
  shutil.copytree(root, work)
  config = _run_config(tiny_data_dir, optim__learning_rate=1e30, train__num_steps=18)
  with pytest.raises(train.NonFiniteError) as info:
    train.train_and_evaluate(config, work, allow_config_change=True)
  message = str(info.value)
  assert os.path.join(work, 'checkpoints', '12') in message and 'verified' in message


def test_an_interrupted_small_file_write_leaves_the_old_file(tmp_path):
  """``faujax.files.write_atomic`` (config.json, results.json, dataset_info.json): a write that
  fails half-way leaves the previous file whole and no temporary file behind."""
  from faujax import files
  path = str(tmp_path / 'results.json')
  files.write_json(path, {'a': 1})

  def half(f):
    f.write('{"a": 2, "b"')
    raise OSError('disk full')
  with pytest.raises(OSError, match='disk full'):
    files.write_atomic(path, half)
  assert json.loads(open(path).read()) == {'a': 1}
  assert os.listdir(tmp_path) == ['results.json']
  files.write_atomic(path, lambda f: f.write(b'\x00\x01'), binary=True)
  assert open(path, 'rb').read() == b'\x00\x01'


# ------------------------------------------------------------------------------------------------
# The best checkpoint's metrics are verified (issue 33): orbax's copy decides the best.


def _best_metrics_file(root, step=2):
  return os.path.join(root, 'best', str(step), *ckpt_lib.METRICS_FILE)


@pytest.mark.parametrize('fault', ['deleted', 'edited', 'garbage'])
def test_a_damaged_best_metrics_file_is_rebuilt_and_the_best_kept(workdir, fault, capfd):
  path = _best_metrics_file(workdir)
  if fault == 'deleted':
    os.remove(path)
  elif fault == 'edited':  # a lower value would let a worse checkpoint replace this one
    with open(path, 'w') as f:
      json.dump({'f1': -1.0}, f)
  else:
    with open(path, 'w') as f:
      f.write('{"f1": 0.5, garb')
  ckpt = ckpt_lib.Checkpointer(workdir, _config(), best_metric='f1')
  assert f'{path} was' in capfd.readouterr().err
  with open(path) as f:
    assert json.load(f) == {'f1': 0.5}
  ckpt.save_best(3, _state(3, 3), {'f1': 0.25})  # worse: orbax must keep step 2
  ckpt.wait()
  assert ckpt.best_steps == [2]
  ckpt.close()


def test_best_in_history_is_the_latest_of_the_best_values_after_a_step():
  history = [{'step': 6, 'f1': 0.9}, {'step': 12, 'f1': 0.3}, {'step': 18, 'f1': float('nan')},
             {'step': 24, 'f1': 0.5}, {'step': 30, 'f1': 0.5}, {'step': 36, 'f1': 0.4}]
  assert ckpt_lib.best_in_history(history, 'f1', after=6)['step'] == 30
  assert ckpt_lib.best_in_history(history, 'f1')['step'] == 6
  assert ckpt_lib.best_in_history(history, 'f1', after=36) is None


def test_a_lost_best_checkpoint_is_named_not_replaced_by_a_worse_one(finished_run,
                                                                     tiny_data_dir, tmp_path,
                                                                     capfd):
  src, results = finished_run
  root = str(tmp_path / 'run')
  shutil.copytree(src, root)
  best_step = int(results['checkpoint'].split('at step ')[1])
  shutil.rmtree(os.path.join(root, 'best'))
  again = train.train_and_evaluate(_run_config(tiny_data_dir), root)
  assert f'step {best_step} by the validation history' in again['checkpoint']
  assert 'is not in' in capfd.readouterr().err
  assert not os.listdir(os.path.join(root, 'best'))  # no later checkpoint posing as the best


# ------------------------------------------------------------------------------------------------
# Clear refusals: a changed optimiser, a full disk, a file where damaged/ goes (issue 33).


def test_a_changed_optimiser_is_refused_naming_the_key_and_nothing_changes(workdir):
  before = file_digests.digests(workdir)
  config = _config()
  config.optim.name = 'sgd'
  ckpt = ckpt_lib.Checkpointer(workdir, config, allow_config_change=True)
  target = {**_target(), 'opt_state': ({'count': np.zeros((), np.int32)},)}
  with pytest.raises(run_record.ConfigChangeError, match=r'config\.optim\.name') as e:
    ckpt.restore_latest(target)
  assert 'every one failed verification' not in str(e.value)
  assert file_digests.digests(workdir) == before


@pytest.fixture
def file_size_limit():
  """Lowers this process's file-size limit (``ulimit -f``: writes past it fail with EFBIG, as
  on a full disk; Python ignores SIGXFSZ) inside ``with limit():``."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import resource  # pylint: disable=g-import-not-at-top
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

  @contextlib.contextmanager
  def limit(nbytes=4096):
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
      yield
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  return limit


def test_a_full_disk_names_the_file_and_the_intact_checkpoint(tmp_path, file_size_limit):
  from faujax import files  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / 'run')
  ckpt = ckpt_lib.Checkpointer(root, _config(), best_metric='f1')
  ckpt.save(1, GOOD, history=[])
  ckpt.wait()
  big = {**GOOD, 'params': {**GOOD['params'], 'head': {'kernel': np.ones((64, 64), np.float32),
                                                       'bias': GOOD['params']['head']['bias']}}}
  errors = []
  with file_size_limit():
    for write in (lambda: ckpt.save(2, {**big, 'step': np.array(2, np.int32)}, history=[]),
                  lambda: files.write_json(os.path.join(root, 'config.json'), ['x' * 9000]),
                  lambda: reporting.create_writer(root).write_scalars(
                      1, {f'm{i}': 1.0 for i in range(500)})):
      with pytest.raises(files.NoRoomError) as e:
        write()
      errors.append(str(e.value))
  assert os.path.join(root, 'checkpoints', '2') in errors[0]
  assert f'{os.path.join(root, "checkpoints", "1")}, is intact' in errors[0]
  assert os.path.join(root, 'config.json') in errors[1] and 'previous version' in errors[1]
  assert 'TensorBoard events file' in errors[2] and root in errors[2]
  assert all('File too large' in e for e in errors)
  restored = ckpt.restore_latest(_target())
  assert restored.step == 1
  _assert_bitwise_equal(restored.state, GOOD)
  ckpt.close()


def test_a_file_where_damaged_checkpoints_go_is_named(workdir):
  with open(os.path.join(workdir, 'checkpoints', '2', 'checksums', 'metadata'), 'w') as f:
    f.write('garbage')
  with open(os.path.join(workdir, ckpt_lib.DAMAGED_DIR), 'w') as f:
    f.write('a user file')
  ckpt = ckpt_lib.Checkpointer(workdir, _config())
  with pytest.raises(run_record.CheckpointError, match=r'damaged is a file'):
    ckpt.restore_latest(_target())

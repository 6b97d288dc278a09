"""One writer per workdir (issue 33): ``faujax.workdir_lock``, in process and between real
processes, and the command line's one-line errors for workdirs and config files."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from faujax import checkpoint as ckpt_lib
from faujax import sweep
from faujax import train
from faujax import workdir_lock
import file_digests
import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
  env = dict(os.environ)
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  env['PYTHONPATH'] = os.path.join(REPO, 'tests') + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _checkpointed(root):
  """A workdir holding a verified periodic checkpoint of step 1."""
  state = {'step': np.array(1, np.int32), 'params': {'w': np.arange(6, dtype=np.float32)}}
  ckpt = ckpt_lib.Checkpointer(root, tiny_config.get_config())
  ckpt.save(1, state, history=[])
  ckpt.wait()
  ckpt.close()
  return state


def test_a_second_hold_is_refused_even_in_one_process(tmp_path):
  root = str(tmp_path / 'run')
  with workdir_lock.hold(root):
    with pytest.raises(workdir_lock.WorkdirInUseError,
                       match=rf'pid {os.getpid()} on host {socket.gethostname()}'):
      with workdir_lock.hold(root):
        pass
    with open(os.path.join(root, workdir_lock.LOCK_FILE)) as f:
      assert json.load(f)['pid'] == os.getpid()
  with workdir_lock.hold(root):  # released at the end of the block
    pass


def test_a_training_on_a_held_workdir_writes_nothing(tmp_path):
  root = str(tmp_path / 'run')
  with workdir_lock.hold(root):
    with pytest.raises(workdir_lock.WorkdirInUseError, match='in use'):
      train.train_and_evaluate(tiny_config.get_config(), root)
    assert os.listdir(root) == [workdir_lock.LOCK_FILE]


def test_reading_a_held_workdir_needs_no_lock(tmp_path):
  root = str(tmp_path / 'run')
  state = _checkpointed(root)
  with workdir_lock.hold(root):
    before = file_digests.digests(root)
    restored = ckpt_lib.read(root, 'latest')
    assert file_digests.digests(root) == before
  np.testing.assert_array_equal(restored.state['params']['w'], state['params']['w'])


def test_a_workdir_that_is_a_file_or_read_only_is_named(tmp_path):
  path = tmp_path / 'file'
  path.write_text('x')
  with pytest.raises(workdir_lock.WorkdirError, match=rf'{path} is a file'):
    with workdir_lock.hold(str(path)):
      pass
  if os.geteuid() == 0:
    pytest.skip('root writes a read-only directory')
  ro = tmp_path / 'ro'
  ro.mkdir(mode=0o555)
  with pytest.raises(workdir_lock.WorkdirError, match=rf'{ro} is not writable'):
    with workdir_lock.hold(str(ro)):
      pass


def test_a_second_process_is_refused_and_a_killed_holders_lock_is_taken(tmp_path,
                                                                        tiny_data_dir):
  """Two real processes: the holder (the lock a training takes) and a real training started
  on the same workdir, refused in one line naming the holder; nothing of the workdir changes.
  When the holder is killed (SIGKILL) its lock is free again."""
  root = str(tmp_path / 'run')
  _checkpointed(root)
  holder = subprocess.Popen(
      [sys.executable, '-c', textwrap.dedent(f'''
          import time
          from faujax import workdir_lock
          with workdir_lock.hold({root!r}):
            print('locked', flush=True)
            time.sleep(300)
          ''')], stdout=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    before = file_digests.digests(root)
    second = subprocess.run(
        [sys.executable, '-m', 'faujax.main', f'--config={REPO}/tests/tiny_config.py',
         f'--workdir={root}', f'--config.data.data_dir={tiny_data_dir}'],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert second.returncode == 1
    assert f'pid {holder.pid} on host {socket.gethostname()}' in second.stderr
    assert 'Traceback' not in second.stderr
    assert file_digests.digests(root) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lock.hold(root):  # the dead holder's lock is stale: taken again
    pass


def test_a_sweep_skips_a_run_another_process_trains(tmp_path, capfd):
  def train_fn(config, workdir):
    if config.seed == 1:
      raise workdir_lock.WorkdirInUseError(f'{workdir} is in use')
    return {'metrics': {'f1_mean': 0.5}, 'trivial_baseline': {'name': 'all', 'f1_mean': 0.1}}
  out = sweep.run_sweep(tiny_config.get_config(), str(tmp_path), [], [0, 1], train_fn=train_fn)
  assert 'skipped' in capfd.readouterr().err
  assert len(out['cells']) == 1


@pytest.mark.parametrize('args, message', [
    (['--config=/no/such/config.py'], 'cannot load --config /no/such/config.py: no such file'),
    (['--config={bad}'], 'SyntaxError'),
    (['--config={repo}/tests/tiny_config.py:bp4d'], 'this config file takes no :ARGUMENT'),
    (['--config={repo}/configs/macg/synthetic.py:bogus'], "argument 'bogus'; expected one of"),
    (['--config={repo}/tests/tiny_config.py', '--config.train.batch_size=abc'],
     'flag --config.train.batch_size=abc'),
    (['--config={repo}/tests/tiny_config.py', '--workdir={file}'], 'is a file; expected a'),
])
def test_command_line_mistakes_are_one_line(tmp_path, args, message):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n')
  afile = tmp_path / 'afile'
  afile.write_text('')
  args = [a.format(repo=REPO, bad=bad, file=afile) for a in args]
  if not any(a.startswith('--workdir') for a in args):
    args.append(f'--workdir={tmp_path / "run"}')
  proc = subprocess.run([sys.executable, '-m', 'faujax.main', *args], capture_output=True,
                        text=True, env=_env(), cwd=REPO, timeout=300)
  assert proc.returncode != 0
  assert message in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr

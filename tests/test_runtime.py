"""faujax.runtime: the XLA CPU options and compilation cache of faujax's commands."""

import os
import subprocess
import sys

from faujax import runtime


def test_user_xla_flags_are_left_alone():
  assert runtime.xla_flags({'XLA_FLAGS': '--xla_dump_to=/tmp/x'}) is None
  assert runtime.xla_flags({'XLA_FLAGS': ''}) is None


def test_flags_only_on_the_jaxlib_versions_they_were_measured_on(monkeypatch):
  monkeypatch.setattr(runtime, '_jaxlib_version', lambda: '0.10.2')
  assert runtime.xla_flags({}) == ' '.join(runtime.CPU_XLA_FLAGS)
  monkeypatch.setattr(runtime, '_jaxlib_version', lambda: '0.11.0')
  assert runtime.xla_flags({}) is None


def test_cache_dir_honours_jax_and_faujax_settings():
  assert runtime.cache_dir({'JAX_COMPILATION_CACHE_DIR': '/c'}) is None
  assert runtime.cache_dir({'FAUJAX_CACHE_DIR': '/f'}) == '/f'
  assert runtime.cache_dir({}).endswith(os.path.join('.cache', 'faujax', 'jax'))


def test_configured_process_starts_and_computes(tmp_path):
  """The flags are accepted by this jaxlib (an unknown XLA flag aborts the process) and a
  program compiles, runs and lands in the cache directory."""
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_COMPILATION_CACHE_DIR')}
  env['FAUJAX_CACHE_DIR'] = str(tmp_path)
  code = ('from faujax import runtime; runtime.configure(); import os, jax, jax.numpy as jnp; '
          
          'x = jax.jit(lambda a: jax.lax.conv(a, a[:1], (1, 1), "SAME"))(jnp.ones((1, 2, 8, 8))); '
          'print(float(x.sum()), os.environ.get("XLA_FLAGS", ""))')
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  value, _, flags = out.stdout.strip().partition(' ')
  assert float(value) > 0
  assert flags == (runtime.xla_flags({}) or '')
  assert any(tmp_path.iterdir()), 'nothing was written to the compilation cache'


def test_commands_import_tensorflow_only_to_read_a_dataset():
  """Importing TensorFlow takes seconds (most of ``import faujax.train``'s time before): the
  training, benchmark and prediction modules, a dataset's metadata and the console writer do
  without it; building a tf.data pipeline imports it."""
  code = ('import sys; from faujax import bench, predict, predictor, reporting, train; '
          'from faujax.data import input_pipeline; '
          'reporting.create_writer("unused").flush(); '
          'assert "tensorflow" not in sys.modules, [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")][:5]; '
          'print("ok")')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-2000:]

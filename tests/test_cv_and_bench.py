"""The cross-validation driver and the step benchmark, end to end on the tiny synthetic data."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from faujax import bench
from faujax import cv

import tiny_config


def _fold_results(config, workdir):
  """What train_and_evaluate returns for a fold, with metrics that depend on the fold."""
  k = config.data.fold
  os.makedirs(workdir)
  names = ['AU1', 'AU12']
  metrics = {'f1/AU1': 0.1 * k, 'f1/AU12': 0.2 * k, 'auc/AU1': 0.5, 'auc/AU12': 0.6 + 0.01 * k}
  metrics.update(f1_mean=0.15 * k, auc_mean=0.55 + 0.005 * k)
  return {'metrics': metrics, 'label_names': names, 'dataset': 'synthetic_faces/bp4d'}


def test_cv_runs_every_fold_and_writes_the_table(tmp_path):
  """Each fold's run gets its fold and its own directory; the table and the means are the
  folds'. (The folds' subject-exclusive parts: tests/test_splits.py; a real run: the sweep and
  training tests.)"""
  config = tiny_config.get_config()
  seen = []

  def train_fn(cfg, workdir):
    seen.append((cfg.data.fold, os.path.basename(workdir)))
    return _fold_results(cfg, workdir)

  out = cv.run_folds(config, str(tmp_path), [1, 2, 3], train_fn=train_fn)
  assert seen == [(1, 'fold1'), (2, 'fold2'), (3, 'fold3')]
  assert config.data.fold == tiny_config.get_config().data.fold  # the caller's config unchanged
  with open(tmp_path / 'cv_results.json') as f:
    saved = json.load(f)
  assert saved['folds'] == [1, 2, 3] and len(saved['per_fold']) == 3
  table = (tmp_path / 'cv_results.md').read_text()
  assert 'F1 fold 3' in table and '| AU12 |' in table and '**Avg.**' in table
  assert '| AU12 | 20.0 | 40.0 | 60.0 |' in table.replace('  ', ' ')  # per-fold F1, in percent
  assert np.isclose(out['f1_mean'], 0.3) and np.isclose(out['auc_mean'], 0.56)


def test_cv_stops_at_a_fold_stopped_by_sigterm(tmp_path):
  """A fold that returns without metrics (SIGTERM) ends the command before the next fold."""
  seen = []

  def train_fn(cfg, workdir):
    seen.append(cfg.data.fold)
    return {'stopped': 'SIGTERM'} if cfg.data.fold == 2 else _fold_results(cfg, workdir)

  assert cv.run_folds(tiny_config.get_config(), str(tmp_path), [1, 2, 3],
                      train_fn=train_fn) == {'stopped': 'SIGTERM'}
  assert seen == [1, 2] and not (tmp_path / 'cv_results.json').exists()


def test_bench_times_both_modes():
  config = tiny_config.get_config()
  rows = [bench.benchmark(config, mode, 16, steps=2) for mode in ('jit', 'pmap')]
  for row in rows:
    assert row['train_images_per_s'] > 0 and row['eval_images_per_s'] > 0
    assert row['devices'] == jax.device_count()
    assert row['params'] == rows[0]['params'] > 0
    # Forward + backward + update costs more than the forward pass (XLA's FLOP counts).
    assert row['train_flops'] > 1.5 * row['eval_flops'] > 0
    assert row['train_tflops_per_s'] > 0
    assert row['peak_tflops'] is None and row['train_mfu'] is None  # no listed peak for CPUs
    # Set-up, build and the first (compiling) step all come after the process started.
    assert row['process_start_to_first_train_step_s'] > row['first_train_call_s'] > 0
  lines = bench.format_table(rows).splitlines()
  assert len(lines) == 4  # header, rule, one row per mode
  assert [line.split('|')[4].strip() for line in lines[2:]] == ['jit', 'pmap']


def test_profile_lists_the_train_steps_ops(tmp_path):
  config = tiny_config.get_config()
  bench.benchmark(config, 'jit', 8, steps=2, profile_dir=str(tmp_path))
  found = bench.top_ops(str(tmp_path), top=1000)
  kinds = [name for name, _, _ in found['kinds']]
  assert any('convolution' in k for k in kinds) and any('fusion' in k for k in kinds), kinds
  # Not device ops: Python frames, runtime scopes, host-side argument placement.
  assert not any(k.startswith('$') or '::' in k or k in ('shard_args', 'DevicePutWithSharding')
                 for k in kinds), kinds
  assert len(bench.top_ops(str(tmp_path), top=3)['kinds']) == 3
  shares = [share for _, _, share in found['ops']]
  assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
  assert abs(sum(s for _, _, s in found['kinds']) - sum(shares)) < 1e-9  # every op in a kind
  table = bench.format_top_ops(found)
  assert '| op kind |' in table and '| op |' in table
  with pytest.raises(FileNotFoundError, match='no .*trace'):
    bench.top_ops(str(tmp_path / 'empty'))


def test_mfu_peaks_match_the_chip_and_compute_dtype():
  assert bench.peak_tflops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.4
  assert bench.peak_tflops('NVIDIA H100 PCIe', 'bfloat16') == 756.0  # not the SXM part's
  assert bench.peak_tflops('NVIDIA H200', 'float32') == 494.7  # TF32
  assert bench.peak_tflops('TPU v5 lite', 'bfloat16') == 197.0  # v5e, not v5p
  assert bench.peak_tflops('TPU v5p', 'bfloat16') == 459.0
  assert bench.peak_tflops('cpu', 'float32') is None


def test_process_age_counts_from_the_process_start():
  """The age covers the script's own run (sleep, imports) plus only the interpreter's start."""
  out = subprocess.run([sys.executable, '-c', 'import time; t0 = time.monotonic(); '
                        'time.sleep(1.0); from faujax import bench; '
                        'age = bench.seconds_since_process_start(); '
                        'print(age, time.monotonic() - t0)'],
                       capture_output=True, text=True, check=True)
  age, ran = (float(v) for v in out.stdout.strip().splitlines()[-1].split())
  assert ran >= 1.0
  assert ran - 0.02 <= age < ran + 5.0  # /proc's 10 ms ticks; interpreter start-up only

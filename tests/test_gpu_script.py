"""``benchmarks/gpu.sh --dry`` runs every stage end to end on the CPU and writes its report."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = r'\d+(?:\.\d+)?'


def _section(report: str, title: str) -> str:
  """The text of the ``## title`` section (up to the next ``## ``)."""
  m = re.search(r'^## ' + re.escape(title) + r'.*?$(.*?)(?=^## |\Z)', report, re.M | re.S)
  assert m, f'no section {title!r} in the report:\n{report}'
  return m.group(1)


@pytest.mark.slow  # about 90 s on 2 cores: three benches, a model build, the predict benchmark
def test_gpu_script_dry_run_writes_every_section(tmp_path):
  out = tmp_path / 'out'
  env = {**os.environ, 'OUT': str(out), 'PYTHON': sys.executable}
  env.pop('DRY', None)
  # One CPU device, as on the command line (conftest.py asks for 8 virtual ones).
  flags = re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                 env.get('XLA_FLAGS', '')).strip()
  if flags:
    env['XLA_FLAGS'] = flags
  else:
    env.pop('XLA_FLAGS', None)
  proc = subprocess.run(['bash', 'benchmarks/gpu.sh', '--dry'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  path = out / 'gpu_report.md'
  assert path.exists()
  report = path.read_text()
  assert report.startswith('# faujax GPU benchmark report (DRY RUN')
  assert re.search(r'^- Devices: \d+ x \S', report, re.M)
  assert re.search(r'^- jax \d+\.\d+', report, re.M)
  assert re.search(r'^- Date: \d{4}-\d\d-\d\d', report, re.M)

  steps = _section(report, 'Train and eval steps')
  for model in ('macg', 'me_graphau', 'emotion_gcn'):
    # model | params | dtype | mode | batch | px | train ms | train img/s | eval ms | eval img/s
    row = (rf'^\| {model}/small_cnn \| {NUMBER}M \| bfloat16 \| jit \| 2 \| 64 '
           rf'\| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \|')
    assert re.search(row, steps, re.M), f'{model}: no numbers in\n{steps}'
    assert re.search(rf'^\| {model}/small_cnn \| 2 \| bfloat16 \| float32 \| {NUMBER} ', steps,
                     re.M), steps
  assert 'Parameters float32 under bf16 compute: yes' in steps
  for name in ('macg', 'me_graphau', 'emotion_gcn'):
    assert os.path.exists(out / 'gpu_report_raw' / f'bench_{name}.json')
    assert f'bench_{name}.json' in steps

  predict = _section(report, 'Inference on photos')
  assert 'random weights' in predict
  row = re.search(rf'^\| (images|video) .*?\| {NUMBER} \| {NUMBER} \| {NUMBER} \|(.*)$',
                  predict, re.M)
  assert row and re.search(NUMBER, row.group(2)), predict
  assert re.search(rf'end_to_end.*\n.*\n\| images \(\d+\) \| \d+ \| \d+ \| {NUMBER} \|', predict)
  assert (out / 'gpu_report_raw' / 'predict.json').exists()

  torch_ref = _section(report, 'PyTorch references')
  assert (re.search(r'^Skipped: \S', torch_ref, re.M)
          or re.search(rf'^\| resnet50 \| 64 \| 2 \| train \| {NUMBER} \| {NUMBER} \| {NUMBER} \|',
                       torch_ref, re.M)), torch_ref


def test_gpu_script_fails_loudly_when_a_stage_fails(tmp_path):
  """A stage that fails stops the script with its exit status and the log's tail."""
  env = {**os.environ, 'PYTHON': 'false', 'OUT': str(tmp_path)}
  proc = subprocess.run(['bash', 'benchmarks/gpu.sh', '--dry'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode != 0
  assert "stage 'environment' failed" in proc.stderr
  assert not (tmp_path / 'gpu_report.md').exists()

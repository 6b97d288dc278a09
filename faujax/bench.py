"""Benchmark of the compiled train and eval steps: ``python -m faujax.bench --config CONFIG``.

For each parallel mode ('jit', 'pmap') and batch size it compiles the real ``train_step`` and
``eval_step`` of the config's model (augmentation, loss and optimiser included) and times them on
random uint8 batches of the config's shapes, so no dataset is needed. It prints a table and writes
JSON: compile time, median step time, images/s, achieved TFLOP/s (XLA's FLOP count of the compiled
step over its median time, per device), the model FLOP utilisation (that over the chip's peak,
``PEAK_TFLOPS``; n/a on CPUs and unlisted chips), peak device memory (the allocator's peak on GPUs;
XLA's compiled-memory estimate where the device reports none, e.g. the CPU), and the seconds from
the process's start to the first finished train step.

  python -m faujax.bench --config configs/default.py --batch_sizes 16,64 --out bench.json

``--profile DIR`` also traces a few train steps of the first (mode, batch size) with
``jax.profiler`` into DIR (open it in Perfetto or TensorBoard) and prints the ops that took the most
device time, alone and grouped by kind (an op's name without its ``.N`` suffix, e.g. every
``convolution``, every ``transpose_copy_fusion``).
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import statistics
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np
from ml_collections import config_flags

from faujax import config_base
from faujax import config_schema
from faujax import labels as labels_lib
from faujax import parallel
from faujax import runtime
from faujax import train
from faujax.data import augment
from faujax.data import dataset_info

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program, so the module imports cleanly)."""
  config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
  flags.DEFINE_list('modes', ['jit', 'pmap'], 'Parallel modes to time.')
  flags.DEFINE_list('batch_sizes', None, 'Global batch sizes (default: config.train.batch_size).')
  flags.DEFINE_integer('steps', 10, 'Timed steps per measurement (after one warm-up step).')
  flags.DEFINE_string('out', None, 'Write the results as JSON to this path.')
  flags.DEFINE_string('profile', None, 'Trace train steps of the first row into this directory and '
                      'print the top ops.')
  flags.DEFINE_integer('top', 15, 'Ops (and op kinds) listed by --profile.')
  flags.mark_flags_as_required(['config'])


def stand_in_info(config: ml_collections.ConfigDict) -> dataset_info.DatasetInfo:
  """A DatasetInfo with the label space of the config's dataset and its input size, without
  reading any data: random labels stand in for the training statistics."""
  name, builder_config = config.data.name, config.data.builder_config or ''
  if name == 'synthetic_faces':
    task = {'expression': 'expression', 'expression_multi': 'expression_multi'}.get(
        builder_config, 'au')
  else:
    task = {'affectnet': 'expression', 'aff_wild2': 'expression', 'raf_ml': 'expression_multi',
            'jaffe': 'expression_multi'}.get(name, 'au')
    if name == 'raf_db':
      task = 'expression_multi' if builder_config == 'compound' else 'expression'
  aus = ()
  if name == labels_lib.OPENGRAPHAU_DATASET:
    aus, names = labels_lib.opengraphau_aus(), labels_lib.opengraphau_label_names()
  elif task == 'au':
    aus = labels_lib.au_set((builder_config or 'bp4d') if name == 'synthetic_faces' else name)
    names = labels_lib.au_label_names(aus)
  elif task == 'expression':
    names = list(labels_lib.EXPRESSIONS_8 if builder_config == '8class'
                 else labels_lib.EXPRESSIONS_7)
  else:
    names = list(labels_lib.BASIC_6)
  rng = np.random.default_rng(0)
  k = len(names)
  info = dataset_info.DatasetInfo(
      name=name, builder_config=builder_config, task=task, label_names=names, num_labels=k,
      aus=aus, num_examples={'train': 10_000, 'validation': 0, 'test': 0},
      image_size=int(config.data.image_size or config.augment.image_size), num_landmarks=68,
      fold=1, train_occurrence_rates=np.full(k, 0.2, np.float32),
      class_counts=np.arange(1, k + 1, dtype=np.int64) * 100,
      multi_label_names=list(labels_lib.BASIC_6) if task != 'au' else [])
  # Random labels for models whose graph is computed from the training labels (the cached
  # property would otherwise read the dataset).
  info.__dict__['train_labels'] = {
      'expression': rng.integers(0, k, 2000), 'valence': rng.uniform(-1, 1, 2000),
      'arousal': rng.uniform(-1, 1, 2000),
      'expression_multi': (rng.random((2000, 6)) < 0.2).astype(np.float32),
      'au': (rng.random((2000, len(aus))) < 0.2).astype(np.float32),
      'au_mask': np.ones((2000, len(aus)), np.float32)}
  return info


def _peak_memory(compiled: Any) -> tuple[float | None, str]:
  """Peak device memory in MiB and where the number comes from."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 2**20, 'device peak'
  try:
    m = compiled.memory_analysis()
    total = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes)
    return total / 2**20, 'XLA estimate'
  except Exception:  # pylint: disable=broad-except
    return None, 'n/a'


def _flops(compiled: Any) -> float | None:
  """FLOPs of one call of a compiled program from XLA's cost analysis (None if not reported)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


# Dense (no sparsity) peak TFLOP/s per chip: (bfloat16, float32). float32 is the rate XLA's default
# matmul precision runs at: TF32 tensor cores on NVIDIA GPUs, bfloat16 passes on TPUs. The first
# entry whose key is in ``device.device_kind`` applies (NVIDIA and Google data sheets).
PEAK_TFLOPS: tuple[tuple[str, tuple[float, float]], ...] = (
    ('H100 PCIe', (756.0, 378.0)),
    ('H100', (989.4, 494.7)),
    ('H200', (989.4, 494.7)),
    ('A100', (312.0, 156.0)),
    ('L4', (121.0, 60.0)),
    ('TPU v4', (275.0, 275.0)),
    ('TPU v5 lite', (197.0, 197.0)),
    ('TPU v5', (459.0, 459.0)),
    ('TPU v6 lite', (918.0, 918.0)),
)


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The chip's dense peak for the compute ``dtype`` ('bfloat16' or 'float32'), or None."""
  for key, (bf16, fp32) in PEAK_TFLOPS:
    if key in device_kind:
      return bf16 if dtype == 'bfloat16' else fp32
  return None


def seconds_since_process_start() -> float | None:
  """Wall seconds since this process started (Linux ``/proc``; None elsewhere)."""
  try:
    with open('/proc/self/stat') as f:
      start_ticks = float(f.read().rsplit(')', 1)[1].split()[19])  # field 22, starttime
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
  except (OSError, IndexError, ValueError):
    return None
  return uptime - start_ticks / os.sysconf('SC_CLK_TCK')


def _time(fn, *args, steps: int) -> tuple[float, list[float]]:
  """(first-call seconds, per-step seconds of ``steps`` further calls)."""
  t0 = time.perf_counter()
  out = fn(*args)
  jax.block_until_ready(out)
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  return first, times


# Trace events that are not device ops: Python frames ('$file:line name'), runtime C++ scopes
# ('ThunkExecutor::Execute'), the jit / PjRt wrappers around a whole program, and the CPU
# collectives' waits for the other devices ('Rendezvous', 'Wait: pending_threads=3/8', 'Wait for
# rendezvous callback').
_NOT_AN_OP = re.compile(r'^\$|::|^PjitFunction|^PmapFunction|^CommonPjRt|[Rr]endezvous|^Wait')


def top_ops(trace_dir: str, top: int = 15) -> dict[str, list[tuple[str, float, float]]]:
  """The device ops of the newest trace in ``trace_dir`` that took the most time.

  Returns ``{'ops': [(name, total ms, share of all op time)], 'kinds': [...]}``, longest first;
  a kind is an op name without its ``.N`` suffix. Times are summed over every thread, so with
  several threads the total exceeds the wall time.
  """
  paths = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True),
                 key=os.path.getmtime)
  if not paths:
    raise FileNotFoundError(f'--profile {trace_dir}: no *.trace.json.gz written there')
  with gzip.open(paths[-1]) as f:
    events = json.load(f)['traceEvents']
  # Host-side dispatch (argument sharding, device_put) runs on the Python thread: not device ops.
  python_threads = {(e.get('pid'), e.get('tid')) for e in events
                    if e.get('ph') == 'M' and e.get('name') == 'thread_name'
                    and str(e.get('args', {}).get('name', '')).startswith('python')}
  ops: collections.Counter[str] = collections.Counter()
  for e in events:
    if (e.get('ph') == 'X' and (e.get('pid'), e.get('tid')) not in python_threads
        and not _NOT_AN_OP.search(e.get('name', ''))):
      ops[e['name']] += e.get('dur', 0.0) / 1e3
  kinds: collections.Counter[str] = collections.Counter()
  for name, ms in ops.items():
    kinds[re.sub(r'\.\d+$', '', name)] += ms
  total = sum(ops.values()) or 1.0
  table = lambda c: [(n, ms, ms / total) for n, ms in c.most_common(top)]
  return {'ops': table(ops), 'kinds': table(kinds)}


def format_top_ops(found: dict[str, list[tuple[str, float, float]]]) -> str:
  lines = []
  for what, label in (('kinds', 'op kind'), ('ops', 'op')):
    lines += [f'| {label} | ms (all threads) | share |', '|---|---:|---:|']
    lines += [f'| {name} | {ms:.1f} | {100 * share:.1f} % |' for name, ms, share in found[what]]
    lines.append('')
  return '\n'.join(lines)


def benchmark(config: ml_collections.ConfigDict, mode: str, batch_size: int,
              steps: int, profile_dir: str | None = None) -> dict[str, Any]:
  """Times one (mode, batch size) configuration; returns a row of the results table.

  ``profile_dir``: also trace ``steps`` train steps into it (``top_ops`` reads the trace).
  """
  parallel.check_batch_size(batch_size, '--batch_sizes')
  config = config_base.resolve_config(config)
  config.parallelism = mode
  info = stand_in_info(config)
  task = train.build_task(config, info)
  t0 = time.perf_counter()
  state, schedule = train.create_train_state(jax.random.key(0), config, info,
                                             steps_per_epoch=100, total_steps=10_000)
  build_s = time.perf_counter() - t0
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
  aug = config_schema.read(augment.AugmentConfig, config.augment, 'augment')
  compiled = train.compile_steps(mode, task=task, aug_config=aug, schedule=schedule)
  state = compiled.put_state(state)
  host_batch = dataset_info.dummy_batch(info, batch_size // jax.process_count())
  host_batch['image'] = np.random.default_rng(0).integers(
      0, 256, host_batch['image'].shape, dtype=np.uint8)
  batch = compiled.put_batch(host_batch)
  rng = jax.random.key(1)

  # The state is donated: thread it through the timed calls.
  holder = {'state': state}

  def step():
    holder['state'], metrics = compiled.train(holder['state'], batch, rng)
    return metrics

  compile_train, train_times = _time(step, steps=steps)
  age = seconds_since_process_start()  # now, after the timed steps: subtract them
  first_step_age = None if age is None else age - sum(train_times)
  compile_eval, eval_times = _time(lambda: compiled.eval(holder['state'], batch), steps=steps)
  if profile_dir is not None:
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(step())
  train_program = compiled.train.lower(holder['state'], batch, rng).compile()
  memory, memory_kind = _peak_memory(train_program)
  train_flops = _flops(train_program)
  eval_flops = _flops(compiled.eval.lower(holder['state'], batch).compile())
  train_s, eval_s = statistics.median(train_times), statistics.median(eval_times)
  per_device = lambda flops, secs: None if flops is None else flops / secs / 1e12
  dtype = config.model.get('dtype', 'float32')
  device_kind = jax.devices()[0].device_kind
  peak = peak_tflops(device_kind, dtype)
  train_tflops = per_device(train_flops, train_s)
  return {
      'model': config.model.name, 'backbone': config.model.get('backbone', {}).get('name', '-'),  # AU-GCN has none
      'dtype': dtype, 'params': num_params, 'mode': mode,
      'param_dtypes': sorted({str(x.dtype)
                              for x in jax.tree_util.tree_leaves(holder['state'].params)}),
      'batch_size': batch_size,
      'image_size': int(config.augment.image_size), 'devices': jax.device_count(),
      'device_kind': device_kind, 'model_build_s': build_s,
      'first_train_call_s': compile_train, 'train_step_ms': 1e3 * train_s,
      'train_images_per_s': batch_size / train_s, 'first_eval_call_s': compile_eval,
      'eval_step_ms': 1e3 * eval_s, 'eval_images_per_s': batch_size / eval_s,
      'peak_memory_mib': memory, 'memory_kind': memory_kind,
      # XLA's count of one device's program; achieved = count / median step time.
      'train_flops': train_flops, 'eval_flops': eval_flops,
      'train_tflops_per_s': train_tflops,
      'eval_tflops_per_s': per_device(eval_flops, eval_s),
      'peak_tflops': peak,
      'train_mfu': None if peak is None or train_tflops is None else train_tflops / peak,
      # The first row's is the process start-up cost (imports, data-free set-up, build, compile).
      'process_start_to_first_train_step_s': first_step_age,
  }


def _tflops(value: float | None) -> str:
  return 'n/a' if value is None else f'{value:.3f}'


def _percent(value: float | None) -> str:
  return 'n/a' if value is None else f'{100 * value:.1f} %'


def format_table(rows: list[dict[str, Any]]) -> str:
  head = ('| model | params | dtype | mode | batch | px | train ms/step | train img/s | '
          'eval ms/step | eval img/s | train TFLOP/s | MFU | build s | compile s | memory MiB |')
  lines = [head, '|' + '---|' * 15]
  for r in rows:
    mem = 'n/a' if r['peak_memory_mib'] is None else f"{r['peak_memory_mib']:.0f} ({r['memory_kind']})"
    lines.append(f"| {r['model']}/{r['backbone']} | {r['params'] / 1e6:.2f}M | {r['dtype']} "
                 f"| {r['mode']} | {r['batch_size']} "
                 f"| {r['image_size']} | {r['train_step_ms']:.1f} | {r['train_images_per_s']:.1f} "
                 f"| {r['eval_step_ms']:.1f} | {r['eval_images_per_s']:.1f} "
                 f"| {_tflops(r['train_tflops_per_s'])} | {_percent(r['train_mfu'])} "
                 f"| {r['model_build_s']:.1f} | {r['first_train_call_s']:.1f} | {mem} |")
  return '\n'.join(lines)


def main(argv):
  del argv
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  sizes = [int(b) for b in (FLAGS.batch_sizes or [config.train.batch_size])]
  cells = [(mode, b) for mode in FLAGS.modes for b in sizes]
  rows = [benchmark(config, mode, b, FLAGS.steps, FLAGS.profile if i == 0 else None)
          for i, (mode, b) in enumerate(cells)]
  print(f'{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()})')
  print(format_table(rows))
  if rows[0]['process_start_to_first_train_step_s'] is not None:
    print(f"Process start to the first finished train step: "
          f"{rows[0]['process_start_to_first_train_step_s']:.1f} s")
  if FLAGS.profile:
    print(f'\nTop ops of {FLAGS.steps} train steps ({cells[0][0]}, batch {cells[0][1]}); '
          f'trace in {FLAGS.profile}:')
    print(format_top_ops(top_ops(FLAGS.profile, FLAGS.top)))
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  runtime.configure()
  _define_flags()
  app.run(main)

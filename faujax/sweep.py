"""Seeded ablation sweeps: ``python -m faujax.sweep --config CONFIG --workdir DIR --vary KEY=V1,V2``.

Runs every combination of the ``--vary`` values (a grid; each flag is one config key) for every
seed in ``--seeds``, each in ``DIR/<cell>/seed<s>`` and resumable like any run, then writes the
mean and spread over seeds of each cell's test metrics to ``DIR/sweep_results.md`` and
``DIR/sweep_results.json``. This is how the papers' ablation tables are reproduced from config
switches, e.g. MACG Tables 4-5 on the DISFA-like synthetic faces:

  python -m faujax.sweep --config configs/macg/synthetic.py:disfa --workdir /tmp/macg_ablation \\
      --vary ablation=resnet50,baseline,full --seeds 0,1,2

A run whose ``results.json`` exists is read, not trained again, so several processes can fill
one sweep (each with its own ``--seeds`` or ``--vary`` subset, or the same ones: a run another
process is training is skipped, by its workdir lock) and a last call with the whole grid only
writes the table. Checkpoints are selected on validation subjects, never on the test split.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from faujax import config_base
from faujax import reporting
from faujax import run_record
from faujax import runtime
from faujax import train
from faujax import workdir_lock

FLAGS = flags.FLAGS
RESULTS_FILE = 'results.json'


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program, so the module imports cleanly)."""
  config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for the runs and the table.')
  flags.DEFINE_multi_string('vary', [], 'KEY=V1,V2,...: a config key and the values to try; '
                            'repeat the flag for a grid.')
  flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (config.seed) of every cell.')
  flags.DEFINE_list('metrics', [], 'Test metrics in the table (default: the summary metrics, '
                    "e.g. f1_mean, auc_mean, mean_class_accuracy, the nine ml/...; not per-label "
                    "ones like f1/AU1).")
  flags.DEFINE_bool('train_missing', True, 'Train the runs that have no results yet; with '
                    '--notrain_missing only the finished runs are tabulated (e.g. while other '
                    'processes still fill the sweep).')
  flags.mark_flags_as_required(['config', 'workdir'])


def parse_vary(specs: Sequence[str], config: ml_collections.ConfigDict
               ) -> list[tuple[str, list[Any]]]:
  """``['model.top_k=1,2,3']`` -> ``[('model.top_k', [1, 2, 3])]``, typed like the config field.

  String fields keep the text as is; other fields are parsed as Python literals (``True``,
  ``0.5``, ``(7, 11)``). Raises ValueError naming the flag for a malformed spec, a key that the
  config lacks, or a value of the wrong type.
  """
  out = []
  for spec in specs:
    key, sep, values = spec.partition('=')
    if not sep or not key or not values:
      raise ValueError(f'--vary {spec!r}: expected KEY=V1,V2,... (e.g. ablation=full,baseline).')
    *path, leaf = key.split('.')
    node = config
    for part in path:
      if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
        raise ValueError(f'--vary {spec!r}: the config has no section {part!r} on the way to {key}.')
      node = node[part]
    if leaf not in node:
      raise ValueError(f'--vary {spec!r}: the config has no key {key}.')
    current = node[leaf]
    parsed = []
    for text in values.split(','):
      if isinstance(current, str):
        parsed.append(text)
        continue
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError) as e:
        raise ValueError(f'--vary {spec!r}: {text!r} is not a literal for {key} '
                         f'(currently {current!r}).') from e
      if current is not None and not isinstance(value, type(current)) and not (
          isinstance(current, float) and isinstance(value, int)):
        raise ValueError(f'--vary {spec!r}: {key} holds a {type(current).__name__}; got {text!r}.')
      parsed.append(value)
    out.append((key, parsed))
  return out


def cell_name(assignment: Sequence[tuple[str, Any]]) -> str:
  """A directory name for one grid cell: ``ablation=full,model.top_k=3`` ('base' if none)."""
  if not assignment:
    return 'base'
  return ','.join(f'{k}={v}' for k, v in assignment).replace('/', '_').replace(' ', '')


def _cell_config(config: ml_collections.ConfigDict, assignment: Sequence[tuple[str, Any]],
                 seed: int) -> ml_collections.ConfigDict:
  cfg = config.copy_and_resolve_references()
  cfg.unlock()
  for key, value in assignment:
    *path, leaf = key.split('.')
    node = cfg
    for part in path:
      node = node[part]
    node[leaf] = value
  cfg.seed = seed
  return cfg


def _last_config(run_dir: str) -> tuple[str, dict] | None:
  """The config a finished run ended with: the last entry of its ``config_history.json`` (a
  resume with ``--allow_config_change`` appends there), else its ``config.json``."""
  history = os.path.join(run_dir, run_record.HISTORY_FILE)
  if os.path.isfile(history):
    with open(history, encoding='utf-8') as f:
      entries = json.load(f)
    if entries:
      return history, entries[-1]['config']
  path = os.path.join(run_dir, run_record.CONFIG_FILE)
  if os.path.isfile(path):
    with open(path, encoding='utf-8') as f:
      return path, json.load(f)
  return None


def _check_finished_run(run_dir: str, cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError when the config a finished run ended with differs from its cell's config
  (keys that cannot change results, ``run_record.RESULT_NEUTRAL_KEYS``, may differ)."""
  found = _last_config(run_dir)
  if found is None:
    return
  path, saved = found
  current = run_record.config_to_json(config_base.resolve_config(cfg))
  diffs = [(k, a, b) for k, a, b in run_record.config_diff(saved, current)
           if not k.startswith(run_record.RESULT_NEUTRAL_KEYS)]
  if diffs:
    shown = '; '.join(f'config.{k}: saved {a!r}, now {b!r}' for k, a, b in diffs[:5])
    raise ValueError(f'{path}: this finished run was made with a different config ({shown}'
                     f'{"; ..." if len(diffs) > 5 else ""}). Use a new --workdir for the sweep.')


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for a single value) of the finite values."""
  vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  if not vals:
    return float('nan'), float('nan')
  mean = sum(vals) / len(vals)
  if len(vals) < 2:
    return mean, 0.0
  return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def summarize(cells: Mapping[str, Sequence[Mapping[str, float]]],
              metric_names: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
  """Per cell and metric: the per-seed values, their mean and sample std (NaNs skipped)."""
  out = {}
  for name, runs in cells.items():
    out[name] = {}
    for m in metric_names:
      values = [r.get(m, float('nan')) for r in runs]
      mean, std = _mean_std(values)
      out[name][m] = {'values': values, 'mean': mean, 'std': std}
  return out


def _scale(metric: str) -> float:
  """Percent for rates; raw for correlations (CCC), losses and the multi-label metrics ('ml/',
  which the papers report raw: coverage is a count of labels)."""
  return 1.0 if metric.startswith(('ccc', 'loss', 'ml/')) else 100.0


def _fmt(metric: str, value: float) -> str:
  """A metric value as shown in the tables: rates in % with 1 decimal, multi-label metrics with
  4, others with 3."""
  decimals = 1 if _scale(metric) == 100.0 else 4 if metric.startswith('ml/') else 3
  return f'{value * _scale(metric):.{decimals}f}'


def format_table(summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
                 metric_names: Sequence[str], num_seeds: int) -> str:
  """Markdown: one row per cell, 'mean ± std (n)' per metric (rates in %, CCC raw)."""
  head = ['setting'] + [f'{m} (%)' if _scale(m) == 100.0 else m for m in metric_names]
  lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * len(metric_names)]
  for name, row in summary.items():
    cells = []
    for m in metric_names:
      n = sum(1 for v in row[m]['values'] if v is not None and math.isfinite(float(v)))
      cells.append('–' if n == 0 else f"{_fmt(m, row[m]['mean'])} ± {_fmt(m, row[m]['std'])}"
                   + ('' if n == num_seeds else f' (n={n})'))
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def _default_metrics(metrics: Mapping[str, Any]) -> list[str]:
  """The summary metrics: scalars that are not per-label ('f1/AU1'); the multi-label task's nine
  metrics are all 'ml/<name>'."""
  return [k for k, v in metrics.items()
          if ('/' not in k or k.startswith('ml/')) and isinstance(v, (int, float))]


def run_sweep(config: ml_collections.ConfigDict, workdir: str, vary: Sequence[str],
              seeds: Sequence[int], metric_names: Sequence[str] = (),
              train_fn: Callable[..., dict[str, Any]] | None = None,
              train_missing: bool = True) -> dict[str, Any]:
  """Runs (or reads) every cell x seed and writes ``sweep_results.{md,json}``; returns the JSON.

  Args:
    config: the base config (``--config`` with its overrides).
    workdir: the sweep directory; run ``(cell, seed)`` lives in ``workdir/<cell>/seed<seed>``.
    vary: ``KEY=V1,V2`` specs (see ``parse_vary``); their product is the grid.
    seeds: values of ``config.seed``.
    metric_names: test metrics to tabulate (default: the scalar metrics of the first run).
    train_fn: ``(config, workdir) -> results``; ``train.train_and_evaluate`` by default.
    train_missing: if False, runs without results are left out of the table (which shows the
      number of seeds behind each value where it is not all of them) instead of trained.
  """
  if not seeds:
    raise ValueError('--seeds: expected at least one seed.')
  train_fn = train_fn or train.train_and_evaluate
  axes = parse_vary(vary, config)
  grid = [list(zip([k for k, _ in axes], values))
          for values in itertools.product(*[v for _, v in axes])]
  cells: dict[str, list[dict[str, float]]] = {}
  trivial = None
  for assignment in grid:
    name = cell_name(assignment)
    cells[name] = []
    for seed in seeds:
      run_dir = os.path.join(workdir, name, f'seed{seed}')
      path = os.path.join(run_dir, RESULTS_FILE)
      cfg = _cell_config(config, assignment, seed)
      if os.path.isfile(path):
        _check_finished_run(run_dir, cfg)
        with open(path, encoding='utf-8') as f:
          results = json.load(f)
      elif not train_missing:
        continue
      else:
        reporting.say(f'=== {name} seed {seed} ===')
        try:
          results = train_fn(cfg, run_dir)
        except workdir_lock.WorkdirInUseError as e:  # another sweep process trains this run
          reporting.warn(f'skipped {name} seed {seed}: {e}')
          continue
        if 'metrics' not in results:  # stopped by SIGTERM: run again to resume
          return results
      cells[name].append(results['metrics'])
      trivial = trivial or results.get('trivial_baseline')
  finished = [runs[0] for runs in cells.values() if runs]
  if not finished:
    raise ValueError(f'{workdir}: no finished runs to tabulate (--notrain_missing).')
  metric_names = list(metric_names) or _default_metrics(finished[0])
  summary = summarize(cells, metric_names)
  table = format_table(summary, metric_names, len(seeds))
  model = (f'{config.model.name} ({config.ablation})' if config.get('ablation', '')
           else config.model.name)
  title = (f'# {model} on {config.data.name}/{config.data.builder_config}: '
           f'test metrics, mean ± sample std over seeds {", ".join(map(str, seeds))}\n\n')
  footer = ''
  if trivial:
    shown = [f'{m} {_fmt(m, trivial[m])}' for m in metric_names if isinstance(trivial.get(m), (int, float))]
    if shown:
      footer = f'\nTrivial baseline ({trivial.get("name", "trivial")}): {", ".join(shown)}.\n'
  out = {'model': config.model.name,
         'dataset': f'{config.data.name}/{config.data.builder_config}',
         'vary': [[k, v] for k, v in axes], 'seeds': list(seeds), 'metrics': metric_names,
         'cells': summary, 'trivial_baseline': trivial}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'sweep_results.md'), 'w', encoding='utf-8') as f:
    f.write(title + table + footer)
  with open(os.path.join(workdir, 'sweep_results.json'), 'w', encoding='utf-8') as f:
    json.dump(reporting.jsonable(out), f, indent=2)
  print(title + table + footer, flush=True)
  return out


def main(argv):
  del argv
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  run_sweep(FLAGS.config, FLAGS.workdir, FLAGS.vary, [int(s) for s in FLAGS.seeds],
            FLAGS.metrics, train_missing=FLAGS.train_missing)


if __name__ == '__main__':
  runtime.configure()
  _define_flags()
  app.run(main)

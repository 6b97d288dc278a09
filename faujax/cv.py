"""Cross-validation driver: ``python -m faujax.cv --config CONFIG --workdir DIR``.

Trains and evaluates every fold of the config's dataset (``config.data.fold`` = 1, 2, 3, each in
``DIR/fold<k>``, resumable like any run), then writes the paper-style table of per-AU F1 and AUC
for each fold and their average to ``DIR/cv_results.md`` and ``DIR/cv_results.json``. Checkpoints
are selected on each fold's validation subjects, never on its test part.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from faujax import metrics
from faujax import reporting
from faujax import runtime
from faujax import train

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program, so the module imports cleanly)."""
  config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for the folds\' runs and the table.')
  flags.DEFINE_list('folds', ['1', '2', '3'], 'Folds to run.')
  flags.mark_flags_as_required(['config', 'workdir'])


def run_folds(config, workdir: str, folds: list[int], *,
              train_fn: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
  """Runs each fold in ``workdir/fold<k>`` and writes the fold table; returns its JSON.

  ``train_fn``: ``(config, workdir) -> results``; ``train.train_and_evaluate`` by default.
  """
  train_fn = train_fn or train.train_and_evaluate
  per_fold = []
  label_names = dataset = None
  for fold in folds:
    fold_config = config.copy_and_resolve_references()
    fold_config.unlock()
    fold_config.data.fold = fold
    reporting.say(f'=== fold {fold} ===')
    results = train_fn(fold_config, os.path.join(workdir, f'fold{fold}'))
    if 'metrics' not in results:  # stopped by SIGTERM: run again to resume
      return results
    per_fold.append(results['metrics'])
    label_names, dataset = results['label_names'], results['dataset']
  table = metrics.format_fold_table(per_fold, label_names)
  title = (f'# {config.model.name} on {dataset}: '
           f'{len(folds)}-fold cross-validation (test split of each fold)\n\n')
  out = {'model': config.model.name, 'dataset': dataset, 'folds': folds,
         'label_names': label_names, 'per_fold': per_fold,
         'f1_mean': sum(m['f1_mean'] for m in per_fold) / len(per_fold),
         'auc_mean': sum(m['auc_mean'] for m in per_fold) / len(per_fold)}
  with open(os.path.join(workdir, 'cv_results.md'), 'w') as f:
    f.write(title + table)
  with open(os.path.join(workdir, 'cv_results.json'), 'w') as f:
    json.dump(reporting.jsonable(out), f, indent=2)
  print(title + table, flush=True)
  return out


def main(argv):
  del argv
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  run_folds(FLAGS.config, FLAGS.workdir, [int(k) for k in FLAGS.folds])


if __name__ == '__main__':
  runtime.configure()
  _define_flags()
  app.run(main)

"""faujax.sweep: the grid, the run layout, resuming from finished runs, and the mean/std table."""

import json
import os
import statistics

import pytest

from faujax import run_record
from faujax import sweep
import tiny_config


def _fake_train(calls):
  """A train function that records its calls and returns metrics derived from the config."""

  def train_fn(config, workdir):
    calls.append((config.model.backbone.name, config.train.num_steps, config.seed, workdir))
    os.makedirs(workdir, exist_ok=True)
    metrics = {'f1_mean': 0.1 * config.seed + 0.01 * config.train.num_steps,
               'auc_mean': 0.5, 'f1/AU1': 0.3}
    results = {'metrics': metrics, 'trivial_baseline': {'name': 'all positive', 'f1_mean': 0.2}}
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      json.dump(run_record.config_to_json(config), f)
    with open(os.path.join(workdir, sweep.RESULTS_FILE), 'w') as f:
      json.dump(results, f)
    return results

  return train_fn


def test_parse_vary_types_values_like_the_config():
  config = tiny_config.get_config()
  axes = sweep.parse_vary(['model.backbone.name=small_cnn,resnet18', 'train.num_steps=3,5',
                           'optim.learning_rate=1,0.5'], config)
  assert axes == [('model.backbone.name', ['small_cnn', 'resnet18']),
                  ('train.num_steps', [3, 5]), ('optim.learning_rate', [1, 0.5])]


@pytest.mark.parametrize('spec, match', [
    ('model.backbone.name', 'KEY=V1'),
    ('model.nothing=1', 'no key model.nothing'),
    ('nosection.x=1', "no section 'nosection'"),
    ('train.num_steps=abc', 'not a literal'),
    ('train.num_steps=0.5', 'holds a int'),
])
def test_parse_vary_rejects_bad_specs_naming_them(spec, match):
  with pytest.raises(ValueError, match=match):
    sweep.parse_vary([spec], tiny_config.get_config())


def test_sweep_runs_the_grid_per_seed_and_tabulates_mean_and_std(tmp_path):
  calls = []
  config = tiny_config.get_config()
  out = sweep.run_sweep(config, str(tmp_path), ['train.num_steps=3,5'], [0, 1, 2],
                        train_fn=_fake_train(calls))
  assert [(c[1], c[2]) for c in calls] == [(3, 0), (3, 1), (3, 2), (5, 0), (5, 1), (5, 2)]
  assert calls[0][3] == os.path.join(str(tmp_path), 'train.num_steps=3', 'seed0')
  assert out['metrics'] == ['f1_mean', 'auc_mean']  # per-label metrics left out
  cell = out['cells']['train.num_steps=5']['f1_mean']
  values = [0.05, 0.15, 0.25]
  assert cell['values'] == pytest.approx(values)
  assert cell['mean'] == pytest.approx(statistics.mean(values))
  assert cell['std'] == pytest.approx(statistics.stdev(values))
  table = (tmp_path / 'sweep_results.md').read_text()
  assert '| train.num_steps=5 | 15.0 ± 10.0 | 50.0 ± 0.0 |' in table
  assert 'Trivial baseline (all positive): f1_mean 20.0' in table
  assert json.loads((tmp_path / 'sweep_results.json').read_text())['seeds'] == [0, 1, 2]

  # A second call reads the finished runs instead of training again.
  again = sweep.run_sweep(config, str(tmp_path), ['train.num_steps=3,5'], [0, 1, 2],
                          train_fn=_fake_train(calls))
  assert len(calls) == 6
  assert again['cells'] == out['cells']


def test_sweep_refuses_a_finished_run_made_with_another_config(tmp_path):
  config = tiny_config.get_config()
  sweep.run_sweep(config, str(tmp_path), [], [0], train_fn=_fake_train([]))
  config.optim.learning_rate = 0.123
  with pytest.raises(ValueError, match=r'seed0/config.json.*config.optim.learning_rate'):
    sweep.run_sweep(config, str(tmp_path), [], [0], train_fn=_fake_train([]))


def test_sweep_compares_with_the_config_a_resumed_run_ended_with(tmp_path):
  """After ``--allow_config_change`` config.json keeps the original; the history has the last."""
  config = tiny_config.get_config()
  sweep.run_sweep(config, str(tmp_path), [], [0], train_fn=_fake_train([]))
  run_dir = os.path.join(str(tmp_path), 'base', 'seed0')
  original = run_record.config_to_json(config)
  config.optim.learning_rate = 0.123
  history = [{'step': 0, 'config': original, 'changed': []},
             {'step': 6, 'config': run_record.config_to_json(config),
              'changed': ['optim.learning_rate']}]
  with open(os.path.join(run_dir, run_record.HISTORY_FILE), 'w') as f:
    json.dump(history, f)
  calls = []
  sweep.run_sweep(config, str(tmp_path), [], [0], train_fn=_fake_train(calls))  # accepted
  assert not calls  # the finished run is read back, not retrained
  config.optim.learning_rate = 0.5
  with pytest.raises(ValueError, match=r'config_history.json.*config.optim.learning_rate'):
    sweep.run_sweep(config, str(tmp_path), [], [0], train_fn=_fake_train([]))


def test_multilabel_metrics_are_tabulated_raw_and_per_label_ones_left_out():
  metrics = {'ml/coverage': 1.376, 'ml/average_precision': 0.8284, 'f1/AU1': 0.3, 'f1_mean': 0.5}
  names = sweep._default_metrics(metrics)
  assert names == ['ml/coverage', 'ml/average_precision', 'f1_mean']
  table = sweep.format_table(sweep.summarize({'row': [metrics, metrics]}, names), names, 2)
  assert '| row | 1.3760 ± 0.0000 | 0.8284 ± 0.0000 | 50.0 ± 0.0 |' in table
  assert 'ml/coverage |' in table.splitlines()[0] and 'f1_mean (%)' in table.splitlines()[0]


def test_summary_skips_missing_metrics_and_marks_the_count():
  summary = sweep.summarize({'a': [{'m': 0.5}, {'m': float('nan')}, {}]}, ['m'])
  assert summary['a']['m']['mean'] == 0.5 and summary['a']['m']['std'] == 0.0
  assert '50.0 ± 0.0 (n=1)' in sweep.format_table(summary, ['m'], 3)


def test_command_line_writes_the_table_of_finished_runs(tmp_path):
  """``python -m faujax.sweep`` parses its flags and tabulates runs that are already finished."""
  import subprocess
  import sys
  config = tiny_config.get_config()
  sweep.run_sweep(config, str(tmp_path), ['train.num_steps=3,5'], [0, 1],
                  train_fn=_fake_train([]))
  os.remove(tmp_path / 'sweep_results.md')
  here = os.path.dirname(os.path.abspath(__file__))
  proc = subprocess.run(
      [sys.executable, '-m', 'faujax.sweep', f'--config={os.path.join(here, "tiny_config.py")}',
       f'--workdir={tmp_path}', '--vary=train.num_steps=3,5', '--seeds=0,1',
       '--metrics=f1_mean'], capture_output=True, text=True, check=False, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert '| train.num_steps=3 | 8.0 ± 7.1 |' in proc.stdout  # seeds 0, 1: 3 % and 13 %
  assert (tmp_path / 'sweep_results.md').is_file()


def test_notrain_missing_tabulates_the_finished_runs_only(tmp_path):
  calls = []
  config = tiny_config.get_config()
  sweep.run_sweep(config, str(tmp_path), ['train.num_steps=3'], [0, 1],
                  train_fn=_fake_train(calls))
  out = sweep.run_sweep(config, str(tmp_path), ['train.num_steps=3,5'], [0, 1, 2],
                        train_fn=_fake_train(calls), train_missing=False)
  assert len(calls) == 2
  assert out['cells']['train.num_steps=3']['f1_mean']['values'] == pytest.approx([0.03, 0.13])
  assert out['cells']['train.num_steps=5']['f1_mean']['values'] == []
  table = (tmp_path / 'sweep_results.md').read_text()
  assert '| train.num_steps=3 | 8.0 ± 7.1 (n=2) |' in table
  assert '| train.num_steps=5 | – |' in table
  with pytest.raises(ValueError, match='no finished runs'):
    sweep.run_sweep(config, str(tmp_path / 'empty'), [], [0], train_fn=_fake_train(calls),
                    train_missing=False)

"""Evaluator and command: the face-alignment mean error of MGRR-Net (Table 8).

The mean error of one face is the mean over its M landmarks of the Euclidean distance between the
predicted and the ground-truth point, divided by the ground-truth inter-ocular distance d_o
(``faujax.metrics.landmark_mean_error``); Table 8 reports its mean over the test faces, in %.
As MGRR-Net's evaluator it runs after every training (``landmark_error`` in results.json); on a
finished run:

  python -m faujax.evaluators.landmark_error --workdir /tmp/mgrr/t6/ablation=full/seed0

loads the run's best checkpoint (selected on validation subjects, ``faujax.trained_run``) and
evaluates the test split of its fold.
"""

from __future__ import annotations

from typing import Any

from faujax import metrics as metrics_lib

KEYS = ('landmarks', 'batch/landmarks', 'batch/valid')


def evaluate(context: Any) -> dict[str, float]:
  """The mean error over the evaluated split (a fraction of d_o)."""
  out = context.outputs(KEYS)
  return {'landmark_error': metrics_lib.landmark_mean_error(
      out['landmarks'], out['batch/landmarks'], out['batch/valid'])}


def evaluate_run(workdir: str, split: str = 'test') -> float:
  """Mean error of the best checkpoint of the run in ``workdir`` on ``split`` (read from the
  run's configured dataset)."""
  from faujax import trained_run  # pylint: disable=g-import-not-at-top
  out = trained_run.load_run(workdir, 'best').outputs(split, KEYS)
  return metrics_lib.landmark_mean_error(out['landmarks'], out['batch/landmarks'],
                                         out['batch/valid'])


def main() -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  from faujax import runtime  # pylint: disable=g-import-not-at-top
  runtime.configure()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', nargs='+', required=True)
  parser.add_argument('--split', default='test')
  args = parser.parse_args()
  for workdir in args.workdir:
    print(f'{workdir}: mean error {100 * evaluate_run(workdir, args.split):.2f} %')


if __name__ == '__main__':
  main()

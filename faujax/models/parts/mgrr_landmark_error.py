"""Face-alignment mean error of a trained MGRR-Net run (MGRR-Net Table 8).

The mean error of one face is the mean over its M landmarks of the Euclidean distance between the
predicted and the ground-truth point, divided by the ground-truth inter-ocular distance d_o (the
distance between the eye centres, ``faujax.losses.EYE_INDICES``, the d_o of eq. 10); Table 8
reports its mean over the test faces, in %.

  python -m faujax.models.parts.mgrr_landmark_error --workdir /tmp/mgrr/t6/ablation=full/seed0

reads the run's ``config.json``, restores its best checkpoint (selected on validation subjects)
and evaluates the test split of its fold.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from faujax import losses


def mean_error(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> float:
  """Mean over valid faces (and d_o > 0) of mean_i ||pred_i - target_i|| / d_o.

  (B, M, 2) pixel landmarks, optional (B,) ``valid`` -> scalar."""
  pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
    raise ValueError(f'pred / target: expected equal (B, M, 2) shapes, got {pred.shape} and '
                     f'{target.shape}.')
  right, left = (list(e) for e in losses.EYE_INDICES[pred.shape[1]])
  d_o = np.linalg.norm(target[:, right].mean(1) - target[:, left].mean(1), axis=-1)
  keep = d_o > 0
  if valid is not None:
    keep &= np.asarray(valid) > 0
  per = np.linalg.norm(pred - target, axis=-1).mean(-1)[keep] / d_o[keep]
  return float(per.mean())


def evaluate_run(workdir: str, split: str = 'test') -> float:
  """Mean error of the best checkpoint of the run in ``workdir`` on ``split``."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from faujax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from faujax import train  # pylint: disable=g-import-not-at-top
  from faujax.data import augment  # pylint: disable=g-import-not-at-top
  from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top

  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config = train.resolve_config(config)
  info = input_pipeline.get_dataset_info(config.data)
  state, _ = train.create_train_state(jax.random.key(config.seed), config, info,
                                      steps_per_epoch=1, total_steps=1)
  checkpointer = ckpt_lib.Checkpointer(workdir, config, best_metric='f1_mean',
                                       allow_config_change=True)
  restored = checkpointer.restore_best(jax.device_get(state.to_host()))
  if restored is None:
    raise ValueError(f'{workdir}: no best checkpoint to evaluate.')
  state = state.replace_from_host(restored[0])
  aug = train._sections(config)['augment']  # pylint: disable=protected-access

  @jax.jit
  def predict(batch):
    batch = augment.preprocess(None, batch, aug, train=False)
    outputs, _ = state.apply_fn(state.params, state.batch_stats, batch, train=False)
    return outputs['landmarks'], batch['landmarks']

  preds, targets, valid = [], [], []
  for batch in input_pipeline.create_split(config.data, split, batch_size=64, train=False):
    p, t = predict({k: v for k, v in batch.items()})
    preds.append(np.asarray(p))
    targets.append(np.asarray(t))
    valid.append(np.asarray(batch['valid']))
  return mean_error(np.concatenate(preds), np.concatenate(targets), np.concatenate(valid))


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

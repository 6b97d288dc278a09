"""A faujax run with RANDOM weights for a config, for timing ``python -m faujax.predict``.

  python benchmarks/random_run.py --config configs/me_graphau/bp4d.py:stage1 --out DIR
      [--config.model.backbone.name=small_cnn ...]

The model is built and initialised as training would start it (``train.create_train_state``, no
pretrained trunk, no data read: ``faujax.bench.stand_in_info``'s label space) and written by the
checkpoint importer's writer (``faujax.tools.import_checkpoint``), so ``DIR`` is a run like an
imported one: one checkpoint at step 0, its config and dataset record, the stored face at the
authors' test size (``augment.image_size / augment.eval_crop_scale``, 256 px for ME-GraphAU) and
the 'eye_level' alignment of the imported AU models. Its predictions are meaningless; its speed
is the model's. Cheaper than a training step (no dataset is built, nothing is compiled but the
initialisers) and needs no PyTorch file.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from faujax import bench
from faujax import config_base
from faujax import runtime
from faujax import train
from faujax.tools import import_checkpoint

FLAGS = flags.FLAGS


def write_random_run(config, out: str) -> dict:
  """Writes the random-weights run of ``config`` into ``out``; returns a short summary."""
  config = config_base.resolve_config(config)
  info = bench.stand_in_info(config)
  state, _ = train.create_train_state(jax.random.key(0), config, info, steps_per_epoch=1,
                                      total_steps=1)
  scale = float(config.augment.get('eval_crop_scale', 1.0) or 1.0)
  stored = int(round(int(config.augment.image_size) / scale))
  record_info = dataclasses.replace(info, image_size=stored,
                                    alignment='eye_level' if info.task == 'au' else '')
  variables = {'params': jax.device_get(state.params),
               'batch_stats': jax.device_get(state.batch_stats)}
  import_checkpoint.write_run(out, config, record_info, variables,
                              jax.device_get(state.constants))
  dtypes = sorted({str(x.dtype) for x in jax.tree_util.tree_leaves(state.params)})
  return {'model': config.model.name, 'backbone': config.model.backbone.name,
          'stored_face_px': stored, 'param_dtypes': dtypes, 'out': out}


def main(argv):
  del argv
  summary = write_random_run(FLAGS.config, FLAGS.out)
  print('random-weights run: ' + json.dumps(summary))


if __name__ == '__main__':
  runtime.configure()
  config_flags.DEFINE_config_file('config', None, 'Configuration file.', lock_config=True)
  flags.DEFINE_string('out', None, 'Run directory to write (must not exist or be empty).')
  flags.mark_flags_as_required(['config', 'out'])
  sys.exit(app.run(main))

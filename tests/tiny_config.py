"""The smallest training config: configs/default.py on the tiny synthetic dataset (tests only)."""

import sys
import os

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'configs'))
import default  # noqa: E402  pylint: disable=g-import-not-at-top


def get_config():
  config = default.get_config()
  config.data.image_size = 48
  config.data.num_subjects = 9
  config.data.frames_per_subject = 6
  config.augment.image_size = 32
  config.model.backbone.widths = (8, 16)
  config.model.backbone.extra_convs = 0
  config.train.batch_size = 8
  config.train.num_steps = 12
  config.train.log_every = 4
  config.train.eval_every = 6
  config.eval.batch_size = 16
  config.checkpoint.every = 6
  return config

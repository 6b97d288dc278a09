"""The README's main job: the relation-free baseline on the synthetic BP4D-like AU data.

A small CNN trunk, global average pooling and a linear head trained with the occurrence-weighted
BCE of AU-GCN eq. 7. Sized to train in a few minutes on a 2-core CPU. Every key not set here has
the default declared by the code that reads it (``faujax.config_base``).

  python -m faujax.main --config configs/default.py --workdir /tmp/faujax/default
"""

from __future__ import annotations

import ml_collections

from faujax import config_base
from faujax import models


def get_config() -> ml_collections.ConfigDict:
  config = config_base.get_config('baseline')
  # synthetic_faces/bp4d; the label space is the builder config: bp4d | disfa | emotionet.
  config_base.synthetic_data(config, 'bp4d')
  # Faces aligned by their landmarks on the device, 96 px input.
  config_base.synthetic_augment(config, 96)
  config.model.backbone = models.backbone_config('small_cnn', widths=(32, 64, 128, 128),
                                                 extra_convs=1)
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.grad_clip_norm = 5.0
  config.schedule.warmup_epochs = 0.5
  config.train.num_epochs = 40
  config.train.eval_every = 400
  config.checkpoint.every = 400
  return config

"""The basic-expression network for SVML-RGCN on the synthetic faces, CPU-sized.

``synthetic_faces``/'expression' (the same rendered faces as 'expression_multi', with the
single-label category of each face) stands in for RAF-DB basic: the relation-free ``baseline``
(``small_cnn`` with its declared widths 32-64-96-128, global average pooling, linear head, plain
cross-entropy over the 7 classes) trained from scratch on 48 px faces aligned by their landmarks,
AdamW 2e-3 with cosine decay, 15 epochs of batch 32. Fold 1 trains on the same subjects as
SVML-RGCN's fold 1, so the visual nodes never see a test face.

  nice -n 10 python -m faujax.tools.visual_nodes --config configs/svml_rgcn/synthetic_basic.py \\
      --workdir /tmp/faujax/svml_rgcn/synthetic_basic \\
      --out /tmp/faujax/svml_rgcn/synthetic_basic/visual_nodes.npz \\
      --export_backbone /tmp/faujax/svml_rgcn/synthetic_basic/trunk --train
(the paths ``configs/svml_rgcn/synthetic.py`` reads).
"""

from __future__ import annotations

import ml_collections

from faujax import config_base
from faujax import models

IMAGE_SIZE = 48


def get_config() -> ml_collections.ConfigDict:
  config = config_base.get_config('baseline')
  config_base.synthetic_data(config, 'expression')
  config.data.image_size = IMAGE_SIZE
  config_base.synthetic_augment(config, IMAGE_SIZE)   # small_cnn: 48 / 16 = 3 x 3 x 128
  config.model.backbone = models.backbone_config('small_cnn')
  config.loss.va = 'none'
  config.loss.class_weighted = False
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.grad_clip_norm = 5.0
  config.schedule.warmup_epochs = 0.5
  config.train.batch_size = 32
  config.train.num_epochs = 15.0
  config.train.log_every = 50
  config.train.eval_every = 150
  config.eval.batch_size = 128
  config.checkpoint.every = 150
  return config

"""The basic-expression network of SVML-RGCN Sec. 3.3: ResNet-50 on RAF-DB basic.

Its class means of pooled features are the visual nodes (eq. 5) and its convolutional layers the
initial trunk of SVML-RGCN (Sec. 4.2). The paper does not give this network's recipe; faujax
trains the relation-free ``baseline`` (ResNet-50, global average pooling, linear head, plain
cross-entropy over the builder's 7 classes) from ImageNet weights with the RAF-ML optimiser at
1e-4 for 30 epochs (x0.1 every 10). The means are taken over the six basic classes only
(``faujax.tools.visual_nodes`` leaves 'neutral' out).

  python -m faujax.tools.visual_nodes --config configs/svml_rgcn/raf_basic.py \\
      --config.data.manual_dir=/data/RAF-DB --config.pretrained_backbone=/w/resnet50 \\
      --workdir /runs/raf_basic --out /runs/raf_basic/visual_nodes.npz \\
      --export_backbone /runs/raf_basic/trunk --train
"""

from __future__ import annotations

import ml_collections

from faujax import config_base
from faujax import models


def get_config() -> ml_collections.ConfigDict:
  config = config_base.load_sibling(__file__, 'raf_ml').get_config()
  config.ablation = ''
  config_base.with_model(config, 'baseline',
                         backbone=models.backbone_config('resnet50'))
  config.data.name = 'raf_db'
  config.data.builder_config = 'basic'
  config.loss.va = 'none'
  config.loss.class_weighted = False
  config.optim.learning_rate = 1e-4
  config.optim.lr_multipliers = {}
  config.schedule.decay_every_epochs = 10.0
  config.train.num_epochs = 30.0
  return config

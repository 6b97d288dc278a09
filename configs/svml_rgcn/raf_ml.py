"""SVML-RGCN (Zhang et al.) on RAF-ML: the paper's recipe (Sec. 4.2).

ResNet-50 trunk with global average pooling, classifier W_C from two R-GCN layers (2048 -> 2048)
over the positive / negative relations of the training labels (t1 = 0.15, t2 = 0.4), node inputs
MFB(visual, semantic) with k = 4, o = 1024; sigmoid BCE; Adam, weight decay 2e-4, batch 32, 80
epochs, learning rate x0.1 every 20 epochs, 2e-4 for the classifier branch and 2e-6 for the trunk
(``optim.lr_multipliers = {'backbone': 0.01}``); 224 px faces (RAF's distributed faces are
aligned by the eyes and the mouth) and random horizontal flips only.

Before training, the basic-expression network of Sec. 3.3 (eq. 5) and its class means:
  python -m faujax.tools.visual_nodes --config configs/svml_rgcn/raf_basic.py \\
      --config.data.manual_dir=/data/RAF-DB --config.pretrained_backbone=/w/resnet50 \\
      --workdir /runs/raf_basic --out /runs/raf_basic/visual_nodes.npz \\
      --export_backbone /runs/raf_basic/trunk --train
then
  python -m faujax.main --config configs/svml_rgcn/raf_ml.py --workdir /runs/svml/raf_ml \\
      --config.data.manual_dir=/data/RAF-ML \\
      --config.model.visual_nodes=/runs/raf_basic/visual_nodes.npz \\
      --config.pretrained_backbone=/runs/raf_basic/trunk
Rows (``svml_rgcn.ABLATIONS``) as the config argument: ``raf_ml.py:baseline`` | svml_gcn |
svml_rgcn | sml_rgcn | vml_rgcn | svml_rgcn_positive. Fig. 5: ``--config.model.t1=0.1``,
``--config.model.t2=0.35``; Fig. 6: ``--config.model.layers=3``.

Deviations (config values): the semantic nodes default to the shipped all-MiniLM-L6-v2 vectors
(384-d); the paper's GloVe vectors: ``--config.model.embeddings=/path/glove.6B.300d.txt``.
The optimiser is PyTorch's Adam (``optim.name='adam'``: weight decay 2e-4 as L2 in the gradient).
Checkpoints are selected on 10 % of
the training images (the paper does not say how it selects them).
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The RAF-ML config; ``variant`` in ``svml_rgcn.ABLATIONS`` (default 'svml_rgcn')."""
  config = config_base.get_config('svml_rgcn')
  config.ablation = variant or 'svml_rgcn'
  config.data.name = 'raf_ml'

  config.augment.image_size = 224
  config.augment.crop_scale = (1.0, 1.0)   # aligned faces, flips only (Sec. 4.2)
  config.augment.rotation_deg = 0.0
  config.augment.brightness = 0.0
  config.augment.contrast = 0.0
  config.augment.saturation = 0.0
  config.augment.mean = config_base.IMAGENET_MEAN
  config.augment.std = config_base.IMAGENET_STD

  config.optim.name = 'adam'
  config.optim.learning_rate = 2e-4        # the classifier branch
  config.optim.weight_decay = 2e-4
  config.optim.lr_multipliers = {'backbone': 0.01}   # trunk 2e-6
  config.schedule.name = 'step'
  config.schedule.decay_every_epochs = 20.0          # x0.1 (the declared decay_factor)
  config.train.batch_size = 32
  config.train.num_epochs = 80.0
  config.train.eval_every = 500
  config.checkpoint.every = 500
  return config

"""Emotion-GCN (paper emotion_gcn.md) on Aff-Wild2: frames with both an expression and a VA label.

The AffectNet recipe (``configs/emotion_gcn/affectnet.py``: DenseNet-121 at 227 px, 2-layer GCN,
tau 0.1, p 0.7, weighted CE + CCC, SGD 1e-3 / 0.9 / wd 1e-3, batch 35, 10 epochs) on the
``aff_wild2`` builder's 'both' config (Sec. IV-A.2: only frames with both labels). The official
Validation_Set is the test split; checkpoints are selected on 10 % of the Train_Set videos by the
Aff-Wild2 expression metric 0.67 * macro F1 + 0.33 * accuracy ('affwild2_score'). The frames
come cropped and aligned, so no further alignment. Deviations as in the AffectNet config.

  python -m faujax.main --config configs/emotion_gcn/aff_wild2.py --workdir /tmp/egcn/affwild2 \\
      --config.data.manual_dir=/data/Aff-Wild2 --config.model.backbone.init_from=/w/densenet121
Variants: ``configs/emotion_gcn/aff_wild2.py:single_task`` (mtl_mse, mtl_ccc, emotion_gcn,
conditional).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from faujax.models import emotion_gcn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The Aff-Wild2 config; ``variant`` in ``emotion_gcn.VARIANTS`` (default 'emotion_gcn')."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.parallelism = 'jit'

  config.data = ml_collections.ConfigDict()
  config.data.name = 'aff_wild2'
  config.data.builder_config = 'both'
  config.data.image_size = 227
  config.data.fold = 1
  config.data.data_dir = config_dict.placeholder(str)
  config.data.manual_dir = config_dict.placeholder(str)
  config.data.shuffle_buffer = 16384     # consecutive frames are near duplicates

  config.augment = ml_collections.ConfigDict()
  config.augment.image_size = 227
  config.augment.crop_scale = (1.0, 1.0)
  config.augment.eval_crop_scale = 1.0
  config.augment.flip = True
  config.augment.rotation_deg = 30.0
  config.augment.brightness = 0.4
  config.augment.contrast = 0.4
  config.augment.saturation = 0.4
  config.augment.mean = IMAGENET_MEAN
  config.augment.std = IMAGENET_STD

  config.model = ml_collections.ConfigDict()
  config.model.name = 'emotion_gcn'
  config.model.variant = 'emotion_gcn'
  config.model.dtype = 'float32'
  config.model.backbone = ml_collections.ConfigDict()
  config.model.backbone.name = 'densenet121'
  config.model.backbone.init_from = ''
  config.model.pooling = 'max'
  config.model.dropout = 0.0
  config.model.adjacency = 'spearman'
  config.model.tau = 0.1
  config.model.p = 0.7
  config.model.gcn_layers = 2
  config.model.hidden_dim = 512
  config.model.leaky_slope = 0.2
  config.model.embeddings = 'default'
  config.model.cooccurrence_labels = 'train_multi'

  config.loss = ml_collections.ConfigDict()
  config.loss.class_weighted = True
  config.loss.va = 'ccc'
  config.loss.va_weight = 1.0

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'sgd'
  config.optim.learning_rate = 1e-3
  config.optim.momentum = 0.9
  config.optim.nesterov = False
  config.optim.weight_decay = 1e-3
  config.optim.grad_clip_norm = 0.0
  config.optim.lr_multipliers = ml_collections.ConfigDict()

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'step'
  config.schedule.decay_every_epochs = 10
  config.schedule.decay_factor = 0.1
  config.schedule.warmup_epochs = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 35
  config.train.num_epochs = 10
  config.train.num_steps = 0
  config.train.log_every = 100
  config.train.eval_every = 2000

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 100
  config.eval.selection_metric = 'affwild2_score'

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every = 2000
  config.checkpoint.keep = 2
  return emotion_gcn.apply_variant(config, variant or 'emotion_gcn')

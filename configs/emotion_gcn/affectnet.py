"""Emotion-GCN (paper emotion_gcn.md) on AffectNet, 7 classes: the paper's recipe.

Sec. III and IV-B: DenseNet-121 trunk (norm5, 7 x 7 x 1024 at 227 px) with global max pooling, a
2-layer GCN (d -> 512 -> 1024, LeakyReLU 0.2) over the 9 label nodes, adjacency eq. 3-6 from the
training labels with tau = 0.1, p = 0.7; class-weighted CE (w_i = f_min / f_i) + CCC loss;
SGD lr 1e-3, momentum 0.9, weight decay 1e-3, x0.1 every 10 epochs, batch 35, 10 epochs; flip,
rotation up to 30 degrees and colour changes; the official validation set (500 per class) is the
test split, the mean class accuracy selects checkpoints on a 10 % hold-out of training.csv.

Deviations (config values): node embeddings default to the shipped all-MiniLM-L6-v2 vectors
(384-d) instead of GloVe 300-d; give the paper's vectors with
``--config.model.embeddings=/path/glove.6B.300d.txt``. ``faujax.data.augment`` has brightness,
contrast and saturation jitter but no hue jitter. Jitter strengths are not given in the paper
(0.4 here). ImageNet weights: ``python -m faujax.tools.import_weights`` then
``--config.model.backbone.init_from=<dir>``.

Variants (Table I, Sec. IV-E) as the config argument:
  python -m faujax.main --config configs/emotion_gcn/affectnet.py --workdir /tmp/egcn/affectnet \\
      --config.data.manual_dir=/data/AffectNet --config.model.backbone.init_from=/w/densenet121
  ... --config configs/emotion_gcn/affectnet.py:single_task | mtl_mse | mtl_ccc | emotion_gcn |
      conditional   (conditional needs --config.model.cooccurrence_labels=/path/emotic_7.npy)
Table II: --config.model.tau=0.05 --config.model.p=0.5 --config.model.gcn_layers=3.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from faujax import config_blocks
from faujax.models import emotion_gcn


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The AffectNet config; ``variant`` in ``emotion_gcn.VARIANTS`` (default 'emotion_gcn')."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.parallelism = 'jit'

  config.data = ml_collections.ConfigDict()
  config.data.name = 'affectnet'
  config.data.builder_config = '7class'
  config.data.image_size = 227
  config.data.fold = 1
  config.data.data_dir = config_dict.placeholder(str)
  config.data.manual_dir = config_dict.placeholder(str)
  config.data.shuffle_buffer = 8192

  config.augment = ml_collections.ConfigDict()
  config.augment.image_size = 227
  config.augment.crop_scale = (1.0, 1.0)  # aligned 227 px faces, no cropping
  config.augment.eval_crop_scale = 1.0
  config.augment.flip = True
  config.augment.rotation_deg = 30.0
  config.augment.brightness = 0.4
  config.augment.contrast = 0.4
  config.augment.saturation = 0.4
  config.augment.mean = config_blocks.IMAGENET_MEAN
  config.augment.std = config_blocks.IMAGENET_STD

  config.model = ml_collections.ConfigDict()
  config.model.name = 'emotion_gcn'
  config.model.variant = 'emotion_gcn'
  config.model.dtype = 'float32'
  config.model.backbone = ml_collections.ConfigDict()
  config.model.backbone.name = 'densenet121'
  config.model.backbone.init_from = ''
  config.model.pooling = 'max'           # eq. 1 (also used by the baseline variants)
  config.model.dropout = 0.0
  config.model.adjacency = 'spearman'    # 'spearman' (eq. 3-6) | 'conditional' (Sec. IV-E)
  config.model.tau = 0.1                 # eq. 5
  config.model.p = 0.7                   # eq. 6 (public code and the conditional variant: 0.5)
  config.model.gcn_layers = 2            # Table II L
  config.model.hidden_dim = 512
  config.model.leaky_slope = 0.2
  config.model.embeddings = 'default'    # 'default' | 'onehot' | path to glove.*.txt
  config.model.cooccurrence_labels = 'train_multi'  # conditional variant: or (m, 7) .npy / text

  config.loss = ml_collections.ConfigDict()
  config.loss.class_weighted = True      # eq. 8-9, w_i = f_min / f_i
  config.loss.va = 'ccc'                 # none | mse | ccc (eq. 12)
  config.loss.va_weight = 1.0            # L = L^c + L^r

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
  config.eval.selection_metric = 'mean_class_accuracy'

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every = 2000
  config.checkpoint.keep = 2
  return emotion_gcn.apply_variant(config, variant or 'emotion_gcn')

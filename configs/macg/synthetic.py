"""MACG (paper macg.md) on the synthetic faces, sized for a 2-core CPU.

The paper's architecture (global LinearBlock, MAFG eq. 1-4 with scales 7/11/21, top-K dynamic graph
eq. 5-9, CCFG eq. 10-12, fusion eq. 13, cosine head eq. 14, weighted asymmetric loss eq. 15-16),
with three CPU concessions, all config values:
  * trunk ``small_cnn`` (not an ImageNet ResNet-50) at 112 px, which gives the paper's 7 x 7 token
    grid with 128 channels;
  * widths reduced: ``model.node_dim`` 128 (paper 512), ``model.rel_features`` 16 (paper 64);
  * a from-scratch trunk needs a larger learning rate (1e-3, paper 1e-4 fine-tuning) and batch 32,
    15 epochs (paper 16 / 40).
Otherwise the MACG recipe: AdamW(0.9, 0.999, wd 5e-4), per-step cosine decay to 0 without warm-up,
random crop of 87.5 % of the side (resize 256 / crop 224), flip, colour jitter 0.4, ImageNet
normalisation, centre crop of 87.5 % at evaluation.

The config argument picks the label space (and K as in the paper for the matching real dataset):
  # BP4D-like (12 AUs, K = 4):
  python -m faujax.main --config configs/macg/synthetic.py --workdir /tmp/macg/bp4d
  # DISFA-like (8 AUs, K = 3):
  python -m faujax.main --config configs/macg/synthetic.py:disfa --workdir /tmp/macg/disfa
(``configs/macg/synthetic_disfa.py`` is the same as ``:disfa``.) Changing only
``--config.data.builder_config`` keeps K; set ``--config.model.top_k`` with it.

Ablation rows of MACG Tables 4-5: ``--config.model.ablation=`` one of resnet50, resnet50+mafg,
baseline, baseline+mafg, baseline+ccfg, full (or the switches ``model.use_mafg`` / ``use_gnn`` /
``use_ccfg`` with ``ablation=''``); the Fig. 6 K sweep: ``--config.model.top_k=1..N``.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# Label space -> K of the paper (DISFA 3, BP4D / EmotioNet 4).
TOP_K = {'bp4d': 4, 'disfa': 3, 'emotionet': 4}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(label_space: str | None = None) -> ml_collections.ConfigDict:
  """The synthetic MACG config; ``label_space`` in ``TOP_K`` (default 'bp4d')."""
  label_space = label_space or 'bp4d'
  if label_space not in TOP_K:
    raise ValueError(f'configs/macg/synthetic.py argument {label_space!r}; expected one of '
                     f'{tuple(TOP_K)} (e.g. --config configs/macg/synthetic.py:disfa).')
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.parallelism = 'jit'

  config.data = ml_collections.ConfigDict()
  config.data.name = 'synthetic_faces'
  config.data.builder_config = label_space
  config.data.image_size = 112          # the registered synthetic size (no variant to build)
  config.data.fold = 1
  config.data.data_dir = config_dict.placeholder(str)
  config.data.manual_dir = config_dict.placeholder(str)
  config.data.shuffle_buffer = 4096
  config.data.num_subjects = config_dict.placeholder(int)  # synthetic size overrides
  config.data.frames_per_subject = config_dict.placeholder(int)

  config.augment = ml_collections.ConfigDict()
  config.augment.image_size = 112       # small_cnn: 112 / 16 = 7 x 7 tokens, as ResNet-50 at 224
  # The synthetic faces are not pre-aligned (the real builders store aligned faces): align them
  # by their landmarks on the device, as configs/default.py does.
  config.augment.align = 'five_point'
  config.augment.align_zoom = 0.85
  config.augment.crop_scale = (0.875, 0.875)   # resize 256 / random crop 224
  config.augment.eval_crop_scale = 0.875       # resize 256 / centre crop 224
  config.augment.flip = True
  config.augment.rotation_deg = 0.0
  config.augment.brightness = 0.4
  config.augment.contrast = 0.4
  config.augment.saturation = 0.4
  config.augment.mean = IMAGENET_MEAN
  config.augment.std = IMAGENET_STD

  config.model = ml_collections.ConfigDict()
  config.model.name = 'macg'
  config.model.dtype = 'float32'
  config.model.backbone = ml_collections.ConfigDict()
  config.model.backbone.name = 'small_cnn'
  config.model.backbone.init_from = ''
  config.model.node_dim = 128
  config.model.rel_features = 16
  config.model.ablation = ''            # '' = use the three switches below
  config.model.use_mafg = True
  config.model.use_gnn = True
  config.model.use_ccfg = True
  config.model.top_k = TOP_K[label_space]
  config.model.similarity = 'dot'       # 'dot' (eq. 5) | 'cosine'
  config.model.gnn_layers = 1
  config.model.shared_ccfg_block = False  # True: the public code's single CCFG block
  config.model.mafg_kernel_sizes = (7, 11, 21)
  config.model.mafg_square_kernel = 5
  config.model.axial_order = 'yx'       # 'yx' paper eq. 1-2 | 'xy' public code
  config.model.ccfg_lambda_init = 1.0

  config.loss = ml_collections.ConfigDict()
  config.loss.name = 'asymmetric'       # eq. 15 on the cosine head's probabilities
  config.loss.weighted = True           # eq. 16 weights from the training occurrence rates

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adamw'
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 5e-4
  config.optim.grad_clip_norm = 0.0
  config.optim.lr_multipliers = ml_collections.ConfigDict()

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'cosine'
  config.schedule.warmup_epochs = 0.0
  config.schedule.end_factor = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32
  config.train.num_epochs = 15
  config.train.num_steps = 0
  config.train.log_every = 20
  config.train.eval_every = 100

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 64
  config.eval.threshold = 0.5

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every = 200
  config.checkpoint.keep = 2
  return config

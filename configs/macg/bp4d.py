"""MACG (paper macg.md) on BP4D: 12 AUs, K = 4, the paper's training recipe.

ResNet-50 (ImageNet-pretrained in the paper: convert torchvision's weights with
``python -m faujax.tools.import_weights`` and pass the directory as
``--config.model.backbone.init_from``) at 224 px, AdamW(0.9, 0.999, wd 5e-4), lr 1e-4, batch 16,
per-step cosine decay to 0 without warm-up, 40 epochs (the paper; the public code trains 20),
weighted asymmetric loss (eq. 15-16). Augmentation (reference-facts "MACG training defaults"):
train = random crop of 87.5 % of the side (resize 256 / crop 224), horizontal flip, colour jitter
0.4 / 0.4 / 0.4, ImageNet normalisation; test = centre crop of 87.5 % (resize 256 / crop 224).

  python -m faujax.main --config configs/macg/bp4d.py --workdir /tmp/macg/bp4d_f1 \
      --config.data.manual_dir=/data/BP4D --config.data.fold=1 \
      --config.model.backbone.init_from=/tmp/weights/resnet50

``config.data.builder_config`` is the layout of the manual dir ('megraphau_lists' = the ME-GraphAU /
MACG list files, 'official', 'jaanet_lists'); ``config.data.fold`` 1-3. Ablations and the K sweep:
``--config.model.ablation=baseline`` etc. and ``--config.model.top_k`` (see
``faujax.models.macg.ABLATIONS``).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from faujax import config_blocks

TOP_K = {'bp4d': 4, 'disfa': 3, 'emotionet': 4}  # K of the paper per dataset


def real_config(dataset: str) -> ml_collections.ConfigDict:
  """The paper recipe on ``dataset`` ('bp4d', 'disfa' or 'emotionet')."""
  if dataset not in TOP_K:
    raise ValueError(f'dataset {dataset!r}; expected one of {tuple(TOP_K)}.')
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.parallelism = 'jit'

  config.data = ml_collections.ConfigDict()
  config.data.name = dataset
  config.data.builder_config = 'megraphau_lists'
  config.data.image_size = 200          # stored faces (faujax.data.au_builder_base.IMAGE_SIZE)
  config.data.fold = 1
  config.data.data_dir = config_dict.placeholder(str)
  config.data.manual_dir = config_dict.placeholder(str)
  config.data.shuffle_buffer = 8192

  config.augment = ml_collections.ConfigDict()
  config.augment.image_size = 224
  config.augment.crop_scale = (0.875, 0.875)   # resize 256 / random crop 224
  config.augment.eval_crop_scale = 0.875       # resize 256 / centre crop 224
  config.augment.flip = True
  config.augment.rotation_deg = 0.0
  config.augment.brightness = 0.4
  config.augment.contrast = 0.4
  config.augment.saturation = 0.4
  config.augment.mean = config_blocks.IMAGENET_MEAN
  config.augment.std = config_blocks.IMAGENET_STD

  config.model = ml_collections.ConfigDict()
  config.model.name = 'macg'
  config.model.dtype = 'float32'        # 'bfloat16' on accelerators
  config.model.backbone = ml_collections.ConfigDict()
  config.model.backbone.name = 'resnet50'
  config.model.backbone.init_from = ''  # ImageNet ResNet-50 (faujax.tools.import_weights output)
  config.model.node_dim = 512
  config.model.rel_features = 64
  config.model.ablation = ''            # '' = use the three switches below
  config.model.use_mafg = True
  config.model.use_gnn = True
  config.model.use_ccfg = True
  config.model.top_k = TOP_K[dataset]
  config.model.similarity = 'dot'
  config.model.gnn_layers = 1
  config.model.shared_ccfg_block = False  # True: the public code's single CCFG block
  config.model.mafg_kernel_sizes = (7, 11, 21)
  config.model.mafg_square_kernel = 5
  config.model.axial_order = 'yx'
  config.model.ccfg_lambda_init = 1.0

  config.loss = ml_collections.ConfigDict()
  config.loss.name = 'asymmetric'
  config.loss.weighted = True

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adamw'
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.learning_rate = 1e-4
  config.optim.weight_decay = 5e-4
  config.optim.grad_clip_norm = 0.0
  config.optim.lr_multipliers = ml_collections.ConfigDict()

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'cosine'
  config.schedule.warmup_epochs = 0.0
  config.schedule.end_factor = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 16
  config.train.num_epochs = 40          # paper; the public code uses 20
  config.train.num_steps = 0
  config.train.log_every = 200
  config.train.eval_every = 2000

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 64
  config.eval.threshold = 0.5

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every = 2000
  config.checkpoint.keep = 2
  return config


def get_config() -> ml_collections.ConfigDict:
  return real_config('bp4d')

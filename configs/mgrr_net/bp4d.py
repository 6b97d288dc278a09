"""MGRR-Net (Ge et al., paper mgrr_net.md) on BP4D: 12 AUs, the paper's recipe (sec. 4.2).

JAA-Net stem + face-alignment branch on 176 px crops, K = 2 relational layers, D = 1024, L = 8,
lambda = 0.5 (eq. 11), weighted BCE on the local and the integrated heads (eq. 9). SGD with
Nesterov momentum 0.9, weight decay 5e-4, lr 0.01 halved every 2 epochs, 15 epochs, from PyTorch's
default initialisation. Augmentation as JAA-Net: 200 x 200 aligned faces, random 176 x 176 crops
and horizontal flips with landmark re-indexing (``faujax.data.augment``), the centre 176 crop at
test time, pixels normalised with mean 0.5 / std 0.5. The batch size is not given by the paper;
faujax uses JAA-Net's 8. Landmarks: the JAA-Net lists' 49 points (the alignment head is sized
from the dataset's landmarks, whatever ``model.backbone.num_landmarks`` says).

  python -m faujax.main --config configs/mgrr_net/bp4d.py --workdir /tmp/mgrr/bp4d_f1 \
      --config.data.manual_dir=/data/BP4D --config.data.fold=1

Table 6 rows: ``--config.ablation=`` baseline, dg, dg_random, dg+og, dg+cg+pg, dg+og+cg, dg+og+pg,
full, full_ungated (``faujax.models.mgrr_net.ABLATIONS``); Table 7: ``--config.model.num_layers``.
"""

from __future__ import annotations

import ml_collections

from faujax import config_base

DATASETS = ('bp4d', 'disfa')
CROP = 176 / 200  # random 176 x 176 crops of the 200 x 200 aligned faces


def real_config(dataset: str) -> ml_collections.ConfigDict:
  """The paper recipe on ``dataset`` ('bp4d' or 'disfa')."""
  if dataset not in DATASETS:
    raise ValueError(f'dataset {dataset!r}; expected one of {DATASETS}.')
  config = config_base.get_config('mgrr_net')
  config.data.name = dataset
  config.data.builder_config = 'jaanet_lists'
  config.data.image_size = 200
  config.data.shuffle_buffer = 8192

  config.augment.image_size = 176
  config.augment.crop_scale = (CROP, CROP)
  config.augment.eval_crop_scale = CROP
  config.augment.rotation_deg = 0.0
  config.augment.brightness = 0.0
  config.augment.contrast = 0.0
  config.augment.saturation = 0.0

  config.loss.name = 'bce'
  config.loss.landmark_weight = 0.5

  config.optim.name = 'sgd'
  config.optim.learning_rate = 0.01
  config.optim.momentum = 0.9
  config.optim.nesterov = True
  config.optim.weight_decay = 5e-4
  config.schedule.name = 'step'
  config.schedule.decay_every_epochs = 2.0
  config.schedule.decay_factor = 0.5
  config.train.batch_size = 8
  config.train.num_epochs = 15
  config.train.log_every = 200
  config.train.eval_every = 5000
  config.checkpoint.every = 5000
  return config


def get_config() -> ml_collections.ConfigDict:
  return real_config('bp4d')

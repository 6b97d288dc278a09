"""AU-GCN (Liu et al., "Relation Modeling with Graph Convolutional Networks for Facial Action Unit Detection") on BP4D: the paper's recipe (sec. 4.1).

19 ROI nodes (9 EAC-Net regions x 2 + the whole face) of n = 25 px on the similarity-aligned
200 x 200 face, d0 = 150, d1 = 30, d2 = 12 (the model's defaults), lambda1 = 3 (eq. 3), lambda2 = 4
(eq. 8); SGD momentum 0.9, weight decay 5e-4, batch 256, learning rate x 0.1 every 10 epochs,
horizontal flip; two stages: the auto-encoders alone on L_ROI for 12 epochs, then every module on
every loss for 40 epochs (``faujax.stages``). Each epoch trains on a fresh draw of 100 positive and
200 negative frames per AU per video (sec. 4.1; DISFA 800 and 1,600), ``config.data.sample_*_frames``
(``faujax.data.frame_sampling``; the epochs of the schedule still count every training frame). The paper gives no learning rate, dropout rate or
threshold h of eq. 5: faujax's choices are in ``docs/reference/model_details.md``, "AU-GCN
training".

  python -m faujax.main --config configs/au_gcn/bp4d.py --workdir /tmp/au_gcn/bp4d_f1 \
      --config.data.manual_dir=/data/BP4D --config.data.fold=1

``config.data.fold`` 1-3 (the graph is computed from that fold's training labels). Table 4 rows:
``--config.ablation=`` au_net, au_net+d, au_gcn-f-d, au_gcn-f, au_gcn-d, full (and faujax's
control identity_graph), see ``faujax.models.au_gcn.ABLATIONS``.
"""

from __future__ import annotations

import ml_collections

from faujax import config_base
from faujax import stages

DATASETS = ('bp4d', 'disfa')
# Sec. 4.1: frames drawn per AU per video and epoch, (positive, negative).
FRAMES_PER_AU_VIDEO = {'bp4d': (100, 200), 'disfa': (800, 1600)}


def real_config(dataset: str) -> ml_collections.ConfigDict:
  """The paper recipe on ``dataset`` ('bp4d' or 'disfa')."""
  if dataset not in DATASETS:
    raise ValueError(f'dataset {dataset!r}; expected one of {DATASETS}.')
  config = config_base.get_config('au_gcn')
  config.data.name = dataset
  config.data.shuffle_buffer = 8192
  config.data.sample_positive_frames, config.data.sample_negative_frames = (
      FRAMES_PER_AU_VIDEO[dataset])

  config.augment.image_size = 200          # the similarity-aligned 200 x 200 x 3 face
  config.augment.crop_scale = (1.0, 1.0)   # flip is the paper's only augmentation
  config.augment.rotation_deg = 0.0
  config.augment.brightness = 0.0
  config.augment.contrast = 0.0
  config.augment.saturation = 0.0

  config.loss.name = 'bce_dice'            # eq. 7 + lambda2 eq. 8
  config.loss.dice_weight = 4.0            # lambda2
  config.loss.reconstruction_weight = 3.0  # lambda1 of eq. 3

  config.optim.name = 'sgd'
  config.optim.learning_rate = 0.01        # not given by the paper
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.schedule.name = 'step'
  config.schedule.decay_every_epochs = 10.0
  config.schedule.decay_factor = 0.1

  config.train.batch_size = 256
  config.train.stage_order = ('autoencoders', 'joint')
  config.train.stages = {
      'autoencoders': stages.stage(epochs=12.0, params=('autoencoders',),
                                   losses=('roi', 'reconstruction')),
      'joint': stages.stage(epochs=40.0),
  }
  config.train.log_every = 100
  config.train.eval_every = 1000
  config.eval.batch_size = 256
  config.checkpoint.every = 1000
  return config


def get_config() -> ml_collections.ConfigDict:
  return real_config('bp4d')

"""The README's main job: the relation-free baseline on the synthetic BP4D-like AU data.

A small CNN trunk, global average pooling and a linear head trained with the occurrence-weighted
BCE of AU-GCN eq. 7. Sized to train in a few minutes on a 2-core CPU.

  python -m faujax.main --config configs/default.py --workdir /tmp/faujax/default
"""

from __future__ import annotations

import ml_collections

from faujax import config_blocks


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # 'jit' (a device mesh) or 'pmap'; both run the same step (see README "Parallelism").
  config.parallelism = 'jit'

  # synthetic_faces/bp4d; the label space is the builder config: bp4d | disfa | emotionet.
  config.data = config_blocks.synthetic_data('bp4d')
  # On-device augmentation (faujax.data.augment): faces aligned by their landmarks, 96 px input.
  config.augment = config_blocks.synthetic_augment(96)

  config.model = ml_collections.ConfigDict()
  config.model.name = 'baseline'
  config.model.dtype = 'float32'       # 'bfloat16': bf16 compute, float32 parameters
  config.model.backbone = ml_collections.ConfigDict()
  config.model.backbone.name = 'small_cnn'
  config.model.backbone.init_from = ''  # orbax dir written by faujax.tools.import_weights
  config.model.backbone.kwargs = ml_collections.ConfigDict(  # trunk attributes
      {'widths': (32, 64, 128, 128), 'extra_convs': 1})
  config.model.pooling = 'avg'
  config.model.dropout = 0.0

  config.loss = ml_collections.ConfigDict()
  config.loss.name = 'bce'             # bce | bce_dice | asymmetric
  config.loss.weighted = True          # occurrence-rate weights (AU-GCN eq. 7)

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adamw'
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.grad_clip_norm = 5.0
  config.optim.lr_multipliers = ml_collections.ConfigDict()  # e.g. {'backbone': 0.1}

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'cosine'
  config.schedule.warmup_epochs = 0.5

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32
  config.train.num_epochs = 40
  config.train.num_steps = 0           # > 0 overrides num_epochs
  config.train.log_every = 50
  config.train.eval_every = 400

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 64
  config.eval.threshold = 0.5

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every = 400
  config.checkpoint.keep = 2
  return config

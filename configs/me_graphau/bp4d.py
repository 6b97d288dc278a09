"""ME-GraphAU (Luo et al., IJCAI 2022) on BP4D: 12 AUs, the public code's recipe.

The public CVI-SZU/ME-GraphAU scripts (``train_stage1.py`` / ``train_stage2.py``, ``conf.py``,
``config/BP4D_config.yaml``, ``utils.py``; ``docs/reference/model_details.md``, "ME-GraphAU"):
ResNet-50 at 224 px (ImageNet-initialised), AdamW(0.9, 0.999, wd 5e-4), per-step cosine decay to
0 without warm-up, 20 epochs, batch 64; the weighted asymmetric loss with the inverse-occurrence
AU weights, plus in stage 2 the edge classification loss times ``--lam``; train: resize 256,
random crop 224, flip, colour jitter 0.4 / 0.4 / 0.4, ImageNet normalisation; test: resize 256,
centre crop 224 (the stored face is the 256 px image: ``config.augment.eval_crop_scale`` = 224 /
256, ``faujax.faces``). K = 4 for stage 1's top-K graph. Its BatchNorms track PyTorch's unbiased
running variance (``config.unbiased_running_var``).

Two stages, as the authors' README runs them (stage 2 starts from the stage-1 checkpoint):
  python -m faujax.main --config configs/me_graphau/bp4d.py:stage1 --workdir /tmp/megau/s1 \\
      --config.data.manual_dir=/data/BP4D --config.data.fold=1 \\
      --config.pretrained_backbone=/tmp/weights/resnet50
  python -m faujax.main --config configs/me_graphau/bp4d.py --workdir /tmp/megau/s2 \\
      --config.data.manual_dir=/data/BP4D --config.data.fold=1 --config.init_from=/tmp/megau/s1
Stage 1: lr 1e-4 (README); stage 2: lr 1e-5 (``conf.py``'s default, which the README's stage-2
BP4D command keeps) and ``lam`` 0.05 (``config.loss.edge_weight``).

The released ME-GraphAU files import with ``python -m faujax.tools.import_checkpoint`` into a
run of this config (the trunk of the file).
"""

from __future__ import annotations

import ml_collections

from faujax import config_base

TOP_K = {'bp4d': 4, 'disfa': 3}  # config/<DATASET>_config.yaml neighbor_num
# Stage-2 learning rate and lam of the README's commands (DISFA: -lr 0.000001 --lam 0.01).
STAGE2 = {'bp4d': (1e-5, 0.05), 'disfa': (1e-6, 0.01)}
VARIANTS = ('stage1', 'stage2')


def public_code_config(dataset: str, stage: int) -> ml_collections.ConfigDict:
  """The public scripts' recipe for ``dataset`` ('bp4d' or 'disfa') and ``stage`` (1 or 2)."""
  if dataset not in TOP_K:
    raise ValueError(f'dataset {dataset!r}; expected one of {tuple(TOP_K)}.')
  config = config_base.get_config('me_graphau')
  config.unbiased_running_var = True  # PyTorch's BatchNorm running variance
  config.data.name = dataset
  config.data.shuffle_buffer = 8192
  config_base.resize_crop_augment(config, resize=256, crop=224)
  config.augment.rotation_deg = 0.0
  config_base.colour_jitter(config, 0.4)

  config.model.stage = stage
  config.model.top_k = TOP_K[dataset]
  config.loss.name = 'asymmetric'
  config.optim.weight_decay = 5e-4
  if stage == 1:
    config.optim.learning_rate = 1e-4
    config.loss.edge_weight = 0.0  # train_stage1.py: the AU loss alone (no edge logits)
  else:
    config.optim.learning_rate, config.loss.edge_weight = STAGE2[dataset]
  config.train.batch_size = 64
  config.train.num_epochs = 20
  config.train.log_every = 100
  config.train.eval_every = 1000
  config.checkpoint.every = 1000
  return config


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """``variant``: 'stage1' or 'stage2' (default)."""
  variant = config_base.config_argument('configs/me_graphau/bp4d.py', variant, VARIANTS, 'stage2')
  return public_code_config('bp4d', 1 if variant == 'stage1' else 2)

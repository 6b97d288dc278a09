"""MACG (Li et al., "Enhancing facial action unit recognition ...") on BP4D: 12 AUs, K = 4, the paper's training recipe.

ResNet-50 (ImageNet-pretrained in the paper: convert torchvision's weights with
``python -m faujax.tools.import_weights`` and pass the directory as
``--config.pretrained_backbone``) at 224 px, AdamW(0.9, 0.999, wd 5e-4), lr 1e-4, batch 16,
per-step cosine decay to 0 without warm-up, 40 epochs (the paper; the public code trains 20),
weighted asymmetric loss (eq. 15-16). Augmentation (``docs/reference/model_details.md``, "MACG
training defaults"):
train = random crop of 87.5 % of the side (resize 256 / crop 224), horizontal flip, colour jitter
0.4 / 0.4 / 0.4, ImageNet normalisation; test = centre crop of 87.5 % (resize 256 / crop 224).

  python -m faujax.main --config configs/macg/bp4d.py --workdir /tmp/macg/bp4d_f1 \
      --config.data.manual_dir=/data/BP4D --config.data.fold=1 \
      --config.pretrained_backbone=/tmp/weights/resnet50

``config.data.builder_config`` is the layout of the manual dir ('megraphau_lists' = the ME-GraphAU /
MACG list files, 'official', 'jaanet_lists'; detected from the files when unset);
``config.data.fold`` 1-3. ``configs/macg/bp4d.py:public_code``: the recipe of the public scripts
(lkq52110/au-recognition; ``real_config``). Ablations and the K sweep: ``--config.ablation=baseline`` etc. and
``--config.model.top_k`` (see ``faujax.models.macg.ABLATIONS``).
"""

from __future__ import annotations

import ml_collections

from faujax import config_base

TOP_K = {'bp4d': 4, 'disfa': 3, 'emotionet': 4}  # K of the paper per dataset


VARIANTS = ('paper', 'public_code')


def real_config(dataset: str, variant: str | None = None) -> ml_collections.ConfigDict:
  """The recipe on ``dataset`` ('bp4d', 'disfa' or 'emotionet'): the paper's (default), or the
  public scripts' (``variant='public_code'``, what their trained files import into; the public
  code ships configs for DISFA and EmotioNet, ``conf.py`` lines 119-131, and BP4D takes the same
  recipe). ``docs/reference/model_details.md``, "Reference-code parity switches":
    * ``model.py``: one CCFG LinearBlock shared by the AUs (lines 269, 278-281), called once per
      AU, so its BatchNorm statistics move N times per step; the MAFG axial order 1 x k then
      k x 1 (lines 189-203); lambda fixed at 1 (``forward(x, alpha=1)``, line 271);
    * PyTorch's BatchNorm tracks the unbiased batch variance (``config.unbiased_running_var``);
    * ``conf.py`` line 42: 20 epochs of the per-step cosine decay of ``utils.py`` lines 124-129
      (``train.py`` line 46 calls it every step), to 0 without warm-up;
    * preprocessing ``utils.py`` lines 159-197 with ``dataset.py`` lines 62-68: resize to 256,
      a random 224 crop (``PlaceCrop``), flip, colour jitter 0.4 / 0.4 / 0.4 (hue 0), ImageNet
      normalisation; test resize 256, centre crop 224 (the paper's augmentation is the same)."""
  if dataset not in TOP_K:
    raise ValueError(f'dataset {dataset!r}; expected one of {tuple(TOP_K)}.')
  variant = config_base.config_argument(f'configs/macg/{dataset}.py', variant, VARIANTS, 'paper')
  config = config_base.get_config('macg')
  config.data.name = dataset
  config.data.shuffle_buffer = 8192

  config_base.resize_crop_augment(config, resize=256, crop=224)
  config.augment.rotation_deg = 0.0
  config_base.colour_jitter(config, 0.4)

  config.model.top_k = TOP_K[dataset]
  config.loss.name = 'asymmetric'

  config.optim.learning_rate = 1e-4
  config.optim.weight_decay = 5e-4
  config.train.batch_size = 16
  config.train.num_epochs = 40          # paper; the public code uses 20
  config.train.log_every = 200
  config.train.eval_every = 2000
  config.checkpoint.every = 2000
  if variant == 'public_code':
    config.model.shared_ccfg_block = True
    config.model.ccfg_per_au_statistics = True
    config.model.axial_order = 'xy'
    config.model.ccfg_trainable_lambda = False
    config.unbiased_running_var = True
    config.train.num_epochs = 20
  return config


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """``variant``: 'paper' (default) or 'public_code'."""
  return real_config('bp4d', variant)

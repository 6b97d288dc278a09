"""Emotion-GCN (Antoniadis et al.) on AffectNet, 7 classes: the paper's recipe.

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
``--config.pretrained_backbone=<dir>``.

Variants (Table I, Sec. IV-E) as the config argument:
  python -m faujax.main --config configs/emotion_gcn/affectnet.py --workdir /tmp/egcn/affectnet \\
      --config.data.manual_dir=/data/AffectNet --config.pretrained_backbone=/w/densenet121
  ... --config configs/emotion_gcn/affectnet.py:single_task | mtl_mse | mtl_ccc | emotion_gcn |
      conditional   (conditional needs --config.model.cooccurrence_labels=/path/emotic_7.npy)
Table II: --config.model.tau=0.05 --config.model.p=0.5 --config.model.gcn_layers=3.
``:public_code`` is the recipe of the public scripts (PanosAntoniadis/emotion-gcn; the released
checkpoints import into it, ``faujax.tools.import_checkpoint``), each a line in ``get_config``:
p 0.5 and the valence-arousal edge kept (``utils.gen_A``); the CCC loss with the variances over
n - 1 (``ccc.py`` lines 18-21, ``torch.var``); no colour jitter (``main.py`` line 127:
``ColorJitter()`` with no arguments changes nothing); rotation up to 30 degrees with nearest
interpolation (line 128, torchvision's default) on the 227 px face, no crop (line 125); trained on
all of training.csv and selected on validation.csv (``pickle_annotations_affectnet.py`` lines
31-56, ``main.py`` lines 143-146, 269-279: the ``7class_public_code`` build); PyTorch's unbiased
BatchNorm running variance. Its schedule is the paper's: SGD 1e-3, momentum 0.9, weight decay
1e-3 (lines 195-196), ``StepLR(10, 0.1)`` stepped per epoch (lines 198, 240) over 10 epochs.
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


PUBLIC_CODE = 'public_code'


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The AffectNet config; ``variant`` in ``emotion_gcn.ABLATIONS`` (default 'emotion_gcn') or
  'public_code' (the public main.py's model and transforms: what its checkpoints import into)."""
  config = config_base.get_config('emotion_gcn')
  config.ablation = 'emotion_gcn' if variant in (None, PUBLIC_CODE) else variant
  config.data.name = 'affectnet'
  config.data.builder_config = '7class'
  config.data.shuffle_buffer = 8192

  config.augment.image_size = 227
  config.augment.crop_scale = (1.0, 1.0)  # aligned 227 px faces, no cropping
  config.augment.rotation_deg = 30.0
  config_base.colour_jitter(config, 0.4)
  config.augment.mean = config_base.IMAGENET_MEAN
  config.augment.std = config_base.IMAGENET_STD

  config.optim.name = 'sgd'
  config.optim.weight_decay = 1e-3       # lr 1e-3, momentum 0.9: the declared defaults
  config.schedule.name = 'step'          # x0.1 every 10 epochs: the declared defaults
  config.train.batch_size = 35
  config.train.log_every = 100           # 10 epochs: the declared default
  config.train.eval_every = 2000
  config.eval.batch_size = 100
  config.checkpoint.every = 2000
  if variant == PUBLIC_CODE:  # the public scripts (module docstring)
    config.model.p = 0.5
    config.model.keep_va_edge = True
    config.loss.ccc_normalization = 'public_code'
    config.augment.brightness = 0.0
    config.augment.contrast = 0.0
    config.augment.saturation = 0.0
    config.augment.interpolation = 'nearest'
    config.data.builder_config = '7class_public_code'
    config.unbiased_running_var = True
  return config

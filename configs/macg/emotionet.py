"""MACG on EmotioNet: 12 AUs, K = 4.

The recipe of ``configs/macg/bp4d.py`` (ResNet-50 at 224 px, AdamW lr 1e-4, batch 16, 40 epochs).

  python -m faujax.main --config configs/macg/emotionet.py --workdir /tmp/macg/emotionet_f1 \
      --config.data.manual_dir=/data/emotionet --config.data.fold=1 \
      --config.pretrained_backbone=/tmp/weights/resnet50

"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """``variant``: 'paper' (default) or 'public_code' (``configs/macg/bp4d.py``)."""
  return config_base.load_sibling(__file__, 'bp4d').real_config('emotionet', variant)

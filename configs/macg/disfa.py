"""MACG on DISFA: 8 AUs (intensity >= 2), K = 3, left camera.

The recipe of ``configs/macg/bp4d.py`` (ResNet-50 at 224 px, AdamW lr 1e-4, batch 16, 40 epochs).

  python -m faujax.main --config configs/macg/disfa.py --workdir /tmp/macg/disfa_f1 \
      --config.data.manual_dir=/data/disfa --config.data.fold=1 \
      --config.pretrained_backbone=/tmp/weights/resnet50

Common practice (ME-GraphAU) initialises DISFA training from a BP4D-trained model; this config
starts from the ImageNet trunk as the MACG paper states.
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """``variant``: 'paper' (default) or 'public_code' (``configs/macg/bp4d.py``)."""
  return config_base.load_sibling(__file__, 'bp4d').real_config('disfa', variant)

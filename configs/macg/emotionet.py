"""MACG (paper macg.md) on EmotioNet: 12 AUs, K = 4.

The recipe of ``configs/macg/bp4d.py`` (ResNet-50 at 224 px, AdamW lr 1e-4, batch 16, 40 epochs).

  python -m faujax.main --config configs/macg/emotionet.py --workdir /tmp/macg/emotionet_f1 \
      --config.data.manual_dir=/data/emotionet --config.data.fold=1 \
      --config.model.backbone.init_from=/tmp/weights/resnet50

"""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def _load_sibling(name: str):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_macg_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config() -> ml_collections.ConfigDict:
  return _load_sibling('bp4d').real_config('emotionet')

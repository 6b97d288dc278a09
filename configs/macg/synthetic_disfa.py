"""MACG on the DISFA-like synthetic faces (8 AUs, K = 3): ``configs/macg/synthetic.py:disfa``.

  python -m faujax.main --config configs/macg/synthetic_disfa.py --workdir /tmp/macg/disfa
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
  return _load_sibling('synthetic').get_config('disfa')

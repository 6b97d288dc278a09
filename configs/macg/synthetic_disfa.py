"""MACG on the DISFA-like synthetic faces (8 AUs, K = 3): ``configs/macg/synthetic.py:disfa``.

  python -m faujax.main --config configs/macg/synthetic_disfa.py --workdir /tmp/macg/disfa
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config() -> ml_collections.ConfigDict:
  return config_base.load_sibling(__file__, 'synthetic').get_config('disfa')

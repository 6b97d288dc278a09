"""MGRR-Net on DISFA: 8 AUs (intensity >= 2), the recipe of ``configs/mgrr_net/bp4d.py``.

The paper initialises DISFA training from the BP4D-trained model (sec. 4.2); this config trains
from scratch (faujax has no loader for a BP4D run's weights into a model with 8 AU heads yet).

  python -m faujax.main --config configs/mgrr_net/disfa.py --workdir /tmp/mgrr/disfa_f1 \
      --config.data.manual_dir=/data/disfa --config.data.fold=1
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config() -> ml_collections.ConfigDict:
  return config_base.load_sibling(__file__, 'bp4d').real_config('disfa')

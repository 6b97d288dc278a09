"""AU-GCN on DISFA: 8 AUs (intensity >= 2), the recipe of ``configs/au_gcn/bp4d.py``.

The ROI nodes come from the DISFA AU set by the same rule: 7 EAC-Net regions x 2 (AU25 and AU26
share the inner-lip region) + the whole face = 15 nodes (the paper counts 14; see
``docs/reference/model_details.md``, "AU-GCN ROIs").

  python -m faujax.main --config configs/au_gcn/disfa.py --workdir /tmp/au_gcn/disfa_f1 \
      --config.data.manual_dir=/data/disfa --config.data.fold=1
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config() -> ml_collections.ConfigDict:
  return config_base.load_sibling(__file__, 'bp4d').real_config('disfa')

"""AU-GCN on DISFA: 8 AUs (intensity >= 2), the recipe of ``configs/au_gcn/bp4d.py``.

The ROI nodes come from the DISFA AU set by the same rule: 6 EAC-Net regions x 2 (AU25 and AU26
share the inner-lip region), one ROI for AU9 and the whole face = 14 nodes, as the paper (sec. 3.2;
``config.model.single_roi_aus=()`` gives AU9 a pair, 15 nodes; see
``docs/reference/model_details.md``, "AU-GCN ROIs"). Frames: 800 positive and 1,600 negative per
AU per video, drawn anew each epoch (sec. 4.1, ``config.data.sample_*_frames``).

  python -m faujax.main --config configs/au_gcn/disfa.py --workdir /tmp/au_gcn/disfa_f1 \
      --config.data.manual_dir=/data/disfa --config.data.fold=1
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config() -> ml_collections.ConfigDict:
  return config_base.load_sibling(__file__, 'bp4d').real_config('disfa')

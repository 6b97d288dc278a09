"""SVML-RGCN on RAF-DB compound as 6-dim multi-labels (Sec. 4.2): the RAF-ML recipe
(``configs/svml_rgcn/raf_ml.py``) with MFB k = 5, o = 2000; same thresholds (0.15 / 0.4) and
learning rates.

  python -m faujax.main --config configs/svml_rgcn/raf_compound.py --workdir /runs/svml/compound \\
      --config.data.manual_dir=/data/RAF-DB \\
      --config.model.visual_nodes=/runs/raf_basic/visual_nodes.npz \\
      --config.pretrained_backbone=/runs/raf_basic/trunk
Rows as the config argument (``raf_compound.py:baseline`` ...), as in raf_ml.py.
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The RAF-DB compound config; ``variant`` in ``svml_rgcn.ABLATIONS``."""
  config = config_base.load_sibling(__file__, 'raf_ml').get_config(variant)
  config.data.name = 'raf_db'
  config.data.builder_config = 'compound'
  config.model.mfb_factor = 5
  config.model.mfb_dim = 2000
  return config

"""SVML-RGCN on JAFFE, ratings >= 3 as 6-dim multi-labels, 5 subject-exclusive folds (Sec. 4.2).

The RAF-ML recipe (``configs/svml_rgcn/raf_ml.py``) with t1 = 1e-6 (negative = never together
in the fold's training labels), t2 = 0.45, MFB k = 5, o = 1000, and learning rates 5e-4
(classifier) / 1e-4 (trunk). The relations are computed from each fold's training parts.

  python -m faujax.cv --config configs/svml_rgcn/jaffe.py --workdir /runs/svml/jaffe \\
      --config.data.manual_dir=/data/JAFFE \\
      --config.model.visual_nodes=/runs/raf_basic/visual_nodes.npz \\
      --config.pretrained_backbone=/runs/raf_basic/trunk
Rows as the config argument (``jaffe.py:baseline`` ...), as in raf_ml.py.

Deviation: JAFFE ships no landmarks, so the whole 256 px image is resized to 224 px instead of
the paper's eye-and-mouth alignment.
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The JAFFE config; ``variant`` in ``svml_rgcn.ABLATIONS``."""
  config = config_base.load_sibling(__file__, 'raf_ml').get_config(variant)
  config.data.name = 'jaffe'
  config.data.builder_config = 'threshold3'
  config.model.t1 = 1e-6
  config.model.t2 = 0.45
  config.model.mfb_factor = 5
  config.model.mfb_dim = 1000
  config.optim.learning_rate = 5e-4
  config.optim.lr_multipliers = {'backbone': 0.2}    # trunk 1e-4
  config.train.eval_every = 50
  config.checkpoint.every = 50
  return config

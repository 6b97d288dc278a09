"""Emotion-GCN on Aff-Wild2: frames with both an expression and a VA label.

The AffectNet recipe (``configs/emotion_gcn/affectnet.py``: DenseNet-121 at 227 px, 2-layer GCN,
tau 0.1, p 0.7, weighted CE + CCC, SGD 1e-3 / 0.9 / wd 1e-3, batch 35, 10 epochs) on the
``aff_wild2`` builder's 'both' config (Sec. IV-A.2: only frames with both labels). The official
Validation_Set is the test split; checkpoints are selected on 10 % of the Train_Set videos by the
Aff-Wild2 expression metric 0.67 * macro F1 + 0.33 * accuracy ('affwild2_score'). The frames
come cropped and aligned, so no further alignment. Deviations as in the AffectNet config.

  python -m faujax.main --config configs/emotion_gcn/aff_wild2.py --workdir /tmp/egcn/affwild2 \\
      --config.data.manual_dir=/data/Aff-Wild2 --config.pretrained_backbone=/w/densenet121
Variants: ``configs/emotion_gcn/aff_wild2.py:single_task`` (mtl_mse, mtl_ccc, emotion_gcn,
conditional).
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The Aff-Wild2 config; ``variant`` in ``emotion_gcn.ABLATIONS`` (default 'emotion_gcn')."""
  config = config_base.load_sibling(__file__, 'affectnet').get_config(variant)
  config.data.name = 'aff_wild2'
  config.data.builder_config = 'both'
  config.data.shuffle_buffer = 16384     # consecutive frames are near duplicates
  config.eval.selection_metric = 'affwild2_score'
  return config

"""OpenGraphAU: ME-GraphAU's 41-AU models trained on a hybrid of six datasets (the public
``OpenGraphAU/`` code of CVI-SZU/ME-GraphAU).

The 41 outputs are ``faujax.labels.opengraphau_label_names()`` (27 AUs, then the left / right
versions of AU1, 2, 4, 6, 10, 12, 14 as the authors name them). Each sided output reads a main
AU's node: the public code's ``sub_list`` reads AUL12 / AUR12 from AU11's node (its README calls
them "nasolabial deepener"), so this config sets ``model.sided_nodes`` to that list. Stage 1 is
the top-K graph with K = 4 (``conf/hybrid_config.yaml``); stage 2 uses the gated graph with
``x + ReLU(BN(h))`` and no edge classifier. Test transform: resize 256, centre crop 224,
ImageNet normalisation (``utils.image_eval``).

Its training data (the hybrid lists of BP4D, DISFA, RAF-AU, Aff-Wild2, CK+ and CASME II) has no
faujax builder; this config is what the released files import into
(``python -m faujax.tools.import_checkpoint``), for prediction and for fine-tuning on a dataset
that has the same 41 labels.
"""

from __future__ import annotations

import ml_collections

from faujax import config_base
from faujax import labels

SUB_LIST = (0, 1, 2, 4, 7, 8, 11)  # OpenGraphAU/model/*.py Head.sub_list


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """``variant``: 'stage1' or 'stage2' (default)."""
  bp4d = config_base.load_sibling(__file__, 'bp4d')
  variant = config_base.config_argument('configs/me_graphau/opengraphau.py', variant,
                                         bp4d.VARIANTS, 'stage2')
  stage = 1 if variant == 'stage1' else 2
  config = bp4d.public_code_config('bp4d', stage)
  config.data.name = labels.OPENGRAPHAU_DATASET
  config.model.top_k = 4
  config.model.relu_before_residual = True
  config.model.edge_classifier = False
  config.loss.edge_weight = 0.0  # OpenGraphAU's train_stage2.py: the AU loss alone
  # The main node each sided label reads: the public Head's sub_list [0, 1, 2, 4, 7, 8, 11], for
  # the left and the right label of each (AUL12 / AUR12 read AU11's node, index 8).
  config.model.sided_nodes = tuple(k for k in SUB_LIST for _ in 'LR')
  config.augment.flip = False  # train_stage*.py: RandomHorizontalFlip commented out
  config.optim.learning_rate = 2e-5 if stage == 1 else 1e-5  # README: -lr 0.00002 / 0.00001
  config.train.batch_size = 512
  return config

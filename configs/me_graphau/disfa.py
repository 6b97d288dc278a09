"""ME-GraphAU on DISFA: 8 AUs (intensity >= 2), K = 3, the public code's recipe.

The recipe of ``configs/me_graphau/bp4d.py``; stage 2 with lr 1e-6 and lam 0.01 (the README's
DISFA commands). Common practice initialises DISFA training from a BP4D model
(``--config.init_from=<BP4D workdir>``).

  python -m faujax.main --config configs/me_graphau/disfa.py:stage1 --workdir /tmp/megau/d1 ...
  python -m faujax.main --config configs/me_graphau/disfa.py --workdir /tmp/megau/d2 \\
      --config.init_from=/tmp/megau/d1 ...
"""

from __future__ import annotations

import ml_collections

from faujax import config_base


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """``variant``: 'stage1' or 'stage2' (default)."""
  bp4d = config_base.load_sibling(__file__, 'bp4d')
  variant = config_base.config_argument('configs/me_graphau/disfa.py', variant, bp4d.VARIANTS,
                                         'stage2')
  return bp4d.public_code_config('disfa', 1 if variant == 'stage1' else 2)

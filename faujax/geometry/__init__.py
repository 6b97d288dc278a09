"""Face geometry: the layer between images and models (JAX, pure, jit-able, batched).

Modules:
  schemes         68 / 66 / 49 point index tables and flip permutations (lead-owned).
  conversions     scheme conversions, landmark / image flips, landmark validation.
  mean_face       faujax's canonical symmetric 68-point face (templates, tests, figures).
  sampling        the bilinear sampler under warps, crops and resizes.
  alignment       similarity transforms: JAA-Net 200 px, Emotion-GCN 227 px, 5-point 224 px.
  au_centres      AU centres from landmarks (JAA-Net 49-point, EAC-Net 68-point rules).
  roi             n x n ROI crops around centres (AU-GCN), differentiable in the image.
  attention_maps  EAC-Net and JAA-Net predefined attention maps.
  face_detection  optional offline dlib face + 68-landmark detector (``faujax[face]``).
  make_figure     draws docs/geometry_example.png.

Jit-able functions report bad faces through an ``ok`` / ``valid`` flag (they cannot raise
inside jit); the host-level ``*_checked`` / ``check_aligned`` wrappers raise ValueError.
"""

from __future__ import annotations

from faujax.geometry import alignment
from faujax.geometry import attention_maps
from faujax.geometry import au_centres
from faujax.geometry import conversions
from faujax.geometry import mean_face
from faujax.geometry import roi
from faujax.geometry import sampling
from faujax.geometry import schemes

__all__ = ['alignment', 'attention_maps', 'au_centres', 'conversions', 'mean_face', 'roi',
           'sampling', 'schemes']

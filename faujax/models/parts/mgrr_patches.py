"""MGRR-Net AU patch features: the O_G cells around the AU centres of the predicted landmarks.

MGRR-Net sec. 3.1: "According to the detected landmarks, local patches are calculated, and their
features V = {v_1, ..., v_n} are learned via the stem network". faujax reads v_i as the patches of
the stem's global map O_G (B, s, s, C) around the two JAA-Net centres of AU i
(``faujax.geometry.au_centres``, docs/reference/face_geometry.md "JAA-Net AU centres"), sampled
bilinearly (``faujax.geometry.roi.patch_grid`` + ``sampling.bilinear_sample``), so v_i is
piecewise linear in the landmarks and the AU losses reach the face-alignment branch through it.
The same sampler reads the fused global maps at the AU's patch (eq. 6, see
``faujax.models.parts.mgrr_layer``). docs/reference/model_details.md, "MGRR-Net".

Coordinates: centres are (x, y) input pixels of the S x S image; O_G cell (i, j) covers the input
pixels of a stride S / s grid, so an input position x is map position (x + 0.5) s / S - 0.5 (the
half-pixel convention of ``faujax.geometry.sampling.resize``).
"""

from __future__ import annotations

import chex
import jax
import numpy as np

from faujax.geometry import au_centres as au_centres_lib
from faujax.geometry import mean_face
from faujax.geometry import roi
from faujax.geometry import sampling
from faujax.geometry import schemes


def to_map_coords(points: chex.Array, image_size: int, map_size: int) -> chex.Array:
  """(..., 2) input-pixel (x, y) -> positions on a ``map_size`` grid over the ``image_size`` image."""
  return (points + 0.5) * (map_size / image_size) - 0.5


def sample_patches(fmap: chex.Array, centres: chex.Array, patch_size: int) -> chex.Array:
  """Bilinear ``patch_size`` x ``patch_size`` patches of ``fmap`` around map-coordinate centres.

  Args:
    fmap: (B, s, s, C) feature map.
    centres: (B, ..., 2) centres in map coordinates (x, y).
    patch_size: side of each patch in map cells (one sample per cell); cells outside read 0.

  Returns:
    (B, ..., patch_size, patch_size, C).
  """
  chex.assert_rank(fmap, 4)
  chex.assert_equal_shape_prefix([fmap, centres], 1)
  grid = roi.patch_grid(centres, patch_size)                  # (B, ..., p, p, 2)
  return jax.vmap(sampling.bilinear_sample)(fmap, grid.astype(fmap.dtype))


def au_patch_centres(landmarks: chex.Array, aus, *, image_size: int, map_size: int,
                     rules: str = 'jaanet') -> chex.Array:
  """The two centres of every AU (``au_centres``), in O_G map coordinates: (B, N, 2, 2)."""
  centres, _ = au_centres_lib.au_centres(landmarks, aus, rules)
  return to_map_coords(centres, image_size, map_size)


def mean_face_landmarks(num_points: int, image_size: int) -> np.ndarray:
  """faujax's mean 68-point face (``geometry.mean_face``) in the ``num_points`` scheme, scaled
  from its 200 px frame to ``image_size``: (num_points, 2) float32."""
  scale = image_size / mean_face.FRAME_SIZE
  pts = mean_face.MEAN_FACE_68[schemes.SUBSET_OF_68[num_points]]
  return ((pts + 0.5) * scale - 0.5).astype(np.float32)

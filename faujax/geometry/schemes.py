"""Landmark schemes (68 / 66 / 49 points), conversions and horizontal-flip permutations.

The 68-point iBUG scheme (0-based indices) is faujax's lingua franca:
  0-16 jaw, 17-21 right brow, 22-26 left brow (subject's right/left, i.e. image left/right
  for a frontal face), 27-30 nose bridge, 31-35 nostrils, 36-41 right eye, 42-47 left eye,
  48-59 outer lips, 60-67 inner lips.
DISFA's 66 points drop the inner mouth corners 60 and 64; the 49-point scheme of BP4D/DISFA
tooling and JAA-Net additionally drops the 17 jaw points (docs/reference/face_geometry.md,
"Landmark schemes").

Landmarks are arrays of shape (..., P, 2) holding (x, y) pixel coordinates.
"""

from __future__ import annotations

import numpy as np

NUM_POINTS = (68, 66, 49)

# Flip permutation of the 68-point scheme: flipped[i] = original[FLIP_68[i]] after x -> W - 1 - x.
_PAIRS_68 = (
    [(i, 16 - i) for i in range(8)]  # jaw
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # brows
    + [(31, 35), (32, 34)]  # nostrils
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    + [(60, 64), (61, 63), (65, 67)]  # inner lips
)


def _perm_from_pairs(n: int, pairs) -> np.ndarray:
  perm = np.arange(n)
  for a, b in pairs:
    perm[a], perm[b] = b, a
  return perm


FLIP_68: np.ndarray = _perm_from_pairs(68, _PAIRS_68)

# Indices into the 68-point scheme that make up the smaller schemes.
IDX_66_IN_68: np.ndarray = np.array([i for i in range(68) if i not in (60, 64)])
IDX_49_IN_68: np.ndarray = np.array([i for i in range(17, 68) if i not in (60, 64)])


def _sub_flip(idx: np.ndarray) -> np.ndarray:
  """Flip permutation of a sub-scheme, derived from FLIP_68 (closed under flipping)."""
  pos = {int(j): k for k, j in enumerate(idx)}
  return np.array([pos[int(FLIP_68[j])] for j in idx])


FLIP_66: np.ndarray = _sub_flip(IDX_66_IN_68)
FLIP_49: np.ndarray = _sub_flip(IDX_49_IN_68)

FLIP_PERMUTATIONS: dict[int, np.ndarray] = {68: FLIP_68, 66: FLIP_66, 49: FLIP_49}
SUBSET_OF_68: dict[int, np.ndarray] = {68: np.arange(68), 66: IDX_66_IN_68, 49: IDX_49_IN_68}


def flip_permutation(num_points: int) -> np.ndarray:
  """The horizontal-flip re-indexing of a 68, 66 or 49 point scheme."""
  if num_points not in FLIP_PERMUTATIONS:
    raise ValueError(f'Unknown landmark scheme with {num_points} points; expected one of {NUM_POINTS}.')
  return FLIP_PERMUTATIONS[num_points]


# Eye landmark indices (0-based) used for the inter-ocular distance d_o of MGRR-Net eq. 10.
# 68-point iBUG: right eye 36-41, left eye 42-47; DISFA's 66 points keep the same indices (the
# dropped inner mouth corners 60 and 64 come after them); 49 points: 68-point index minus 17.
EYES_68: tuple[tuple[int, ...], tuple[int, ...]] = (tuple(range(36, 42)), tuple(range(42, 48)))
EYES_66: tuple[tuple[int, ...], tuple[int, ...]] = EYES_68
EYES_49: tuple[tuple[int, ...], tuple[int, ...]] = (tuple(range(19, 25)), tuple(range(25, 31)))
EYE_INDICES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    68: EYES_68, 66: EYES_66, 49: EYES_49}

"""faujax's canonical frontal 68-point face (iBUG order) in a 200 x 200 frame.

A hand-built, left-right symmetric mean shape: the face is centred on x = 100 (mirror
line), eyes level at y ~ 86, inter-ocular (eye-centre) distance 60 px. It is the
reference from which the alignment templates are derived (``alignment.py``), the
fallback face of the geometry figure and the test fixture. It is symmetric under
``schemes.FLIP_68`` with x -> 200 - x (i.e. a flip of a 201-pixel-wide image).
"""

from __future__ import annotations

import numpy as np

MIRROR_X = 100.0  # x of the symmetry line.


def _jaw() -> list[tuple[float, float]]:
  t = np.pi * np.arange(17) / 16.0
  return [(100.0 - 62.0 * np.cos(a), 95.0 + 88.0 * np.sin(a)) for a in t]


_BROWS = [(50, 72), (60, 67), (72, 66), (84, 68), (94, 71),
          (106, 71), (116, 68), (128, 66), (140, 67), (150, 72)]
_NOSE = [(100, 82), (100, 92), (100, 102), (100, 112),
         (88, 120), (94, 122), (100, 124), (106, 122), (112, 120)]
_EYES = [(60, 86), (66, 82), (74, 82), (80, 87), (74, 89), (66, 89),
         (120, 87), (126, 82), (134, 82), (140, 86), (134, 89), (126, 89)]
_OUTER_LIPS = [(82, 145), (88, 140), (95, 137), (100, 138), (105, 137), (112, 140),
               (118, 145), (112, 151), (106, 154), (100, 155), (94, 154), (88, 151)]
_INNER_LIPS = [(85, 145), (94, 142), (100, 143), (106, 142),
               (115, 145), (106, 148), (100, 149), (94, 148)]

MEAN_FACE_68: np.ndarray = np.array(
    _jaw() + _BROWS + _NOSE + _EYES + _OUTER_LIPS + _INNER_LIPS, dtype=np.float32)
assert MEAN_FACE_68.shape == (68, 2)
FRAME_SIZE = 200  # The frame the mean face lives in (pixels).

"""Landmark scheme conversions (68 <-> 66 <-> 49 points), horizontal flips and validation.

Index tables come from ``schemes.py`` (docs/reference/face_geometry.md, "Landmark schemes"):
66 = 68 without the inner mouth corners 60 and 64; 49 = 66 without the 17 jaw points.

Down-conversions (68 -> 66, 68 -> 49, 66 -> 49) select points. Up-conversions
(49 -> 66, 49 -> 68, 66 -> 68) are defined only for the shared points: faujax's choice is
to copy the shared points and fill the points the smaller scheme lacks (jaw, inner mouth
corners) with ``fill_value``, NaN by default. NaN is deliberate: every jit-able consumer
(alignment, AU centres) reports ``ok = False`` when it touches a NaN point, so a missing
point can never turn into a silently wrong crop; consumers that do not use the missing
points (all AU-centre rules, the JAA-Net and 5-point alignments) work unchanged.
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np

from faujax.geometry import schemes


def num_points_of(landmarks: chex.Array, name: str = 'landmarks') -> int:
  """Returns P of (..., P, 2) landmarks, raising ValueError unless P is 68, 66 or 49."""
  shape = np.shape(landmarks)
  if len(shape) < 2 or shape[-1] != 2:
    raise ValueError(f'{name}: expected an array of shape (..., P, 2) holding (x, y) pixels, '
                     f'got shape {shape}.')
  if shape[-2] not in schemes.NUM_POINTS:
    raise ValueError(f'{name}: expected P in {schemes.NUM_POINTS} landmark points, got '
                     f'{shape[-2]} (shape {shape}).')
  return int(shape[-2])


def validate_landmarks(landmarks, num_points: int | tuple[int, ...] | None = None,
                       name: str = 'landmarks') -> np.ndarray:
  """Host-level check of concrete landmarks; returns them as a float32 numpy array.

  Raises:
    ValueError: wrong shape, a point count other than ``num_points`` (or not 68/66/49),
      or any non-finite coordinate (naming the first bad point).
  """
  arr = np.asarray(landmarks, dtype=np.float32)
  p = num_points_of(arr, name)
  allowed = (num_points,) if isinstance(num_points, int) else num_points
  if allowed is not None and p not in allowed:
    raise ValueError(f'{name}: expected {allowed} points, got {p}.')
  bad = ~np.isfinite(arr).all(axis=-1)
  if bad.any():
    first = np.argwhere(bad)[0]
    raise ValueError(f'{name}: non-finite coordinate at index {tuple(int(i) for i in first)} '
                     f'({bad.sum()} bad points in total).')
  return arr


def convert_landmarks(landmarks: chex.Array, num_points: int,
                      fill_value: float = float('nan')) -> chex.Array:
  """Converts (..., P, 2) landmarks between the 68, 66 and 49 point schemes.

  Args:
    landmarks: (..., P, 2) with P in (68, 66, 49).
    num_points: the target scheme Q.
    fill_value: value of points the source scheme lacks (up-conversion only).

  Returns:
    (..., Q, 2) landmarks.
  """
  p = num_points_of(landmarks)
  if num_points not in schemes.NUM_POINTS:
    raise ValueError(f'num_points: expected one of {schemes.NUM_POINTS}, got {num_points}.')
  landmarks = jnp.asarray(landmarks)
  if p == num_points:
    return landmarks
  src = schemes.SUBSET_OF_68[p]
  dst = schemes.SUBSET_OF_68[num_points]
  if set(dst.tolist()) <= set(src.tolist()):  # down-conversion: select.
    pos = {int(j): k for k, j in enumerate(src)}
    return landmarks[..., np.array([pos[int(j)] for j in dst]), :]
  # Up-conversion: scatter the shared points, fill the rest.
  dpos = {int(j): k for k, j in enumerate(dst)}
  target = np.array([dpos[int(j)] for j in src])
  out = jnp.full(landmarks.shape[:-2] + (num_points, 2), fill_value,
                 dtype=jnp.result_type(landmarks.dtype, jnp.float32))
  return out.at[..., target, :].set(landmarks)


def points_index(indices_68, num_points: int) -> np.ndarray:
  """Positions of 68-point indices inside the ``num_points`` scheme (ValueError if absent)."""
  pos = {int(j): k for k, j in enumerate(schemes.SUBSET_OF_68[num_points])}
  idx = np.asarray(indices_68)
  missing = sorted({int(i) for i in idx.ravel() if int(i) not in pos})
  if missing:
    raise ValueError(f'68-point indices {missing} do not exist in the {num_points}-point scheme.')
  return np.vectorize(lambda i: pos[int(i)], otypes=[np.int64])(idx)


def flip_landmarks(landmarks: chex.Array, width: int | chex.Array) -> chex.Array:
  """Mirrors (..., P, 2) landmarks of an image ``width`` pixels wide.

  x -> width - 1 - x, then re-indexing with ``schemes.flip_permutation(P)`` so that, e.g.,
  index 36 is again the subject's right outer eye corner (now on the image left).
  """
  p = num_points_of(landmarks)
  landmarks = jnp.asarray(landmarks)
  perm = schemes.flip_permutation(p)
  flipped = landmarks[..., perm, :]
  return flipped.at[..., 0].set(jnp.asarray(width, flipped.dtype) - 1 - flipped[..., 0])


def flip_image(image: chex.Array) -> chex.Array:
  """Mirrors a (..., H, W, C) image left-right (the partner of ``flip_landmarks``)."""
  chex.assert_rank(image, {3, 4})
  return jnp.flip(image, axis=-2)

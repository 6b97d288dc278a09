"""Face alignment: similarity transforms to templates, applied to image and landmarks.

Transforms are (..., 2, 3) affine matrices M mapping source (x, y) to output pixels:
[u, v]^T = M[:, :2] @ [x, y]^T + M[:, 2]. Images are warped by inverse mapping with the
bilinear sampler of ``sampling.py`` (differentiable in the image).

Three alignments (every function returns the matrix and an ``ok`` flag; non-ok faces get
a NaN matrix, a ``fill_value`` image and NaN landmarks, so they cannot pass for aligned):

(a) JAA-Net, 200 x 200 with box enlargement 2.9 (docs/reference/face_geometry.md, "JAA-Net
    alignment").
    Five points from 49-point landmarks: eye centres (mean of 19-24 and of 25-30), nose
    point 13, mouth corners 31 and 37. ``method='rule'`` (default) rebuilds the transform
    the JAA-Net preprocessing defines: rotate so the eye-centre vector is horizontal; take
    the bounding box of the five rotated points; its longer side times 2.9 is the crop side
    2h; scale s = (S - 1) / (2h) so the crop spans pixels 0..S-1, centred on the box centre.
    ``method='template'`` fits (least squares, ``umeyama``) the five points to
    ``JAANET_TEMPLATE_200``, the rule applied to faujax's symmetric mean face
    (``mean_face.py``). Derivation of that template: on the mean face the eyes are level
    (no rotation); the five points span x in [70, 130] (60 px, the longer side) and y in
    [85.83, 145]; so h = 0.5 * 2.9 * 60 = 87, s = 199 / 174 = 1.1437, and the box centre
    (100, 115.42) goes to (99.5, 99.5): eyes at (65.19, 65.67) and (133.81, 65.67), nose at
    (99.5, 95.59), mouth corners at (78.91, 133.33) and (120.09, 133.33). The inter-ocular
    distance is 68.62 px = 199 / 2.9 (here the eye distance is the box's longer side). Any
    similarity transform of the mean face comes out identical with either method; on other
    faces the template method is the least-squares (noise-robust) variant.
(b) Emotion-GCN (Sec. IV-B; docs/reference/face_geometry.md, "Emotion-GCN alignment"): eye
    centres (mean of 68-point 36-41 and 42-47); rotate about their midpoint by -theta, theta =
    atan2(ry - ly, rx - lx), so the eyes are level; crop the face box and resize to 227 x 227.
    The box (x0, y0, x1, y1) is given in source pixels (the dataset's face box) or, when absent,
    faujax's choice: the bounding box of the rotated landmarks, made square on its centre and
    enlarged by ``box_scale`` (default 1.25). A non-square given box yields different x / y
    scales (an affine, not a similarity, exactly as cropping then resizing does).
(c) Generic 5-point template at 224: eye centres, nose tip (68-pt 30), mouth corners
    (48, 54) fitted by ``umeyama`` to ``FIVE_POINT_TEMPLATE_224``, the widely used
    ArcFace 112 x 112 template (left eye (38.2946, 51.6963), right eye (73.5318,
    51.5014), nose (56.0252, 71.7366), mouth corners (41.5493, 92.3655), (70.7299,
    92.2041)) scaled by 2.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from faujax.geometry import conversions
from faujax.geometry import mean_face
from faujax.geometry import sampling

_EPS = 1e-6
# Eye centres closer than this (pixels) make a face degenerate: not ok.
MIN_EYE_DISTANCE = 1.0


class Aligned(NamedTuple):
  """Result of an alignment: image (h, w, C), landmarks (P, 2), matrix (2, 3), ok ()."""
  image: chex.Array
  landmarks: chex.Array
  matrix: chex.Array
  ok: chex.Array


# --------------------------------------------------------------------------- transforms


def umeyama(src: chex.Array, dst: chex.Array,
            weights: chex.Array | None = None) -> tuple[chex.Array, chex.Array]:
  """Least-squares similarity (rotation, isotropic scale, translation; no reflection).

  Minimises sum_i w_i |s R src_i + t - dst_i|^2 (Umeyama 1991, specialised to 2-D, where
  s R = [[a, -b], [b, a]] and the optimum is a + ib = sum w conj(src_c) dst_c / sum w |src_c|^2
  over centred complex points).

  Args:
    src: (..., N, 2) points.
    dst: (..., N, 2) or (N, 2) target points.
    weights: optional (..., N) or (N,) non-negative weights.

  Returns:
    matrix (..., 2, 3) and ok (...): False for non-finite input or (near-)coincident source
    points, where the matrix is NaN.
  """
  chex.assert_axis_dimension(src, -1, 2)
  chex.assert_axis_dimension(dst, -1, 2)
  src = jnp.asarray(src, jnp.float32)
  dst = jnp.asarray(dst, jnp.float32)
  if weights is None:
    weights = jnp.ones(src.shape[:-1], jnp.float32)
  weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), src.shape[:-1])
  finite = (jnp.all(jnp.isfinite(src), axis=(-2, -1)) & jnp.all(jnp.isfinite(dst), axis=(-2, -1))
            & jnp.all(jnp.isfinite(weights), axis=-1))
  src_s = jnp.where(jnp.isfinite(src), src, 0.0)
  dst_s = jnp.where(jnp.isfinite(dst), dst, 0.0)
  wsum = jnp.sum(weights, axis=-1, keepdims=True)
  wn = weights / jnp.where(wsum > 0, wsum, 1.0)
  mu_s = jnp.sum(wn[..., None] * src_s, axis=-2)
  mu_d = jnp.sum(wn[..., None] * dst_s, axis=-2)
  sc = src_s - mu_s[..., None, :]
  dc = dst_s - mu_d[..., None, :]
  var = jnp.sum(wn * jnp.sum(sc * sc, axis=-1), axis=-1)
  a = jnp.sum(wn * (sc[..., 0] * dc[..., 0] + sc[..., 1] * dc[..., 1]), axis=-1)
  b = jnp.sum(wn * (sc[..., 0] * dc[..., 1] - sc[..., 1] * dc[..., 0]), axis=-1)
  extent = jnp.max(jnp.abs(sc), axis=(-2, -1))
  ok = finite & (var > (_EPS * jnp.maximum(extent, 1.0)) ** 2) & (wsum[..., 0] > 0)
  safe_var = jnp.where(ok, var, 1.0)
  a, b = a / safe_var, b / safe_var
  lin = jnp.stack([jnp.stack([a, -b], -1), jnp.stack([b, a], -1)], -2)
  t = mu_d - jnp.einsum('...ij,...j->...i', lin, mu_s)
  m = jnp.concatenate([lin, t[..., None]], axis=-1)
  return jnp.where(ok[..., None, None], m, jnp.nan), ok


def apply_transform(matrix: chex.Array, points: chex.Array) -> chex.Array:
  """Maps (..., N, 2) points with (..., 2, 3) matrices -> (..., N, 2)."""
  chex.assert_axis_dimension(points, -1, 2)
  chex.assert_shape(matrix, (..., 2, 3))
  return jnp.einsum('...ij,...nj->...ni', matrix[..., :2], points) + matrix[..., None, :, 2]


def invert_transform(matrix: chex.Array) -> chex.Array:
  """Inverse of (..., 2, 3) affine matrices (NaN where singular)."""
  chex.assert_shape(matrix, (..., 2, 3))
  lin = matrix[..., :2]
  det = lin[..., 0, 0] * lin[..., 1, 1] - lin[..., 0, 1] * lin[..., 1, 0]
  det = jnp.where(jnp.abs(det) > 1e-12, det, jnp.nan)
  inv = jnp.stack([jnp.stack([lin[..., 1, 1], -lin[..., 0, 1]], -1),
                   jnp.stack([-lin[..., 1, 0], lin[..., 0, 0]], -1)], -2) / det[..., None, None]
  t = -jnp.einsum('...ij,...j->...i', inv, matrix[..., 2])
  return jnp.concatenate([inv, t[..., None]], axis=-1)


@functools.partial(jax.jit, static_argnames=('out_size',))
def warp_image(image: chex.Array, matrix: chex.Array, out_size: int | Sequence[int],
               fill_value: float = 0.0) -> chex.Array:
  """Warps an (H, W, C) or (H, W) image so that source point p lands at matrix @ p.

  Returns an (h, w, C) / (h, w) image; pixels that map outside the source get
  ``fill_value``; a NaN matrix yields an all-``fill_value`` image.
  """
  chex.assert_rank(image, {2, 3})
  chex.assert_shape(matrix, (2, 3))
  oh, ow = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size)
  grid = sampling.pixel_grid(oh, ow)
  src = apply_transform(invert_transform(matrix), grid.reshape(-1, 2)).reshape(oh, ow, 2)
  return sampling.bilinear_sample(image, src, fill_value)


def _finish(image, landmarks, matrix, ok, out_size, fill_value) -> Aligned:
  matrix = jnp.where(ok, matrix, jnp.nan)
  warped = warp_image(image, matrix, out_size, fill_value)
  return Aligned(warped, apply_transform(matrix, landmarks), matrix, ok)


# --------------------------------------------------------------------------- five points


def eye_centres(landmarks: chex.Array) -> tuple[chex.Array, chex.Array]:
  """Eye centres (subject's right = image left first) of (..., P, 2) landmarks -> 2 x (..., 2).

  Mean of 68-point 36-41 and 42-47 (= 49-point 19-24 and 25-30).
  """
  p = conversions.num_points_of(landmarks)
  landmarks = jnp.asarray(landmarks)
  right = conversions.points_index(np.arange(36, 42), p)
  left = conversions.points_index(np.arange(42, 48), p)
  return landmarks[..., right, :].mean(-2), landmarks[..., left, :].mean(-2)


def five_points(landmarks: chex.Array) -> chex.Array:
  """(..., 5, 2): eye centres, nose tip (68-pt 30 = 49-pt 13), mouth corners (48, 54)."""
  p = conversions.num_points_of(landmarks)
  landmarks = jnp.asarray(landmarks, jnp.float32)
  r_eye, l_eye = eye_centres(landmarks)
  rest = landmarks[..., conversions.points_index(np.array([30, 48, 54]), p), :]
  return jnp.concatenate([r_eye[..., None, :], l_eye[..., None, :], rest], axis=-2)


def _rotation_to_level(r_eye: chex.Array, l_eye: chex.Array):
  d = l_eye - r_eye
  dist = jnp.sqrt(jnp.sum(d * d, axis=-1))
  ok = jnp.isfinite(dist) & (dist > MIN_EYE_DISTANCE)
  safe = jnp.where(ok, dist, 1.0)
  cos, sin = d[..., 0] / safe, d[..., 1] / safe
  rot = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)
  return rot, ok


def _eyes_apart(landmarks: chex.Array) -> chex.Array:
  return _rotation_to_level(*eye_centres(jnp.asarray(landmarks, jnp.float32)))[1]


# --------------------------------------------------------------------------- JAA-Net


def jaanet_transform(landmarks: chex.Array, box_enlarge: float = 2.9,
                     image_size: int = 200) -> tuple[chex.Array, chex.Array]:
  """The JAA-Net alignment rule (module docstring (a)) -> (matrix (..., 2, 3), ok (...))."""
  pts = five_points(landmarks)
  rot, ok = _rotation_to_level(pts[..., 0, :], pts[..., 1, :])
  rotated = jnp.einsum('...ij,...nj->...ni', rot, pts)
  lo, hi = rotated.min(-2), rotated.max(-2)
  centre = (lo + hi) / 2
  half = 0.5 * box_enlarge * jnp.max(hi - lo, axis=-1)
  ok = ok & jnp.all(jnp.isfinite(pts), axis=(-2, -1)) & (half > _EPS)
  scale = (image_size - 1) / 2.0 / jnp.where(ok, half, 1.0)
  lin = scale[..., None, None] * rot
  t = scale[..., None] * (half[..., None] - centre)
  m = jnp.concatenate([lin, t[..., None]], axis=-1)
  return jnp.where(ok[..., None, None], m, jnp.nan), ok


@functools.cache
def _jaanet_template(box_enlarge: float = 2.9, image_size: int = 200) -> np.ndarray:
  m, _ = jaanet_transform(jnp.asarray(mean_face.MEAN_FACE_68), box_enlarge, image_size)
  return np.asarray(apply_transform(m, five_points(jnp.asarray(mean_face.MEAN_FACE_68))))


def __getattr__(name: str):
  # JAANET_TEMPLATE_200 is computed with JAX on first use, not at import: importing faujax must
  # not initialise the XLA backend (jax.distributed.initialize has to come first).
  if name == 'JAANET_TEMPLATE_200':
    return _jaanet_template()
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

FIVE_POINT_TEMPLATE_224: np.ndarray = 2.0 * np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def align_jaanet(image: chex.Array, landmarks: chex.Array, method: str = 'rule',
                 box_enlarge: float = 2.9, image_size: int = 200,
                 fill_value: float = 0.5) -> Aligned:
  """JAA-Net 200 x 200 alignment of one (H, W, C) image and its (P, 2) landmarks.

  ``fill_value`` 0.5 is JAA-Net's grey border (128/255) for images scaled to [0, 1].
  ``method`` is 'rule' or 'template' (module docstring (a)).
  """
  chex.assert_rank(image, {2, 3})
  if method == 'rule':
    m, ok = jaanet_transform(landmarks, box_enlarge, image_size)
  elif method == 'template':
    template = _jaanet_template()
    if box_enlarge != 2.9 or image_size != 200:
      template = _jaanet_template(box_enlarge, image_size)
    m, ok = umeyama(five_points(landmarks), jnp.asarray(template))
    ok = ok & _eyes_apart(landmarks)
  else:
    raise ValueError(f"method: expected 'rule' or 'template', got {method!r}.")
  return _finish(image, landmarks, m, ok, image_size, fill_value)


# --------------------------------------------------------------------------- Emotion-GCN


def emotiongcn_transform(landmarks: chex.Array, box: chex.Array | None = None,
                         out_size: int = 227, box_scale: float = 1.25
                         ) -> tuple[chex.Array, chex.Array]:
  """Emotion-GCN eye-level rotation then box crop and resize (module docstring (b)).

  Args:
    landmarks: (..., P, 2) landmarks (the eyes must be present).
    box: optional (..., 4) face box (x0, y0, x1, y1) in source pixels, numpy-slice style
      (covers pixels x0 .. x1 - 1), e.g. AffectNet's (x, y, x + width, y + height).
    out_size: output side.
    box_scale: enlargement of the landmark box when ``box`` is None.

  Returns:
    matrix (..., 2, 3) and ok (...).
  """
  landmarks = jnp.asarray(landmarks, jnp.float32)
  r_eye, l_eye = eye_centres(landmarks)
  rot, ok = _rotation_to_level(r_eye, l_eye)
  mid = (r_eye + l_eye) / 2
  # Rotation about the eye midpoint: p -> R (p - mid) + mid.
  rot_t = mid - jnp.einsum('...ij,...j->...i', rot, mid)
  rot_m = jnp.concatenate([rot, rot_t[..., None]], axis=-1)
  if box is None:
    finite_pts = jnp.where(jnp.isfinite(landmarks), landmarks, jnp.nan)
    rotated = apply_transform(rot_m, finite_pts)
    lo, hi = jnp.nanmin(rotated, axis=-2), jnp.nanmax(rotated, axis=-2)
    centre = (lo + hi) / 2
    side = box_scale * jnp.max(hi - lo, axis=-1)
    box = jnp.concatenate([centre - side[..., None] / 2, centre + side[..., None] / 2], axis=-1)
  else:
    box = jnp.asarray(box, jnp.float32)
    chex.assert_axis_dimension(box, -1, 4)
  wh = box[..., 2:] - box[..., :2]
  ok = ok & jnp.all(jnp.isfinite(box), -1) & jnp.all(wh > _EPS, -1)
  ok = ok & jnp.all(jnp.isfinite(r_eye), -1) & jnp.all(jnp.isfinite(l_eye), -1)
  # Crop then resize: the box is numpy-slice style (pixels x0 .. x1 - 1), i.e. its edges
  # are x0 - 0.5 and x1 - 0.5; they map to the output edges -0.5 and out_size - 0.5:
  # u = s (x - x0 + 0.5) - 0.5 with s = out_size / (x1 - x0) (s = 1 is plain slicing).
  s = out_size / jnp.where(ok[..., None], wh, 1.0)
  crop_lin = s[..., :, None] * jnp.eye(2)
  crop_t = s * (0.5 - box[..., :2]) - 0.5
  lin = jnp.einsum('...ij,...jk->...ik', crop_lin, rot)
  t = jnp.einsum('...ij,...j->...i', crop_lin, rot_t) + crop_t
  m = jnp.concatenate([lin, t[..., None]], axis=-1)
  return jnp.where(ok[..., None, None], m, jnp.nan), ok


def align_emotiongcn(image: chex.Array, landmarks: chex.Array, box: chex.Array | None = None,
                     out_size: int = 227, box_scale: float = 1.25,
                     fill_value: float = 0.0) -> Aligned:
  """Emotion-GCN alignment of one (H, W, C) image and its (P, 2) landmarks to 227 x 227."""
  chex.assert_rank(image, {2, 3})
  m, ok = emotiongcn_transform(landmarks, box, out_size, box_scale)
  return _finish(image, landmarks, m, ok, out_size, fill_value)


# --------------------------------------------------------------------------- 5-point


def align_five_point(image: chex.Array, landmarks: chex.Array, out_size: int = 224,
                     template: chex.Array | None = None, fill_value: float = 0.0) -> Aligned:
  """Generic 5-point similarity alignment (module docstring (c)) of one image."""
  chex.assert_rank(image, {2, 3})
  if template is None:
    template = FIVE_POINT_TEMPLATE_224 * (out_size / 224.0)
  m, ok = umeyama(five_points(landmarks), jnp.asarray(template, jnp.float32))
  ok = ok & _eyes_apart(landmarks)
  return _finish(image, landmarks, m, ok, out_size, fill_value)


def check_aligned(result: Aligned, name: str = 'landmarks') -> Aligned:
  """Host-level guard: raises ValueError if any face in ``result`` failed to align."""
  bad = ~np.asarray(result.ok)
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    raise ValueError(f'{name}: cannot align face {where}: non-finite landmarks or a '
                     f'degenerate face (coincident eye centres / points).')
  return result

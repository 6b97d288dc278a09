"""Host-side face alignment: a frame and its landmarks -> the face image a dataset stores.

The dataset builders store their faces with these (BP4D / DISFA / EmotioNet: ``align_jaanet``;
AffectNet: ``align_emotion_gcn``), and inference (``faujax.faces``) makes the same stored face
from a user's frame, so a model sees at prediction time what it saw in training. Imported
released models use their authors' data tools' alignment (``align_eye_level``) and test
transform (``resize_centre_crop``). Pixel convention: pixel (row i, column j) has centre
(x, y) = (j, i), the faujax geometry convention (``faujax.geometry.alignment``).
"""

from __future__ import annotations

import functools

import chex
import jax
import numpy as np
from PIL import Image

from faujax.geometry import alignment

JAANET_SIZE = 200  # the JAA-Net face side of the AU builders


def centre_crop_resize(image: np.ndarray, size: int = JAANET_SIZE) -> np.ndarray:
  """Centre square crop of an (H, W, 3) uint8 image, resized to (size, size, 3)."""
  h, w = image.shape[:2]
  s = min(h, w)
  top, left = (h - s) // 2, (w - s) // 2
  crop = image[top:top + s, left:left + s]
  if s == size:
    return crop
  return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


def align_jaanet(image: np.ndarray, landmarks: np.ndarray,
                 size: int = JAANET_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """Aligns one face with faujax's geometry module (JAA-Net rule alignment, host-side).

  Calls ``faujax.geometry.alignment.align_jaanet`` (box enlargement 2.9, grey 128 border) on the
  image scaled to [0, 1], jitted per image shape.

  Args:
    image: uint8 (H, W, 3).
    landmarks: float32 (P, 2), P in (68, 66, 49), (x, y) in the image's pixels.
    size: output side (200, the JAA-Net face size).

  Returns:
    (aligned uint8 (size, size, 3), float32 (P, 2) landmarks in the aligned image's pixels).

  Raises:
    ValueError: degenerate or non-finite landmarks (the face cannot be aligned).
  """
  chex.assert_rank(image, 3)
  chex.assert_rank(landmarks, 2)
  out = _jitted_align(size)(np.asarray(image, np.float32) / 255.0,
                            np.asarray(landmarks, np.float32))
  alignment.check_aligned(out)
  face = np.clip(np.rint(np.asarray(out.image) * 255.0), 0, 255).astype(np.uint8)
  return face, np.asarray(out.landmarks, np.float32)


@functools.lru_cache(maxsize=None)
def _jitted_align(size: int):
  return jax.jit(
      lambda img, lm: alignment.align_jaanet(img, lm, image_size=size, fill_value=128 / 255))


def alignable(landmarks: np.ndarray) -> np.ndarray:
  """bool (M,): which (M, P, 2) landmark sets give a valid JAA-Net transform (eyes apart)."""
  chex.assert_rank(landmarks, 3)
  m = landmarks.shape[0]
  bucket = 1 << max(m - 1, 0).bit_length()  # pad to a power of two: few shapes, few compiles.
  padded = np.full((bucket,) + landmarks.shape[1:], np.nan, np.float32)
  padded[:m] = landmarks
  return np.asarray(_jitted_transform_ok(padded), bool)[:m]


@jax.jit
def _jitted_transform_ok(landmarks):
  return alignment.jaanet_transform(landmarks)[1]


def emotion_gcn_matrix(
    landmarks: np.ndarray,
    box: tuple[float, float, float, float],
    size: int,
) -> np.ndarray:
  """The Emotion-GCN alignment as one (2, 3) affine map (Emotion-GCN sec. IV-B).

  Rotation about the eye midpoint so that the eyes (mean of 68-point 36-41 and 42-47)
  are level, then the face box crop resized to (size, size): computed by
  ``faujax.geometry.alignment.emotiongcn_transform``. Pixel-index coordinates (pixel
  centres at integers), the faujax geometry convention.

  Args:
    landmarks: (68, 2) float (x, y) in source-image pixels.
    box: AffectNet face box (face_x, face_y, face_width, face_height) in source pixels.
    size: output side length.

  Returns:
    float64 (2, 3) matrix mapping source [x, y, 1] to aligned-image pixels.

  Raises:
    ValueError: for a degenerate face (coincident eye centres, empty box, non-finite).
  """
  chex.assert_shape(landmarks, (68, 2))
  x0, y0, w, h = (float(v) for v in box)
  matrix, ok = alignment.emotiongcn_transform(
      np.asarray(landmarks, np.float32), np.array([x0, y0, x0 + w, y0 + h], np.float32), size)
  if not bool(ok):
    raise ValueError(f'Cannot align face: coincident eye centres or an empty box {box}.')
  return np.asarray(matrix, np.float64)


def align_emotion_gcn(
    image: np.ndarray,
    landmarks: np.ndarray,
    box: tuple[float, float, float, float],
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Eye-level rotation, face-box crop and resize (Emotion-GCN sec. IV-B).

  The matrix comes from ``emotion_gcn_matrix``; the warp is PIL's bilinear affine
  resampling (C speed for full-resolution AffectNet images). Pixels outside the
  source image are black.

  Args:
    image: uint8 (H, W, 3) source image.
    landmarks: (68, 2) float (x, y) in source pixels.
    box: (face_x, face_y, face_width, face_height) in source pixels.
    size: output side length (227 for Emotion-GCN).

  Returns:
    (aligned uint8 (size, size, 3), landmarks float32 (68, 2) in aligned pixels).
  """
  chex.assert_rank(image, 3)
  chex.assert_type(image, np.uint8)
  forward = emotion_gcn_matrix(landmarks, box, size)
  aligned = _warp(image, forward, size, Image.Resampling.BILINEAR)
  points = landmarks @ forward[:, :2].T + forward[:, 2]
  return aligned, points.astype(np.float32)


def resize_centre_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
  """torchvision's ``Resize(size)`` then ``CenterCrop(size)`` on a PIL image: the shorter side
  resized to ``size`` (PIL bilinear, the longer one to ``int(size * long / short)``), then the
  centre ``size`` x ``size`` square (offset ``int(round((L - size) / 2))``).

  Returns:
    (uint8 (size, size, 3), scale, offset (2,)): a point p of ``image`` is at
    ``p * scale - offset`` in the result.
  """
  h, w = image.shape[:2]
  if w <= h:
    new_w, new_h = size, int(size * h / w)
  else:
    new_w, new_h = int(size * w / h), size
  resized = image if (new_w, new_h) == (w, h) else np.asarray(
      Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
  top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
  crop = np.ascontiguousarray(resized[top:top + size, left:left + size])
  return crop, new_w / w, np.array([left, top], np.float32) * 1.0


# The eye placement of imutils' FaceAligner, as the MACG code's tool/face_align/dlib_main.py uses
# it (desiredLeftEye (0.35, 0.35), desiredFaceWidth 256).
EYE_LEVEL_EYE = (0.35, 0.35)


def eye_level_matrix(landmarks: np.ndarray, size: int = 256) -> np.ndarray:
  """The (2, 3) map of imutils' ``FaceAligner.align`` (MACG's data tool) for 68 landmarks.

  Eye centres = the means of 68-point 36-41 and 42-47, truncated to integer pixels as imutils
  does; the rotation (about their integer midpoint) levels them, the scale puts them
  ``(1 - 2 * 0.35) * size`` apart, and the midpoint lands at ``(size / 2, 0.35 * size)``.

  Raises:
    ValueError: coincident eye centres or non-finite landmarks.
  """
  lm = np.asarray(landmarks, np.float64)
  chex.assert_shape(lm, (68, 2))
  if not np.all(np.isfinite(lm)):
    raise ValueError('Cannot align a face with non-finite landmarks.')
  right = lm[36:42].mean(0).astype(np.int64)  # the subject's right eye (image left)
  left = lm[42:48].mean(0).astype(np.int64)
  dx, dy = float(right[0] - left[0]), float(right[1] - left[1])
  dist = np.hypot(dx, dy)
  if dist < alignment.MIN_EYE_DISTANCE:
    raise ValueError('Cannot align a face: its eye centres coincide.')
  angle = np.degrees(np.arctan2(dy, dx)) - 180.0
  scale = (1.0 - 2 * EYE_LEVEL_EYE[0]) * size / dist
  cx, cy = (left[0] + right[0]) // 2, (left[1] + right[1]) // 2
  a, b = scale * np.cos(np.radians(angle)), scale * np.sin(np.radians(angle))
  # cv2.getRotationMatrix2D((cx, cy), angle, scale), then the translation imutils adds.
  return np.array([[a, b, (1 - a) * cx - b * cy + size * 0.5 - cx],
                   [-b, a, b * cx + (1 - a) * cy + size * EYE_LEVEL_EYE[1] - cy]])


def _warp(image: np.ndarray, forward: np.ndarray, size: int, resample) -> np.ndarray:
  """``image`` warped by the (2, 3) pixel-index map ``forward`` into (size, size), black fill."""
  lin, t = forward[:, :2], forward[:, 2]
  t_cont = t + 0.5 - lin @ np.array([0.5, 0.5])  # PIL samples at pixel centres + 0.5
  inv_lin = np.linalg.inv(lin)
  inverse = np.concatenate([inv_lin, (-inv_lin @ t_cont)[:, None]], axis=1)
  warped = Image.fromarray(image).transform((size, size), Image.Transform.AFFINE,
                                            data=tuple(inverse.reshape(-1)), resample=resample,
                                            fillcolor=(0, 0, 0))
  return np.asarray(warped, np.uint8)


# MACG's data tool (tool/face_align/dlib_main.py) resizes every image to this width (imutils
# ``resize``, OpenCV's INTER_AREA), finds faces and landmarks in its grey version with dlib's
# HOG detector upsampled this many times, and aligns in that frame.
EYE_LEVEL_FRAME_WIDTH = 800
EYE_LEVEL_UPSAMPLE = 2


def _shrink_weights(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of OpenCV's ``INTER_AREA`` shrinking one axis: the mean over each
  output pixel's footprint [d s, (d + 1) s), s = n_in / n_out >= 1."""
  scale = n_in / n_out
  d = np.arange(n_out, dtype=np.float64)
  edges = np.arange(n_in + 1, dtype=np.float64)
  lo, hi = d * scale, (d + 1) * scale
  overlap = np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1])
  return np.clip(overlap, 0.0, None) / scale


def _enlarge_taps(n_in: int, n_out: int) -> tuple[np.ndarray, ...]:
  """OpenCV's ``INTER_AREA`` enlarging one axis: for each output pixel the two source pixels
  and their 11-bit fixed-point weights (its area-linear coefficients, in float32 as OpenCV)."""
  d = np.arange(n_out)
  src = np.floor(d * (n_in / n_out)).astype(np.int64)
  frac = ((d + 1) - (src + 1) * (n_out / n_in)).astype(np.float32)
  frac = np.where(frac <= 0, np.float32(0), frac - np.floor(frac)).astype(np.float32)
  w0 = np.rint((np.float32(1) - frac) * np.float32(2048)).astype(np.int64)
  w1 = np.rint(frac * np.float32(2048)).astype(np.int64)
  return np.clip(src, 0, n_in - 1), np.clip(src + 1, 0, n_in - 1), w0, w1


def area_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
  """``cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)`` of a uint8 (H, W, C)
  image. Enlarging both axes: OpenCV's fixed-point arithmetic, equal to its output (5.1, SIMD
  rounding). Shrinking both: the exact area mean, rounded (OpenCV sums in float32: a pixel may
  differ by 1 grey level). Mixed: shrinks then enlarges.

  Raises:
    ValueError: a size < 1.
  """
  chex.assert_rank(image, 3)
  h, w, c = image.shape
  width, height = int(width), int(height)
  if width < 1 or height < 1:
    raise ValueError(f'area_resize: size ({width}, {height}) must be positive.')
  if width <= w and height <= h:
    out = (_shrink_weights(h, height) @ image.reshape(h, w * c).astype(np.float64))
    out = np.einsum('Hwc,Ww->HWc', out.reshape(height, w, c), _shrink_weights(w, width),
                    optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
  if width < w or height < h:  # one axis shrinks, the other grows
    return area_resize(area_resize(image, min(width, w), min(height, h)), width, height)
  x = image.astype(np.int64)
  s0, s1, a0, a1 = _enlarge_taps(w, width)
  rows = x[:, s0] * a0[None, :, None] + x[:, s1] * a1[None, :, None]  # (h, width, C), 2^11
  t0, t1, b0, b1 = _enlarge_taps(h, height)
  b0, b1 = b0[:, None, None], b1[:, None, None]
  out = (((b0 * (rows[t0] >> 4)) >> 16) + ((b1 * (rows[t1] >> 4)) >> 16) + 2) >> 2
  return np.clip(out, 0, 255).astype(np.uint8)


def grey(image: np.ndarray) -> np.ndarray:
  """OpenCV's ``cvtColor(..., COLOR_RGB2GRAY)`` of a uint8 (H, W, 3) RGB image: 0.299 R +
  0.587 G + 0.114 B in its 15-bit fixed point (OpenCV 5.1), (H, W) uint8."""
  chex.assert_rank(image, 3)
  rgb = image.astype(np.int64)
  return ((rgb[..., 0] * 9798 + rgb[..., 1] * 19235 + rgb[..., 2] * 3735 + 16384) >> 15).astype(
      np.uint8)


def eye_level_frame(image: np.ndarray) -> tuple[np.ndarray, float]:
  """The frame the MACG data tool works in: ``image`` resized to ``EYE_LEVEL_FRAME_WIDTH`` px
  wide (imutils ``resize(width=800)``: height ``int(h * 800 / w)``, INTER_AREA), and the scale
  from ``image``'s pixels to the frame's."""
  h, w = image.shape[:2]
  scale = EYE_LEVEL_FRAME_WIDTH / float(w)
  if w == EYE_LEVEL_FRAME_WIDTH:
    return image, 1.0
  return area_resize(image, EYE_LEVEL_FRAME_WIDTH, int(h * scale)), scale


def align_eye_level(image: np.ndarray, landmarks: np.ndarray,
                    size: int = 256) -> tuple[np.ndarray, np.ndarray]:
  """The MACG data tool's aligned face: ``image`` resized as the tool does
  (``eye_level_frame``), then warped by ``eye_level_matrix`` of the landmarks (68, 2, in
  ``image``'s pixels) with PIL's bicubic (the tool: OpenCV's cubic; within 1 grey level on
  average on the same frame and landmarks).

  Returns:
    (aligned uint8 (size, size, 3), landmarks float32 (68, 2) in aligned pixels).
  """
  chex.assert_rank(image, 3)
  frame, scale = eye_level_frame(image)
  # Rounded to 1e-3 px so that landmarks found in the frame and scaled back to float32 image
  # pixels (``faces.detect``) come back as the frame's integer pixels (the matrix truncates).
  lm = np.round(np.asarray(landmarks, np.float64) * scale, 3)
  forward = eye_level_matrix(lm, size)
  points = lm @ forward[:, :2].T + forward[:, 2]
  return _warp(frame, forward, size, Image.Resampling.BICUBIC), points.astype(np.float32)

"""Device-side augmentation: pure, jit-compiled JAX functions keyed by a PRNG key, vmapped over the batch.

Each image gets ONE affine map from output pixels to input pixels that composes a random crop
(side = scale * min(H, W), scale ~ U(crop_scale), centre shifted so the crop stays inside the image),
the resize to `image_size`, a small rotation and an optional horizontal flip:

  p_in = c_in + k R(theta) F (p_out - c_out),   k = crop side / image_size, F = diag(-1, 1) if flip

The image is resampled bilinearly (``interpolation='nearest'``: the nearest pixel in training, as
torchvision's ``RandomRotation`` default, which the public Emotion-GCN ``main.py`` line 128 uses;
evaluation stays bilinear, as that code's test-time ``Resize``) with ``jax.scipy.ndimage.map_coordinates``; the landmarks go
through the inverse map of the same matrix, and a flip re-indexes them with
``faujax.geometry.schemes.flip_permutation`` so index i keeps naming the same anatomical point
(this swaps the left/right AU regions built from them). Then colour jitter (brightness, contrast,
saturation) and normalisation by mean / std. Evaluation is the deterministic centre crop
(`eval_crop_scale`, default 1 = the whole image) resized to `image_size`.

With ``align='five_point'`` the crop is taken from the face aligned by its landmarks instead of
from the image: the least-squares similarity that puts the eye centres, nose tip and mouth corners
on the 5-point template (``faujax.geometry.alignment``, scaled by ``align_zoom`` about the centre;
< 1 shows more forehead and chin) is composed with the random crop, rotation and flip, so the
image is still resampled once. This is the alignment step of the AU pipelines (JAA-Net,
EAC-Net) done on the device; a face whose landmarks cannot be aligned keeps the plain crop.

Config keys (``default_augment_config``): image_size, crop_scale (min, max), flip, rotation_deg,
brightness, contrast, saturation, mean, std; optional eval_crop_scale, align, align_zoom,
interpolation.
Pixel convention: pixel (row i, column j) has centre (x, y) = (j, i); landmarks are (x, y).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections

from faujax import config_schema

from faujax.geometry import alignment
from faujax.geometry import schemes


ALIGN_MODES = ('none', 'five_point')
# Resampling of the warp -> map_coordinates spline order.
INTERPOLATIONS: dict[str, int] = {'bilinear': 1, 'nearest': 0}


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """``config.augment``: the on-device preprocessing of every batch (train and eval).

  Attributes:
    image_size: model input side S (pixels).
    crop_scale: (min, max) side of the random training crop, as a fraction of the (aligned) face.
    flip: random horizontal flip with landmark re-indexing (training).
    rotation_deg: random rotation in [-rotation_deg, rotation_deg] (training).
    brightness, contrast, saturation: colour-jitter strengths in [0, 1) (training).
    mean, std: per-channel normalisation of [0, 1] pixels.
    eval_crop_scale: side of the centre crop at evaluation.
    align: 'none' (the builder stores aligned faces) or 'five_point' (similarity alignment of the
      eye centres, nose tip and mouth corners on the device; ``docs/reference/face_geometry.md``).
    align_zoom: scale of the aligned face in the crop (1 = the template's size).
    interpolation: 'bilinear' or 'nearest' resampling of the training warp (evaluation:
      bilinear).
  """
  image_size: int = 112
  crop_scale: tuple[float, float] = (0.8, 1.0)
  flip: bool = True
  rotation_deg: float = 10.0
  brightness: float = 0.2
  contrast: float = 0.2
  saturation: float = 0.2
  mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
  std: tuple[float, float, float] = (0.5, 0.5, 0.5)
  eval_crop_scale: float = 1.0
  align: str = 'none'
  align_zoom: float = 1.0
  interpolation: str = 'bilinear'

  def __post_init__(self):
    check = config_schema.check
    size = self.image_size
    check(not isinstance(size, bool) and isinstance(size, int) and size >= 8, 'image_size', size,
          'an int >= 8')
    lo, hi = (float(v) for v in self.crop_scale)
    check(0 < lo <= hi <= 1, 'crop_scale', self.crop_scale, '(min, max) with 0 < min <= max <= 1')
    check(len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0, 'mean/std',
          (self.mean, self.std), '3 entries each, std > 0')
    check(0 < self.eval_crop_scale <= 1, 'eval_crop_scale', self.eval_crop_scale, 'a value in (0, 1]')
    for k in ('brightness', 'contrast', 'saturation'):
      check(0 <= getattr(self, k) < 1, k, getattr(self, k), 'a value in [0, 1)')
    check(self.rotation_deg >= 0, 'rotation_deg', self.rotation_deg, 'a value >= 0')
    check(self.align in ALIGN_MODES, 'align', self.align, f'one of {ALIGN_MODES}')
    check(0.2 <= self.align_zoom <= 2.0, 'align_zoom', self.align_zoom, 'a value in [0.2, 2]')
    check(self.interpolation in INTERPOLATIONS, 'interpolation', self.interpolation,
          f'one of {tuple(INTERPOLATIONS)}')


def default_augment_config() -> ml_collections.ConfigDict:
  """``config.augment`` with every key's default (``AugmentConfig``)."""
  return config_schema.section(AugmentConfig)


def _params(cfg: Any) -> AugmentConfig:
  if isinstance(cfg, AugmentConfig):
    return cfg
  return config_schema.read(AugmentConfig, cfg, 'augment')


def hflip(images: jax.Array, landmarks: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mirrors images (..., H, W, C) and landmarks (..., P, 2): x -> W - 1 - x, points re-indexed."""
  width = images.shape[-2]
  perm = jnp.asarray(schemes.flip_permutation(landmarks.shape[-2]))
  flipped = landmarks.at[..., 0].set(width - 1 - landmarks[..., 0])
  return images[..., ::-1, :], flipped[..., perm, :]


def _alignment(landmarks: jax.Array, out_size: int, zoom: jax.Array):
  """(2, 3) similarity input -> output pixels putting the 5 points on the template, and ok."""
  template = jnp.asarray(alignment.FIVE_POINT_TEMPLATE_224) * (out_size / 224.0)
  centre = (out_size - 1) / 2.0
  template = (template - centre) * zoom + centre
  return alignment.umeyama(alignment.five_points(landmarks), template)


def _affine(key, shape, out_size: int, q: dict[str, jax.Array], train: bool,
            align: jax.Array | None = None):
  """Matrix M (2, 2), offset c_in (2,) and flip flag of the output -> input map of one image.

  Without alignment the crop is taken from the image; with an input -> output similarity
  ``align`` (2, 3) from the landmarks, the same crop / rotation / flip act on the aligned frame.
  """
  h, w = shape
  if not train:
    scale, theta, flip = q['eval_crop_scale'], 0.0, jnp.asarray(False)
    unit_shift = jnp.zeros(2)
  else:
    k_scale, k_rot, k_flip, k_shift = jax.random.split(key, 4)
    scale = jax.random.uniform(k_scale, (), minval=q['crop_lo'], maxval=q['crop_hi'])
    theta = jnp.deg2rad(q['rotation_deg'] * jax.random.uniform(k_rot, (), minval=-1.0, maxval=1.0))
    flip = jax.random.bernoulli(k_flip) & q['flip']
    unit_shift = jax.random.uniform(k_shift, (2,), minval=-1.0, maxval=1.0)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  rot = jnp.array([[cos, -sin], [sin, cos]])
  f = jnp.diag(jnp.array([jnp.where(flip, -1.0, 1.0), 1.0]))
  side = min(h, w)
  m = (scale * side / out_size) * rot @ f
  c_in = jnp.array([(w - 1) / 2.0, (h - 1) / 2.0]) + unit_shift * (1.0 - scale) * jnp.array(
      [w, h]) / 2.0
  if align is not None:
    lin_inv = jnp.linalg.inv(align[:, :2])
    c_out = jnp.full(2, (out_size - 1) / 2.0)
    shift_out = unit_shift * (1.0 - scale) * out_size / 2.0
    m_al = lin_inv @ (scale * rot @ f)
    c_al = lin_inv @ (c_out + shift_out - align[:, 2])
    ok = jnp.all(jnp.isfinite(m_al)) & jnp.all(jnp.isfinite(c_al))
    m = jnp.where(ok, m_al, m)  # a face that cannot be aligned falls back to the plain crop
    c_in = jnp.where(ok, c_al, c_in)
  return m, c_in, flip


def _jitter(key, img, q: dict[str, jax.Array]):
  kb, kc, ks = jax.random.split(key, 3)
  u = jax.random.uniform
  b = 1.0 + q['brightness'] * u(kb, (), minval=-1.0, maxval=1.0)
  c = 1.0 + q['contrast'] * u(kc, (), minval=-1.0, maxval=1.0)
  s = 1.0 + q['saturation'] * u(ks, (), minval=-1.0, maxval=1.0)
  luma = jnp.array([0.299, 0.587, 0.114])
  img = jnp.clip(img * b, 0.0, 1.0)
  gray = img @ luma
  img = jnp.clip((img - gray.mean()) * c + gray.mean(), 0.0, 1.0)
  gray = (img @ luma)[..., None]
  return jnp.clip(gray + (img - gray) * s, 0.0, 1.0)


def _one(key, image, landmarks, out_size: int, q: dict[str, jax.Array], train: bool,
         align_faces: bool, order: int):
  """Augments one image (H, W, 3) in [0, 1] and its landmarks (P, 2)."""
  h, w = image.shape[:2]
  k_geo, k_col = jax.random.split(key)
  align = None
  if align_faces and landmarks.shape[0]:
    align, _ = _alignment(landmarks, out_size, q['align_zoom'])
  m, c_in, flip = _affine(k_geo, (h, w), out_size, q, train, align)
  c_out = (out_size - 1) / 2.0
  ys, xs = jnp.meshgrid(jnp.arange(out_size, dtype=jnp.float32),
                        jnp.arange(out_size, dtype=jnp.float32), indexing='ij')
  out_xy = jnp.stack([xs, ys], -1) - c_out  # (S, S, 2)
  in_xy = out_xy @ m.T + c_in
  coords = [in_xy[..., 1], in_xy[..., 0]]
  warped = jnp.stack([
      jax.scipy.ndimage.map_coordinates(image[..., ch], coords, order=order, mode='constant',
                                        cval=0.0)
      for ch in range(image.shape[-1])], -1)
  lm = (landmarks - c_in) @ jnp.linalg.inv(m).T + c_out
  if landmarks.shape[0]:  # datasets without landmarks carry (0, 2)
    perm = jnp.asarray(schemes.flip_permutation(landmarks.shape[0]))
    lm = jnp.where(flip, lm[perm], lm)
  if train:
    warped = _jitter(k_col, warped, q)
  return warped, lm


def _example_keys(rng: jax.Array, batch_size: int) -> jax.Array:
  """``rng`` itself if it already holds one key per example, else ``batch_size`` keys split from it."""
  typed = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
  per_example = rng.ndim == (1 if typed else 2)
  if per_example:
    if rng.shape[0] != batch_size:
      raise ValueError(f'rng: expected one key or {batch_size} per-example keys, got shape '
                       f'{rng.shape}.')
    return rng
  return jax.random.split(rng, batch_size)


@functools.partial(jax.jit, static_argnames=('out_size', 'train', 'align_faces', 'order'))
def _preprocess(rng, images, landmarks, q: dict[str, jax.Array], out_size: int, train: bool,
                align_faces: bool, order: int):
  keys = _example_keys(rng, images.shape[0])
  imgs = images.astype(jnp.float32) / 255.0
  out, lm = jax.vmap(lambda k, i, l: _one(k, i, l, out_size, q, train, align_faces, order))(
      keys, imgs, landmarks)
  out = (out - q['mean']) / q['std']
  return out, lm


def _traced(p: AugmentConfig) -> dict[str, jax.Array]:
  """The numeric parameters as arrays, so that changing them does not recompile."""
  f32 = lambda v: jnp.asarray(v, jnp.float32)
  return {'crop_lo': f32(p.crop_scale[0]), 'crop_hi': f32(p.crop_scale[1]),
          'rotation_deg': f32(p.rotation_deg), 'flip': jnp.asarray(p.flip),
          'brightness': f32(p.brightness), 'contrast': f32(p.contrast),
          'saturation': f32(p.saturation), 'mean': f32(p.mean), 'std': f32(p.std),
          'eval_crop_scale': f32(p.eval_crop_scale), 'align_zoom': f32(p.align_zoom)}


def preprocess(rng: jax.Array, batch: dict[str, Any], aug_config: Any, *,
               train: bool) -> dict[str, Any]:
  """Augments (train) or centre-resizes (eval) a batch on the device.

  Args:
    rng: a PRNG key split over the batch, or (B,) keys, one per example (the train step derives
      them from the example's index in the global batch, so any device count augments alike);
      ignored when train=False.
    batch: dict with 'image' uint8 (B, H, W, 3) and 'landmarks' float32 (B, P, 2), P in
      {68, 66, 49}; other keys pass through unchanged.
    aug_config: see `default_augment_config`.
    train: random augmentation if True, deterministic centre crop otherwise.

  Returns:
    The batch with 'image' float32 (B, S, S, 3) normalised by mean / std, S = aug_config.image_size,
    and 'landmarks' float32 (B, P, 2) in the output frame.
  """
  p = _params(aug_config)
  images, landmarks = batch['image'], batch['landmarks']
  chex.assert_rank(images, 4)
  chex.assert_rank(landmarks, 3)
  if images.shape[-1] != 3:
    raise ValueError(f"batch['image'] must have 3 channels; got shape {images.shape}.")
  if landmarks.shape[-1] != 2 or landmarks.shape[-2] not in schemes.NUM_POINTS + (0,):
    raise ValueError(f"batch['landmarks'] must have shape (B, P, 2) with P in "
                     f'{schemes.NUM_POINTS} (or 0 for datasets without landmarks); '
                     f'got {landmarks.shape}.')
  chex.assert_equal_shape_prefix([images, landmarks], 1)
  if rng is None:
    if train:
      raise ValueError('rng: a PRNG key is required when train=True.')
    rng = jax.random.key(0)
  out, lm = _preprocess(rng, jnp.asarray(images), jnp.asarray(landmarks, jnp.float32), _traced(p),
                        out_size=p.image_size, train=bool(train),
                        align_faces=p.align == 'five_point',
                        order=INTERPOLATIONS[p.interpolation if train else 'bilinear'])
  return {**batch, 'image': out, 'landmarks': lm}

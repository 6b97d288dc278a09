"""Tests of ROI crops and the bilinear sampler (faujax.geometry.roi, faujax.geometry.sampling)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faujax.geometry import au_centres
from faujax.geometry import conversions
from faujax.geometry import mean_face
from faujax.geometry import roi
from faujax.geometry import sampling

FACE = mean_face.MEAN_FACE_68


def _bilinear_loop(image, x, y, fill=0.0):
  """Slow reference: four-neighbour bilinear interpolation, fill outside."""
  h, w, c = image.shape
  x0, y0 = int(np.floor(x)), int(np.floor(y))
  out = np.zeros(c)
  for dy in (0, 1):
    for dx in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      wgt = (x - x0 if dx else 1 - (x - x0)) * (y - y0 if dy else 1 - (y - y0))
      val = image[yi, xi] if (0 <= xi < w and 0 <= yi < h) else np.full(c, fill)
      out += wgt * val
  return out


def test_bilinear_sample_matches_loop_reference():
  rng = np.random.default_rng(0)
  image = rng.random((7, 9, 2)).astype(np.float32)
  pts = rng.uniform(-1.5, 9.5, (40, 2)).astype(np.float32)
  got = np.asarray(sampling.bilinear_sample(jnp.asarray(image), jnp.asarray(pts), fill_value=0.3))
  for p, g in zip(pts, got):
    np.testing.assert_allclose(g, _bilinear_loop(image, p[0], p[1], 0.3), atol=1e-5)
  nan = sampling.bilinear_sample(jnp.asarray(image), jnp.array([[np.nan, 2.0]]), fill_value=0.3)
  np.testing.assert_allclose(np.asarray(nan), 0.3)


@pytest.mark.parametrize('n', [5, 6, 25])
def test_crop_at_integer_centres_equals_numpy_slicing(n):
  rng = np.random.default_rng(1)
  image = rng.random((60, 70, 3)).astype(np.float32)
  centres = np.array([[30, 20], [12, 40], [55, 33]], np.float32)
  patches, valid = roi.crop_patches(jnp.asarray(image), jnp.asarray(centres), n)
  assert patches.shape == (3, n, n, 3) and np.asarray(valid).all()
  for (cx, cy), p in zip(centres.astype(int), np.asarray(patches)):
    ref = image[cy - n // 2: cy - n // 2 + n, cx - n // 2: cx - n // 2 + n]
    np.testing.assert_array_equal(p, ref)


def test_resized_crop_matches_loop_reference_and_resize():
  rng = np.random.default_rng(2)
  image = rng.random((40, 40, 1)).astype(np.float32)
  c = np.array([20.3, 18.7], np.float32)
  n, out = 10, 4
  patch = np.asarray(roi.crop_patches(jnp.asarray(image), jnp.asarray(c), n, out)[0])
  for i in range(out):
    for j in range(out):
      x = c[0] - n // 2 + (j + 0.5) * n / out - 0.5
      y = c[1] - n // 2 + (i + 0.5) * n / out - 0.5
      np.testing.assert_allclose(patch[i, j], _bilinear_loop(image, x, y), atol=1e-5)
  # A crop of the whole image at an integer-aligned centre resized = resize of the image.
  whole = np.asarray(roi.crop_patches(jnp.asarray(image), jnp.array([20.0, 20.0]), 40, 16)[0])
  ref = np.asarray(jax.image.resize(jnp.asarray(image), (16, 16, 1), 'bilinear', antialias=False))
  np.testing.assert_allclose(whole, ref, atol=1e-5)
  np.testing.assert_allclose(np.asarray(sampling.resize(jnp.asarray(image), 16)), ref, atol=1e-5)


def test_crops_are_differentiable_in_the_image():
  rng = np.random.default_rng(3)
  image = jnp.asarray(rng.random((30, 30, 2)), jnp.float32)
  centres = jnp.array([[10.5, 12.25], [20.0, 15.0]])
  f = lambda im: jnp.sum(roi.crop_patches(im, centres, 6, 8)[0] ** 2)
  g = jax.grad(f)(image)
  eps = 1e-2
  for (y, x, ch) in [(12, 10, 0), (15, 20, 1), (13, 11, 1)]:
    e = jnp.zeros_like(image).at[y, x, ch].set(eps)
    fd = (f(image + e) - f(image - e)) / (2 * eps)
    assert float(g[y, x, ch]) == pytest.approx(float(fd), rel=1e-2, abs=1e-4)
  assert float(jnp.abs(g[0:5]).sum()) == 0.0  # untouched rows get no gradient


def test_au_roi_crops_flip_consistency():
  rng = np.random.default_rng(4)
  w = 201
  image = rng.random((200, w, 3)).astype(np.float32)
  lm = (FACE + rng.normal(0, 1.0, FACE.shape)).astype(np.float32)
  aus = 'bp4d'
  patches, valid = roi.crop_au_rois(jnp.asarray(image), lm, aus, 'jaanet', 15, unique=False)
  fpatches, fvalid = roi.crop_au_rois(conversions.flip_image(jnp.asarray(image)),
                                      conversions.flip_landmarks(lm, w), aus, 'jaanet', 15,
                                      unique=False)
  assert np.asarray(valid).all() and np.asarray(fvalid).all()
  idx = au_centres.centre_flip_index(aus, 'jaanet')
  patches, fpatches = np.asarray(patches), np.asarray(fpatches)
  # Odd n: a patch of the mirrored face is the mirror image of the partner's patch.
  for a in range(idx.shape[0]):
    for k in range(2):
      np.testing.assert_allclose(fpatches[a, k], patches[a, idx[a, k], :, ::-1], atol=1e-4)


def test_unique_rois_and_batching():
  image = jnp.zeros((2, 200, 200, 3))
  lms = jnp.stack([jnp.asarray(FACE), jnp.asarray(FACE) + 3.0])
  fn = jax.jit(jax.vmap(lambda i, l: roi.crop_au_rois(i, l, 'bp4d', 'eacnet', 25, 12)))
  patches, valid = fn(image, lms)
  assert patches.shape == (2, 9, 2, 12, 12, 3) and np.asarray(valid).all()


def test_invalid_centres_are_flagged():
  image = jnp.ones((50, 50, 1))
  centres = jnp.array([[10.0, 10.0], [np.nan, 3.0], [60.0, 10.0], [-1.0, 5.0]])
  patches, valid = roi.crop_patches(image, centres, 5)
  assert np.asarray(valid).tolist() == [True, False, False, False]
  assert float(jnp.abs(patches[1]).max()) == 0.0  # NaN centre: fill only, never NaN
  with pytest.raises(ValueError, match='non-finite or outside'):
    roi.crop_patches_checked(np.ones((50, 50, 1)), np.array([[10.0, 10.0], [60.0, 1.0]]), 5)
  bad = FACE.copy()
  bad[21] = np.nan
  _, valid = roi.crop_au_rois(jnp.ones((200, 200, 3)), bad, 'bp4d')
  assert not np.asarray(valid).any()  # a NaN used landmark invalidates the whole face
  with pytest.raises(ValueError, match='patch_size'):
    roi.crop_patches(image, centres, 0)

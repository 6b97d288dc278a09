"""Tests of the device augmentation: landmarks move with the image under every op, flips re-index."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faujax.data import augment
from faujax.data.synthetic_faces import examples
from faujax.geometry import schemes


def _cfg(**kw):
  c = augment.default_augment_config()
  c.mean = (0.0, 0.0, 0.0)
  c.std = (1.0, 1.0, 1.0)
  c.brightness = c.contrast = c.saturation = 0.0
  for k, v in kw.items():
    setattr(c, k, v)
  return c


@pytest.mark.parametrize('points', [68, 66, 49])
def test_hflip_twice_is_identity(points):
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 255, (2, 9, 11, 3)), jnp.uint8)
  lm = jnp.asarray(rng.uniform(0, 10, (2, points, 2)), jnp.float32)
  im1, lm1 = augment.hflip(images, lm)
  assert not np.array_equal(np.asarray(im1), np.asarray(images))
  im2, lm2 = augment.hflip(im1, lm1)
  np.testing.assert_array_equal(np.asarray(im2), np.asarray(images))
  np.testing.assert_allclose(np.asarray(lm2), np.asarray(lm), atol=1e-5)
  # Reference: loop over points.
  perm = schemes.flip_permutation(points)
  for i in range(points):
    np.testing.assert_allclose(np.asarray(lm1[0, i]), [10 - np.asarray(lm)[0, perm[i], 0],
                                                       np.asarray(lm)[0, perm[i], 1]], atol=1e-5)


def _face_batch(n=4, size=64):
  exs = [examples.make_example(0, s, 1, size) for s in range(n)]
  return {'image': np.stack([e['image'] for e in exs]),
          'landmarks': np.stack([e['landmarks'] for e in exs]),
          'au': np.stack([e['au'] for e in exs])}


def test_hflip_keeps_anatomical_meaning():
  batch = _face_batch()
  _, lm = augment.hflip(jnp.asarray(batch['image']), jnp.asarray(batch['landmarks']))
  lm = np.asarray(lm)
  # Point 36 (outer corner of the eye on the image left) stays on the image left, etc.
  assert np.all(lm[:, 36, 0] < lm[:, 45, 0])
  assert np.all(lm[:, 0, 0] < lm[:, 16, 0])
  assert np.all(lm[:, 48, 0] < lm[:, 54, 0])


def _dot_image(size=96, spacing=10):
  """Image with a bright square plateau (5x5) per landmark; flip-paired points share a value."""
  perm = schemes.FLIP_68
  grid = [(x, y) for y in range(8, size - 7, spacing) for x in range(8, size - 7, spacing)]
  assert len(grid) >= 68
  lm = np.array(grid[:68], np.float32)
  pair_id = np.minimum(np.arange(68), perm)
  uniq = {p: k for k, p in enumerate(sorted(set(pair_id.tolist())))}
  values = 0.3 + 0.7 * np.array([uniq[p] for p in pair_id]) / (len(uniq) - 1)
  img = np.zeros((size, size, 3), np.float32)
  for (x, y), v in zip(lm.astype(int), values):
    img[y - 2:y + 3, x - 2:x + 3] = v
  return np.round(img * 255).astype(np.uint8), lm, np.round(values * 255) / 255


def _sample(img, xy):
  x, y = xy
  x0, y0 = int(np.floor(x)), int(np.floor(y))
  fx, fy = x - x0, y - y0
  return ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x0 + 1])
          + fy * ((1 - fx) * img[y0 + 1, x0] + fx * img[y0 + 1, x0 + 1]))


@pytest.mark.parametrize('op', ['crop', 'rotation', 'flip', 'all'])
def test_landmarks_move_with_the_image(op):
  img, lm, values = _dot_image()
  kw = dict(image_size=64, crop_scale=(1.0, 1.0), rotation_deg=0.0, flip=False)
  if op in ('crop', 'all'):
    kw['crop_scale'] = (0.6, 0.9)
  if op in ('rotation', 'all'):
    kw['rotation_deg'] = 25.0
  if op in ('flip', 'all'):
    kw['flip'] = True
  batch = {'image': np.stack([img] * 8), 'landmarks': np.stack([lm] * 8)}
  out = augment.preprocess(jax.random.key(3), batch, _cfg(**kw), train=True)
  images, lms = np.asarray(out['image']), np.asarray(out['landmarks'])
  assert images.shape == (8, 64, 64, 3) and lms.shape == (8, 68, 2)
  checked = 0
  for b in range(8):
    for i in range(68):
      x, y = lms[b, i]
      if 2 <= x <= 61 and 2 <= y <= 61:
        np.testing.assert_allclose(_sample(images[b, ..., 0], (x, y)), values[i], atol=0.02)
        checked += 1
  assert checked > 100
  if op != 'flip':  # the augmented landmarks really moved
    assert np.abs(lms - lm * 63 / 95).max() > 3


def test_flip_happens_and_reindexes():
  batch = _face_batch(n=8)
  out = augment.preprocess(jax.random.key(0), batch,
                           _cfg(image_size=64, crop_scale=(1.0, 1.0), rotation_deg=0.0),
                           train=True)
  lm, ims = np.asarray(out['landmarks']), np.asarray(out['image'])
  assert np.all(lm[:, 36, 0] < lm[:, 45, 0])
  ref = batch['image'].astype(np.float32) / 255
  flipped = [np.abs(ims[b] - ref[b, :, ::-1]).max() < 1e-4 for b in range(8)]
  same = [np.abs(ims[b] - ref[b]).max() < 1e-4 for b in range(8)]
  assert all(f or s for f, s in zip(flipped, same))
  assert any(flipped) and any(same)
  for b in range(8):
    expect = batch['landmarks'][b]
    if flipped[b]:
      expect = expect[schemes.FLIP_68] * (-1, 1) + (63, 0)
    np.testing.assert_allclose(lm[b], expect, atol=1e-3)


def test_eval_is_deterministic_identity_at_same_size():
  batch = _face_batch(n=2)
  cfg = _cfg(image_size=64)
  a = augment.preprocess(jax.random.key(0), batch, cfg, train=False)
  b = augment.preprocess(jax.random.key(1), batch, cfg, train=False)
  np.testing.assert_array_equal(np.asarray(a['image']), np.asarray(b['image']))
  np.testing.assert_allclose(np.asarray(a['image']), batch['image'] / 255.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(a['landmarks']), batch['landmarks'], atol=1e-4)
  np.testing.assert_array_equal(a['au'], batch['au'])  # other keys pass through


def test_normalisation_and_colour_jitter():
  batch = _face_batch(n=4)
  cfg = augment.default_augment_config()
  cfg.image_size = 32
  out = augment.preprocess(jax.random.key(0), batch, cfg, train=False)
  raw = augment.preprocess(jax.random.key(0), batch, _cfg(image_size=32), train=False)
  np.testing.assert_allclose(np.asarray(out['image']), (np.asarray(raw['image']) - 0.5) / 0.5,
                             atol=1e-5)
  jit = _cfg(image_size=64, crop_scale=(1.0, 1.0), rotation_deg=0.0, flip=False, brightness=0.5)
  j1 = np.asarray(augment.preprocess(jax.random.key(0), batch, jit, train=True)['image'])
  j2 = np.asarray(augment.preprocess(jax.random.key(0), batch, jit, train=True)['image'])
  np.testing.assert_array_equal(j1, j2)  # pure function of the key
  ratio = j1.mean(axis=(1, 2, 3)) / (batch['image'] / 255.0).mean(axis=(1, 2, 3))
  assert np.ptp(ratio) > 0.05 and np.all((ratio > 0.45) & (ratio < 1.55))


def test_bad_config_raises():
  batch = _face_batch(n=1)
  with pytest.raises(ValueError, match='crop_scale'):
    augment.preprocess(jax.random.key(0), batch, _cfg(crop_scale=(0.9, 0.5)), train=True)
  with pytest.raises(ValueError, match='image_size'):
    augment.preprocess(jax.random.key(0), batch, _cfg(image_size=2), train=True)


def test_five_point_alignment_is_the_least_squares_similarity():
  """With align='five_point', eval preprocessing applies exactly the similarity that puts the
  5 points on the (zoomed) template: output landmarks = that similarity of the input ones."""
  from faujax.geometry import alignment
  ex = [examples.make_example(0, s, f, 96) for s, f in ((1, 0), (2, 3), (5, 7))]
  batch = {'image': np.stack([e['image'] for e in ex]),
           'landmarks': np.stack([e['landmarks'] for e in ex])}
  cfg = augment.default_augment_config()
  cfg.image_size, cfg.align, cfg.align_zoom = 64, 'five_point', 0.85
  out = augment.preprocess(None, batch, cfg, train=False)
  template = (alignment.FIVE_POINT_TEMPLATE_224 * 64 / 224 - 31.5) * 0.85 + 31.5
  m, ok = alignment.umeyama(alignment.five_points(batch['landmarks']), template)
  assert bool(np.all(ok))
  expected = alignment.apply_transform(m, batch['landmarks'])
  np.testing.assert_allclose(out['landmarks'], expected, atol=1e-2)

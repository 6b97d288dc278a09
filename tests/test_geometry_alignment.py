"""Tests of face alignment (faujax.geometry.alignment): JAA-Net, Emotion-GCN, 5-point."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faujax.geometry import alignment
from faujax.geometry import conversions
from faujax.geometry import mean_face

FACE = mean_face.MEAN_FACE_68


def _similar(points, angle, scale, shift, centre=(100.0, 110.0)):
  c, s = np.cos(angle), np.sin(angle)
  rot = scale * np.array([[c, -s], [s, c]])
  return ((points - centre) @ rot.T + centre + np.asarray(shift)).astype(np.float32)


def _umeyama_svd(src, dst):
  """Textbook Umeyama (SVD, reflection-corrected) as an independent reference."""
  mu_s, mu_d = src.mean(0), dst.mean(0)
  sc, dc = src - mu_s, dst - mu_d
  cov = dc.T @ sc / len(src)
  u, d, vt = np.linalg.svd(cov)
  e = np.eye(2)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    e[1, 1] = -1
  r = u @ e @ vt
  scale = np.trace(np.diag(d) @ e) / sc.var(0).sum()
  t = mu_d - scale * r @ mu_s
  return np.concatenate([scale * r, t[:, None]], axis=1)


def _eyes(lm):
  return np.stack([np.asarray(e) for e in alignment.eye_centres(jnp.asarray(lm))])


def test_umeyama_matches_svd_reference_and_never_reflects():
  rng = np.random.default_rng(0)
  for _ in range(5):
    src = rng.normal(0, 10, (7, 2))
    dst = rng.normal(0, 10, (7, 2))
    m, ok = alignment.umeyama(src, dst)
    assert bool(ok)
    np.testing.assert_allclose(np.asarray(m), _umeyama_svd(src, dst), rtol=1e-4, atol=1e-3)
    assert np.linalg.det(np.asarray(m)[:, :2]) > 0
  src = rng.normal(0, 10, (6, 2))
  dst = _similar(src, 0.4, 1.7, (3, -2))
  m, _ = alignment.umeyama(src, dst)
  np.testing.assert_allclose(np.asarray(alignment.apply_transform(m, src)), dst, atol=1e-3)
  inv = alignment.invert_transform(m)
  np.testing.assert_allclose(np.asarray(alignment.apply_transform(inv, dst)), src, atol=1e-3)


def _jaanet_rule_reference(lm49, enlarge=2.9, size=200):
  """The JAA-Net rule written as a plain loop over the five points."""
  pts = [lm49[19:25].mean(0), lm49[25:31].mean(0), lm49[13], lm49[31], lm49[37]]
  dx, dy = pts[1] - pts[0]
  length = np.hypot(dx, dy)
  cos, sin = dx / length, dy / length
  rot = [[cos, sin], [-sin, cos]]
  rotated = [(rot[0][0] * x + rot[0][1] * y, rot[1][0] * x + rot[1][1] * y) for x, y in pts]
  xs, ys = [p[0] for p in rotated], [p[1] for p in rotated]
  cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
  half = 0.5 * enlarge * max(max(xs) - min(xs), max(ys) - min(ys))
  s = (size - 1) / 2 / half
  return np.array([[s * cos, s * sin, s * (half - cx)], [-s * sin, s * cos, s * (half - cy)]])


@pytest.mark.parametrize('angle,scale', [(0.3, 2.0), (-0.5, 0.7)])
def test_jaanet_rule_matches_reference_and_template(angle, scale):
  rng = np.random.default_rng(1)
  lm = _similar(FACE + rng.normal(0, 1.0, FACE.shape), angle, scale, (20, -5))
  lm49 = np.asarray(conversions.convert_landmarks(lm, 49))
  m, ok = alignment.jaanet_transform(lm49)
  assert bool(ok)
  np.testing.assert_allclose(np.asarray(m), _jaanet_rule_reference(lm49.astype(np.float64)),
                             rtol=1e-4, atol=2e-3)
  out = np.asarray(alignment.apply_transform(m, lm49))
  eyes = _eyes(out)
  assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-3  # level
  five = np.asarray(alignment.five_points(out))
  lo, hi = five.min(0), five.max(0)
  assert np.isclose((hi - lo).max(), 199 / 2.9, atol=1e-3)
  np.testing.assert_allclose((lo + hi) / 2, [99.5, 99.5], atol=1e-3)


@pytest.mark.parametrize('method', ['rule', 'template'])
def test_jaanet_maps_eye_centres_to_template(method):
  lm = _similar(FACE, 0.25, 1.6, (40, 30))
  image = jnp.zeros((400, 400, 3))
  res = alignment.align_jaanet(image, lm, method=method)
  assert res.image.shape == (200, 200, 3) and bool(res.ok)
  eyes = _eyes(res.landmarks)
  assert np.abs(eyes - alignment.JAANET_TEMPLATE_200[:2]).max() < 0.5
  np.testing.assert_allclose(alignment.JAANET_TEMPLATE_200[:2, 1], 65.666, atol=0.01)
  assert np.isclose(alignment.JAANET_TEMPLATE_200[1, 0] - alignment.JAANET_TEMPLATE_200[0, 0],
                    199 / 2.9, atol=1e-3)


def test_warp_moves_image_content_with_the_landmarks():
  lm = _similar(FACE, -0.35, 1.3, (30, 25))
  h = w = 320
  ys, xs = np.mgrid[0:h, 0:w]
  # A blob on the right eye centre and another on the nose tip.
  image = np.zeros((h, w, 1), np.float32)
  marks = [_eyes(lm)[0], lm[30]]
  for mx, my in marks:
    image[..., 0] += np.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / (2 * 2.0 ** 2))
  for fn in (lambda i, l: alignment.align_jaanet(i, l, method='template'),
             alignment.align_five_point, alignment.align_emotiongcn):
    res = fn(jnp.asarray(image), jnp.asarray(lm))
    out = np.asarray(res.image)[..., 0]
    targets = [_eyes(res.landmarks)[0], np.asarray(res.landmarks)[30]]
    for tx, ty in targets:
      y0, x0 = int(round(ty)), int(round(tx))
      win = out[y0 - 6:y0 + 7, x0 - 6:x0 + 7]
      py, px = np.unravel_index(np.argmax(win), win.shape)
      assert abs(px - 6 + x0 - tx) <= 1.0 and abs(py - 6 + y0 - ty) <= 1.0


def test_identity_warp_returns_the_image():
  image = jnp.asarray(np.random.default_rng(2).random((9, 11, 2)), jnp.float32)
  eye = jnp.array([[1.0, 0, 0], [0, 1.0, 0]])
  np.testing.assert_allclose(np.asarray(alignment.warp_image(image, eye, (9, 11))), image,
                             atol=1e-6)


def test_emotiongcn_levels_eyes_and_crops_the_box():
  lm = _similar(FACE, 0.4, 1.0, (10, 10))
  image = jnp.asarray(np.random.default_rng(3).random((260, 260, 3)), jnp.float32)
  res = alignment.align_emotiongcn(image, lm)
  assert res.image.shape == (227, 227, 3) and bool(res.ok)
  eyes = _eyes(res.landmarks)
  assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-3 and eyes[0, 0] < eyes[1, 0]
  out = np.asarray(res.landmarks)
  assert out.min() >= 0 and out.max() <= 226  # whole face inside with the 1.25 margin
  # Level eyes + a given box at scale 1 is plain numpy slicing.
  box = np.array([40, 50, 40 + 120, 50 + 130], np.float32)
  res = alignment.align_emotiongcn(image, FACE, box=box, out_size=120)
  assert res.image.shape == (120, 120, 3)
  res = alignment.align_emotiongcn(image, FACE, box=np.array([40, 50, 160, 170.0]), out_size=120)
  np.testing.assert_allclose(np.asarray(res.image), np.asarray(image)[50:170, 40:160], atol=1e-5)


def test_five_point_template_and_batching():
  template_face = FACE.copy()
  lms = np.stack([_similar(FACE, a, s, (5, 5)) for a, s in [(0.1, 1.0), (-0.2, 1.5), (0.3, 0.8)]])
  images = jnp.zeros((3, 300, 300, 3))
  fn = jax.jit(jax.vmap(lambda i, l: alignment.align_five_point(i, l)))
  res = fn(images, jnp.asarray(lms))
  assert res.image.shape == (3, 224, 224, 3) and np.asarray(res.ok).all()
  five = np.asarray(alignment.five_points(res.landmarks))
  single = alignment.align_five_point(images[0], template_face)
  ref = np.asarray(alignment.five_points(single.landmarks))
  for b in range(3):  # similar faces align to the same place
    np.testing.assert_allclose(five[b], ref, atol=0.05)
  # The least-squares fit puts the eyes near the ArcFace template eyes.
  assert np.abs(five[:, :2] - alignment.FIVE_POINT_TEMPLATE_224[:2]).max() < 6.0


def test_bad_faces_are_flagged_never_silently_aligned():
  image = jnp.ones((250, 250, 3))
  nan_eye = FACE.copy()
  nan_eye[37] = np.nan
  same_eyes = FACE.copy()
  same_eyes[42:48] = FACE[36:42]
  for lm in (nan_eye, same_eyes):
    for fn in (alignment.align_jaanet, alignment.align_emotiongcn, alignment.align_five_point,
               lambda i, l: alignment.align_jaanet(i, l, method='template')):
      res = fn(image, lm)
      assert not bool(res.ok)
      assert np.isnan(np.asarray(res.matrix)).all()
      assert np.isnan(np.asarray(res.landmarks)).all()
      assert float(jnp.abs(res.image - res.image.reshape(-1)[0]).max()) == 0.0  # fill only
      with pytest.raises(ValueError, match='cannot align'):
        alignment.check_aligned(res)
  # Points the transform does not use (jaw) may be missing.
  up = conversions.convert_landmarks(conversions.convert_landmarks(FACE, 49), 68)
  assert bool(alignment.align_jaanet(image, up).ok)
  with pytest.raises(ValueError, match='method'):
    alignment.align_jaanet(image, FACE, method='affine')
  with pytest.raises(ValueError, match='P in'):
    alignment.align_five_point(image, FACE[:50])

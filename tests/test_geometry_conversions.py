"""Tests of landmark scheme conversions, flips and validation (faujax.geometry.conversions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faujax.geometry import conversions
from faujax.geometry import mean_face
from faujax.geometry import schemes

FACE = mean_face.MEAN_FACE_68


def _random_face(seed=0, batch=()):
  rng = np.random.default_rng(seed)
  return (FACE + rng.normal(0, 2, batch + (68, 2))).astype(np.float32)


@pytest.mark.parametrize('src,dst', [(68, 66), (68, 49), (66, 49)])
def test_down_conversion_matches_loop_reference(src, dst):
  lm68 = _random_face(1, (3,))
  lm = np.asarray(conversions.convert_landmarks(lm68, src))
  out = np.asarray(conversions.convert_landmarks(lm, dst))
  keep = [i for i in range(68) if i not in (60, 64) and (dst == 66 or i >= 17)]
  np.testing.assert_array_equal(out, lm68[:, keep])


def test_49_point_layout_names_the_expected_points():
  lm49 = np.asarray(conversions.convert_landmarks(FACE, 49))
  np.testing.assert_array_equal(lm49[0], FACE[17])  # right brow outer end
  np.testing.assert_array_equal(lm49[13], FACE[30])  # nose tip
  np.testing.assert_array_equal(lm49[31], FACE[48])  # mouth corner
  np.testing.assert_array_equal(lm49[37], FACE[54])
  np.testing.assert_array_equal(lm49[43], FACE[61])
  np.testing.assert_array_equal(lm49[48], FACE[67])


@pytest.mark.parametrize('src,dst', [(49, 68), (66, 68), (49, 66)])
def test_up_conversion_keeps_shared_points_and_fills_nan(src, dst):
  lm = np.asarray(conversions.convert_landmarks(FACE, src))
  up = np.asarray(conversions.convert_landmarks(lm, dst))
  assert up.shape == (dst, 2)
  back = np.asarray(conversions.convert_landmarks(up, src))
  np.testing.assert_array_equal(back, lm)
  missing = set(schemes.SUBSET_OF_68[dst].tolist()) - set(schemes.SUBSET_OF_68[src].tolist())
  pos = {int(j): k for k, j in enumerate(schemes.SUBSET_OF_68[dst])}
  for j in missing:
    assert np.isnan(up[pos[j]]).all()
  assert np.isfinite(np.delete(up, [pos[j] for j in missing], axis=0)).all()


@pytest.mark.parametrize('p', [68, 66, 49])
def test_flip_is_an_involution_and_mirrors_the_symmetric_face(p):
  lm = np.asarray(conversions.convert_landmarks(FACE, p))
  width = 201  # mean face is symmetric about x = 100 = (201 - 1) / 2
  flipped = np.asarray(conversions.flip_landmarks(lm, width))
  np.testing.assert_allclose(flipped, lm, atol=1e-4)
  rnd = np.asarray(conversions.convert_landmarks(_random_face(2), p))
  twice = conversions.flip_landmarks(conversions.flip_landmarks(rnd, 300), 300)
  np.testing.assert_allclose(np.asarray(twice), rnd, atol=1e-4)


def test_flip_matches_image_flip_of_a_marked_pixel():
  img = np.zeros((20, 30, 1), np.float32)
  lm = np.asarray(conversions.convert_landmarks(FACE, 68)) * 0.1  # inside 30 x 20
  x, y = int(round(lm[36, 0])), int(round(lm[36, 1]))
  img[y, x] = 1.0
  lm_int = lm.copy()
  lm_int[36] = (x, y)
  flipped_img = np.asarray(conversions.flip_image(jnp.asarray(img)))
  flipped_lm = np.asarray(conversions.flip_landmarks(lm_int, 30))
  fx, fy = flipped_lm[45]  # 36 (right outer eye corner) becomes 45 after re-indexing
  assert flipped_img[int(fy), int(fx), 0] == 1.0


def test_flip_is_jittable_and_batched():
  lm = _random_face(3, (4,))
  out = jax.jit(conversions.flip_landmarks)(lm, 200)
  ref = np.stack([np.asarray(conversions.flip_landmarks(l, 200)) for l in lm])
  np.testing.assert_allclose(np.asarray(out), ref)


def test_bad_landmarks_raise_value_error():
  with pytest.raises(ValueError, match='P in'):
    conversions.convert_landmarks(np.zeros((67, 2)), 49)
  with pytest.raises(ValueError, match=r'\(\.\.\., P, 2\)'):
    conversions.flip_landmarks(np.zeros((68, 3)), 10)
  with pytest.raises(ValueError, match='num_points'):
    conversions.convert_landmarks(FACE, 5)
  bad = FACE.copy()
  bad[40, 1] = np.nan
  with pytest.raises(ValueError, match='non-finite coordinate at index \\(40,\\)'):
    conversions.validate_landmarks(bad)
  with pytest.raises(ValueError, match='expected \\(49,\\) points'):
    conversions.validate_landmarks(FACE, 49)
  with pytest.raises(ValueError, match='do not exist'):
    conversions.points_index([5], 49)

"""Tests of the EAC-Net and JAA-Net predefined attention maps (faujax.geometry.attention_maps)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from faujax.geometry import attention_maps
from faujax.geometry import au_centres
from faujax.geometry import conversions
from faujax.geometry import mean_face

FACE = mean_face.MEAN_FACE_68


def _eac_loop(centres, image_size, grid=100):
  out = np.zeros((grid, grid))
  for cx, cy in centres:
    gx, gy = round(cx * grid / image_size), round(cy * grid / image_size)
    for i in range(grid):
      for j in range(grid):
        d = abs(j - gx) + abs(i - gy)
        if d <= 7:
          out[i, j] = max(out[i, j], 1 - 0.07 * d)
  return out


def _jaa_loop(pair, image_size=176, size=52, ratio=0.14, coeff=0.56):
  out = np.zeros((size, size))
  half = round((size - 1) / 2 * ratio)
  for cx, cy in pair:
    gx, gy = round(cx * size / image_size), round(cy * size / image_size)
    for i in range(max(gy - half, 0), min(gy + half, size - 1) + 1):
      for j in range(max(gx - half, 0), min(gx + half, size - 1) + 1):
        out[i, j] = max(out[i, j], 1 - (abs(i - gy) + abs(j - gx)) * coeff / (size * ratio))
  return out


def test_eacnet_map_matches_loop_reference():
  centres, _ = au_centres.au_centres(FACE, 'bp4d', 'eacnet')
  flat = np.asarray(centres).reshape(-1, 2)
  got = np.asarray(attention_maps.eacnet_attention_map(jnp.asarray(flat), 200))
  np.testing.assert_allclose(got, _eac_loop(flat, 200), atol=1e-6)
  single = np.asarray(attention_maps.eacnet_attention_map(jnp.array([[40.0, 60.0]]), 100))
  assert single[60, 40] == 1.0
  np.testing.assert_allclose(single[60, 47], 1 - 0.07 * 7, atol=1e-6)
  assert single[60, 48] == 0.0 and single[64, 44] == 0.0


def test_jaanet_maps_match_loop_reference():
  lm = np.asarray(conversions.convert_landmarks(FACE * 0.88, 49))  # a 176 px face
  centres, ok = au_centres.au_centres(lm, 'disfa', 'jaanet')
  assert bool(ok)
  got = np.asarray(attention_maps.jaanet_attention_maps(centres))
  assert got.shape == (8, 52, 52)
  for a in range(8):
    np.testing.assert_allclose(got[a], _jaa_loop(np.asarray(centres[a])), atol=1e-6)
  # The value at a centre is 1 and falls with the Manhattan distance.
  one = np.asarray(attention_maps.jaanet_attention_maps(jnp.array([[[88.0, 88.0]] * 2])))[0]
  assert one[26, 26] == 1.0 and one[26, 27] < 1.0 and one[26, 31] == 0.0
  np.testing.assert_allclose(one[26, 30], 1 - 4 * 0.56 / (52 * 0.14), atol=1e-6)


def test_maps_batch_jit_and_skip_nan_centres():
  cs = jnp.asarray(np.random.default_rng(0).uniform(10, 160, (3, 4, 2, 2)), jnp.float32)
  batched = attention_maps.jaanet_attention_maps(cs)
  single = jax.vmap(attention_maps.jaanet_attention_maps)(cs)
  np.testing.assert_allclose(np.asarray(batched), np.asarray(single))
  with_nan = cs.at[0, 0, 0].set(jnp.nan)
  m = np.asarray(attention_maps.jaanet_attention_maps(with_nan))
  assert np.isfinite(m).all()
  np.testing.assert_allclose(m[0, 0], _jaa_loop(np.asarray(cs[0, 0, 1:])), atol=1e-6)
  e = np.asarray(attention_maps.eacnet_attention_map(with_nan.reshape(3, 8, 2), 176))
  assert np.isfinite(e).all() and e.shape == (3, 100, 100)


def test_maps_flip_with_the_face():
  w = 100  # image side = EAC grid side, so a mirror is exactly a grid mirror
  lm = np.round(FACE * 0.5).astype(np.float32)
  c, _ = au_centres.au_centres(lm, 'bp4d', 'eacnet')
  cf, _ = au_centres.au_centres(conversions.flip_landmarks(lm, w), 'bp4d', 'eacnet')
  m = np.asarray(attention_maps.eacnet_attention_map(c.reshape(-1, 2), w))
  mf = np.asarray(attention_maps.eacnet_attention_map(cf.reshape(-1, 2), w))
  np.testing.assert_allclose(mf, m[:, ::-1], atol=1e-6)
  jm = np.asarray(attention_maps.jaanet_attention_maps(c, image_size=w, map_size=w))
  jmf = np.asarray(attention_maps.jaanet_attention_maps(cf, image_size=w, map_size=w))
  np.testing.assert_allclose(jmf, jm[:, :, ::-1], atol=1e-6)

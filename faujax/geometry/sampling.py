"""Bilinear image sampling: the one resampler under warps, ROI crops and resizes.

Coordinates are (x, y) pixels with pixel (row i, column j) centred at (x=j, y=i), the
convention of the landmark files. Sampling is a gather of the four neighbours weighted by
the bilinear kernel, so it is linear (hence differentiable) in the image and piecewise
linear in the coordinates. Neighbours outside the image contribute ``fill_value``;
non-finite coordinates return ``fill_value`` (never NaN, never a wrapped-around pixel).
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax.numpy as jnp


def bilinear_sample(image: chex.Array, coords: chex.Array, fill_value: float = 0.0) -> chex.Array:
  """Samples ``image`` at real-valued (x, y) positions.

  Args:
    image: (H, W, C) or (H, W) image.
    coords: (..., 2) positions, (x, y) in pixels.
    fill_value: value of pixels outside the image.

  Returns:
    (..., C) samples for a 3-D image, (...) for a 2-D image.
  """
  chex.assert_rank(image, {2, 3})
  chex.assert_axis_dimension(coords, -1, 2)
  squeeze = image.ndim == 2
  if squeeze:
    image = image[..., None]
  h, w, _ = image.shape
  dtype = jnp.result_type(image.dtype, jnp.float32)
  image = image.astype(dtype)
  coords = jnp.asarray(coords, dtype)
  finite = jnp.all(jnp.isfinite(coords), axis=-1)
  # Non-finite positions are moved far outside so every neighbour reads fill_value.
  coords = jnp.where(finite[..., None], coords, -2.0)
  x, y = coords[..., 0], coords[..., 1]
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  fx = x - x0
  fy = y - y0
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)

  def tap(yi, xi):
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    v = image[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
    return jnp.where(inside[..., None], v, jnp.asarray(fill_value, dtype))

  out = (tap(y0, x0) * ((1 - fx) * (1 - fy))[..., None]
         + tap(y0, x0 + 1) * (fx * (1 - fy))[..., None]
         + tap(y0 + 1, x0) * ((1 - fx) * fy)[..., None]
         + tap(y0 + 1, x0 + 1) * (fx * fy)[..., None])
  out = jnp.where(finite[..., None], out, jnp.asarray(fill_value, dtype))
  return out[..., 0] if squeeze else out


def pixel_grid(height: int, width: int) -> chex.Array:
  """(height, width, 2) array of the (x, y) coordinates of every pixel centre."""
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing='ij')
  return jnp.stack([xs, ys], axis=-1)


def resize(image: chex.Array, size: int | Sequence[int]) -> chex.Array:
  """Bilinear resize with half-pixel centres (no antialiasing).

  Output pixel (i, j) samples the input at x = (j + 0.5) * W / w - 0.5 (same for y), the
  convention of ``jax.image.resize(..., 'bilinear', antialias=False)`` in the interior.
  Border samples that fall half a pixel outside blend with the edge pixel (clamped).

  Args:
    image: (H, W, C) or (H, W).
    size: output side, or (height, width).

  Returns:
    (h, w, C) or (h, w) resized image.
  """
  chex.assert_rank(image, {2, 3})
  oh, ow = (size, size) if isinstance(size, int) else tuple(size)
  h, w = image.shape[:2]
  xs = (jnp.arange(ow, dtype=jnp.float32) + 0.5) * (w / ow) - 0.5
  ys = (jnp.arange(oh, dtype=jnp.float32) + 0.5) * (h / oh) - 0.5
  xs = jnp.clip(xs, 0.0, w - 1.0)
  ys = jnp.clip(ys, 0.0, h - 1.0)
  gy, gx = jnp.meshgrid(ys, xs, indexing='ij')
  return bilinear_sample(image, jnp.stack([gx, gy], axis=-1))

"""Predefined AU attention maps of EAC-Net and JAA-Net, built from AU centres.

EAC-Net (docs/reference/face_geometry.md, "Attention maps"): one map per face on a 100 x 100
grid. Every centre c (scaled from image to grid pixels, rounded to the nearest grid pixel)
paints a diamond v(p) = 1 - 0.07 * (|px - cx| + |py - cy|) where the Manhattan distance is at
most 7; outside every diamond v = 0; overlapping diamonds are max-merged.

JAA-Net (adaptive attention learning, the predefined map it refines): one map per AU on an
``map_size`` grid (JAA-Net: 44 + 8 = 52 cells for a 176 px crop, the 8 extra cells being
eaten by the refinement network's four unpadded 3 x 3 convolutions). With
rho = ``spatial_ratio`` (0.14) and xi = ``fill_coeff`` (0.56), each of the AU's two
centres (scaled by map_size / image_size and rounded) covers the square window
|dx|, |dy| <= round((map_size - 1) / 2 * rho) with
    v(p) = max(0, 1 - xi * (|dx| + |dy|) / (map_size * rho)),
and the AU's map is the max over its two centres (0 outside both windows). These are the
parameters of the public JAA-Net code; unlike that code, a centre outside the grid paints
only the cells its window really covers (the code clamps the window onto the border row).

Both are jit-able, batch over leading axes and are constant (zero gradient) in the
centres when rounding is on, as in the originals; non-finite centres paint nothing.
"""

from __future__ import annotations

from typing import Sequence

import functools

import chex
import jax
import jax.numpy as jnp


def _grid(size: int) -> tuple[chex.Array, chex.Array]:
  ys, xs = jnp.meshgrid(jnp.arange(size, dtype=jnp.float32),
                        jnp.arange(size, dtype=jnp.float32), indexing='ij')
  return xs, ys


def _to_grid(centres: chex.Array, image_size: int | Sequence[int], grid_size: int,
             round_centres: bool) -> tuple[chex.Array, chex.Array]:
  ih, iw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
  centres = jnp.asarray(centres, jnp.float32)
  finite = jnp.all(jnp.isfinite(centres), axis=-1)
  scale = jnp.array([grid_size / iw, grid_size / ih], jnp.float32)
  g = jnp.where(finite[..., None], centres, 0.0) * scale
  if round_centres:
    g = jnp.round(g)
  return g, finite


@functools.partial(jax.jit, static_argnames=('image_size', 'grid_size', 'slope', 'radius',
                                             'round_centres'))
def eacnet_attention_map(centres: chex.Array, image_size: int | Sequence[int],
                         grid_size: int = 100, slope: float = 0.07, radius: float = 7.0,
                         round_centres: bool = True) -> chex.Array:
  """EAC-Net attention map of a face.

  Args:
    centres: (..., K, 2) centres in image pixels (e.g. ``au_centres(...)[0]`` reshaped to
      (..., A * 2, 2)).
    image_size: side (or (height, width)) of the image the centres refer to.
    grid_size: map side (EAC-Net: 100).
    slope, radius: diamond 1 - slope * d for Manhattan distance d <= radius.
    round_centres: snap centres to grid pixels (EAC-Net) or keep them real-valued.

  Returns:
    (..., grid_size, grid_size) map in [0, 1].
  """
  chex.assert_axis_dimension(centres, -1, 2)
  g, finite = _to_grid(centres, image_size, grid_size, round_centres)
  xs, ys = _grid(grid_size)
  d = (jnp.abs(xs - g[..., 0, None, None]) + jnp.abs(ys - g[..., 1, None, None]))
  v = jnp.where((d <= radius) & finite[..., None, None], 1.0 - slope * d, 0.0)
  return jnp.max(v, axis=-3)


@functools.partial(jax.jit, static_argnames=('image_size', 'map_size', 'spatial_ratio',
                                             'fill_coeff', 'round_centres'))
def jaanet_attention_maps(centres: chex.Array, image_size: int = 176, map_size: int = 52,
                          spatial_ratio: float = 0.14, fill_coeff: float = 0.56,
                          round_centres: bool = True) -> chex.Array:
  """JAA-Net predefined attention maps, one per AU.

  Args:
    centres: (..., A, 2, 2) AU centres (``au_centres``) in image pixels.
    image_size: side of the (square) face crop the centres refer to (JAA-Net: 176).
    map_size: map side (JAA-Net: 44 + 8).
    spatial_ratio, fill_coeff: rho and xi of the module docstring.
    round_centres: snap the scaled centres to cells, as JAA-Net does.

  Returns:
    (..., A, map_size, map_size) maps in [0, 1].
  """
  chex.assert_shape(centres, (..., 2, 2))
  g, finite = _to_grid(centres, image_size, map_size, round_centres)
  half = round((map_size - 1) / 2.0 * spatial_ratio)
  xs, ys = _grid(map_size)
  dx = jnp.abs(xs - g[..., 0, None, None])
  dy = jnp.abs(ys - g[..., 1, None, None])
  v = 1.0 - fill_coeff * (dx + dy) / (map_size * spatial_ratio)
  inside = (dx <= half) & (dy <= half) & finite[..., None, None]
  v = jnp.where(inside, jnp.maximum(v, 0.0), 0.0)
  return jnp.max(v, axis=-3)

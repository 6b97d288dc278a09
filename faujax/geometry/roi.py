"""ROI crops: n x n patches around AU centres (AU-GCN section 3.2), bilinear and resized.

A patch of side n around centre c = (cx, cy) covers, at scale 1, the pixels
``image[cy - n//2 : cy - n//2 + n, cx - n//2 : cx - n//2 + n]`` (numpy slicing; for odd
n the patch is centred on c, for even n the centre is pixel n//2 of the patch). Output
pixel (i, j) of an ``out_size`` patch samples the image bilinearly at
x = cx - n//2 + (j + 0.5) * n / out_size - 0.5 (half-pixel-centred resize), likewise y;
centres may be real-valued. Sampling is linear in the image, so crops are differentiable
with respect to it (and piecewise linearly with respect to the centres).

Pixels outside the image read ``fill_value``. A patch whose centre is non-finite or
outside the image is marked ``valid = False`` (and holds ``fill_value`` only if the centre
is non-finite): callers must use ``valid`` (or ``crop_patches_checked`` outside jit).
"""

from __future__ import annotations

from typing import Sequence

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from faujax.geometry import au_centres as au_centres_lib
from faujax.geometry import sampling


def patch_grid(centres: chex.Array, patch_size: int, out_size: int | None = None) -> chex.Array:
  """(..., out, out, 2) sample positions of patches around (..., 2) centres.

  With ``out == patch_size`` the offsets from the centre are -(p // 2), ..., p - 1 - p // 2 (the
  integer crop [c - p // 2, c - p // 2 + p - 1]): an odd p is centred on the centre, an even p
  (MGRR-Net's 8) half a cell up and left of it (docs/reference/face_geometry.md, "AU-GCN ROIs").
  """
  chex.assert_axis_dimension(centres, -1, 2)
  if patch_size < 1:
    raise ValueError(f'patch_size: expected a positive number of pixels, got {patch_size}.')
  out = patch_size if out_size is None else int(out_size)
  if out < 1:
    raise ValueError(f'out_size: expected a positive number of pixels, got {out_size}.')
  offs = -(patch_size // 2) + (jnp.arange(out, dtype=jnp.float32) + 0.5) * (patch_size / out) - 0.5
  gy, gx = jnp.meshgrid(offs, offs, indexing='ij')
  grid = jnp.stack([gx, gy], axis=-1)  # (out, out, 2)
  centres = jnp.asarray(centres, jnp.float32)
  return centres[..., None, None, :] + grid


@functools.partial(jax.jit, static_argnames=('patch_size', 'out_size'))
def crop_patches(image: chex.Array, centres: chex.Array, patch_size: int,
                 out_size: int | None = None,
                 fill_value: float = 0.0) -> tuple[chex.Array, chex.Array]:
  """Crops patches around centres from one image.

  Args:
    image: (H, W, C) image (use ``jax.vmap`` for batches).
    centres: (..., 2) centres, (x, y) pixels.
    patch_size: n, the side of the square patch in source pixels (static).
    out_size: side of the resized output patch; defaults to n.
    fill_value: value outside the image.

  Returns:
    patches (..., out, out, C) and valid (...) (centre finite and inside the image).
  """
  chex.assert_rank(image, 3)
  h, w, _ = image.shape
  centres = jnp.asarray(centres, jnp.float32)
  patches = sampling.bilinear_sample(image, patch_grid(centres, patch_size, out_size), fill_value)
  x, y = centres[..., 0], centres[..., 1]
  valid = jnp.isfinite(x) & jnp.isfinite(y) & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
  return patches, valid


def crop_au_rois(image: chex.Array, landmarks: chex.Array,
                 aus: str | Sequence[int] = 'bp4d', rules: str = 'jaanet',
                 patch_size: int = 25, out_size: int | None = None, unique: bool = True,
                 fill_value: float = 0.0) -> tuple[chex.Array, chex.Array]:
  """AU-GCN style ROI crops from landmarks.

  Args:
    image: (H, W, C) image; landmarks: (P, 2).
    aus, rules: see ``au_centres.au_centres``.
    patch_size, out_size: see ``crop_patches`` (AU-GCN: n = 25 on 200 x 200 faces).
    unique: True crops each shared region once (``au_centres.roi_table`` order, R
      regions); False crops per AU (R = A).

  Returns:
    patches (R, 2, out, out, C) and valid (R, 2): False where the centre is outside the
    image, non-finite, or the face is degenerate.
  """
  fn = au_centres_lib.roi_centres if unique else au_centres_lib.au_centres
  centres, ok = fn(landmarks, aus, rules)
  patches, valid = crop_patches(image, centres, patch_size, out_size, fill_value)
  return patches, valid & ok


def crop_patches_checked(image, centres, patch_size: int, out_size: int | None = None,
                         fill_value: float = 0.0) -> np.ndarray:
  """Host-level ``crop_patches`` that raises ValueError for an invalid centre."""
  patches, valid = crop_patches(jnp.asarray(image), jnp.asarray(centres), patch_size,
                                out_size, fill_value)
  bad = ~np.asarray(valid)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f'centres: centre {first} = {np.asarray(centres)[first]} is non-finite or '
                     f'outside the {image.shape[1]} x {image.shape[0]} image.')
  return np.asarray(patches)

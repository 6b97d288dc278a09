"""Anti-aliased numpy rasterisation of polygons, strokes and discs onto an RGB canvas.

Pixel (row i, column j) has its centre at (x, y) = (j, i), the convention of the landmarks. Each
primitive is evaluated only in its bounding box. Coverage comes from the signed distance to the
shape's boundary: coverage = clip(0.5 + d / feather, 0, 1) with d > 0 inside, so `feather` = 1 gives
one-pixel anti-aliasing and larger values give soft shading blobs.
"""

from __future__ import annotations

import numpy as np


def _bbox(points: np.ndarray, pad: float, shape: tuple[int, int]):
  h, w = shape
  x0 = max(int(np.floor(points[:, 0].min() - pad)), 0)
  x1 = min(int(np.ceil(points[:, 0].max() + pad)) + 1, w)
  y0 = max(int(np.floor(points[:, 1].min() - pad)), 0)
  y1 = min(int(np.ceil(points[:, 1].max() + pad)) + 1, h)
  if x0 >= x1 or y0 >= y1:
    return None
  return x0, x1, y0, y1


def _grid(box):
  """Pixel-centre coordinates of `box` as broadcastable (1, w, 1) and (h, 1, 1) arrays."""
  x0, x1, y0, y1 = box
  xs = np.arange(x0, x1, dtype=np.float32)[None, :, None]
  ys = np.arange(y0, y1, dtype=np.float32)[:, None, None]
  return xs, ys


def _next(points: np.ndarray) -> np.ndarray:
  """The following vertex of each vertex of a closed polygon."""
  return np.concatenate([points[1:], points[:1]], axis=0)


def _segment_distance(xs, ys, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Min distance from grid points (h, w, 1) to segments a->b, each (K, 2)."""
  ax, ay = a[:, 0].astype(np.float32), a[:, 1].astype(np.float32)
  dx, dy = (b[:, 0] - a[:, 0]).astype(np.float32), (b[:, 1] - a[:, 1]).astype(np.float32)
  den = np.maximum(dx * dx + dy * dy, 1e-12)
  px, py = xs - ax, ys - ay
  t = np.clip((px * dx + py * dy) / den, 0.0, 1.0)
  ex, ey = px - t * dx, py - t * dy
  return np.sqrt((ex * ex + ey * ey).min(axis=-1))


def _inside(points: np.ndarray, box) -> np.ndarray:
  """Even-odd inside test of the pixel centres of `box`, one sorted crossing list per row."""
  x0, x1, y0, y1 = box
  ys = np.arange(y0, y1, dtype=np.float64)[:, None]  # (R, 1)
  a = points
  b = _next(points)
  straddle = (a[:, 1] <= ys) != (b[:, 1] <= ys)  # (R, V)
  with np.errstate(divide='ignore', invalid='ignore'):
    xc = a[:, 0] + (ys - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
  rows, nv = straddle.shape
  off = 4.0 * (abs(x1) + abs(x0) + 1e4)
  row_base = np.arange(rows, dtype=np.float64)[:, None] * off
  xc = np.where(straddle, xc, off / 2) + row_base
  flat = np.sort(xc, axis=1).ravel()
  q = np.arange(x0, x1, dtype=np.float64)[None, :] + row_base  # (R, W)
  count_le = np.searchsorted(flat, q.ravel(), side='right').reshape(q.shape) - np.arange(rows)[:, None] * nv
  count_gt = straddle.sum(axis=1, keepdims=True) - count_le
  return (count_gt % 2) == 1


def polygon_coverage(points: np.ndarray, box, feather: float = 1.0) -> np.ndarray:
  """Coverage in [0, 1] of a closed polygon (V, 2) over the pixels of `box`.

  With `feather` <= 1.5 the signed distance is evaluated only at pixels whose 3x3 neighbourhood
  straddles the boundary; elsewhere coverage is exactly 0 or 1.
  """
  points = np.asarray(points, np.float64)
  inside = _inside(points, box)
  a = points.astype(np.float32)
  b = _next(a)
  if feather > 1.5:
    xs, ys = _grid(box)
    dist = _segment_distance(xs, ys, a, b)
    return np.clip(0.5 + np.where(inside, dist, -dist) / feather, 0.0, 1.0)
  padded = np.pad(inside, 1, mode='edge')
  h, w = inside.shape
  edge = np.zeros_like(inside)
  for dy in (0, 1, 2):
    for dx in (0, 1, 2):
      edge |= padded[dy:dy + h, dx:dx + w] != inside
  cov = inside.astype(np.float32)
  iy, ix = np.nonzero(edge)
  if iy.size:
    x0, _, y0, _ = box
    xs = (ix + x0).astype(np.float32)[:, None]
    ys = (iy + y0).astype(np.float32)[:, None]
    dist = _segment_distance(xs, ys, a, b)
    cov[iy, ix] = np.clip(0.5 + np.where(inside[iy, ix], dist, -dist) / feather, 0.0, 1.0)
  return cov


def blend(canvas: np.ndarray, box, coverage: np.ndarray, color, alpha: float = 1.0) -> None:
  """canvas[box] <- lerp(canvas, color, alpha * coverage), in place."""
  x0, x1, y0, y1 = box
  a = (alpha * coverage)[..., None]
  region = canvas[y0:y1, x0:x1]
  region += a * (np.asarray(color, np.float32) - region)


def fill_polygon(canvas: np.ndarray, points: np.ndarray, color, alpha: float = 1.0,
                 feather: float = 1.0) -> None:
  """Fills a closed polygon (V, 2) of pixel coordinates."""
  if alpha <= 0.0:
    return
  box = _bbox(points, feather + 1.0, canvas.shape[:2])
  if box is None:
    return
  blend(canvas, box, polygon_coverage(points, box, feather), color, alpha)


def stroke_segments(canvas: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: float, color,
                    alpha: float = 1.0, feather: float = 1.0) -> None:
  """Draws K segments starts[k] -> ends[k] ((K, 2) each) of a given width in pixels.

  Zero-length segments draw discs of diameter `width`.
  """
  if alpha <= 0.0 or len(starts) == 0:
    return
  pts = np.concatenate([starts, ends], axis=0)
  box = _bbox(pts, width / 2 + feather + 1.0, canvas.shape[:2])
  if box is None:
    return
  xs, ys = _grid(box)
  dist = _segment_distance(xs, ys, starts, ends)
  cov = np.clip(0.5 + (width / 2 - dist) / feather, 0.0, 1.0)
  blend(canvas, box, cov, color, alpha)


def stroke_polyline(canvas: np.ndarray, points: np.ndarray, width: float, color,
                    alpha: float = 1.0, closed: bool = False, feather: float = 1.0) -> None:
  """Draws an open (or closed) polyline (V, 2)."""
  ends = _next(points)
  starts = points
  if not closed:
    starts, ends = points[:-1], ends[:-1]
  stroke_segments(canvas, starts, ends, width, color, alpha, feather)


def disc_coverage(center: np.ndarray, radius: float, box, feather: float = 1.0) -> np.ndarray:
  xs, ys = _grid(box)
  d = np.sqrt((xs[..., 0] - center[0]) ** 2 + (ys[..., 0] - center[1]) ** 2)
  return np.clip(0.5 + (radius - d) / feather, 0.0, 1.0)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur of an (H, W, C) image with edge padding."""
  if sigma < 0.2:
    return image
  radius = max(1, int(np.ceil(2.5 * sigma)))
  t = np.arange(-radius, radius + 1, dtype=np.float32)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  k /= k.sum()
  padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode='edge')
  out = sum(k[i] * padded[i:i + image.shape[0]] for i in range(len(k)))
  padded = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode='edge')
  return sum(k[i] * padded[:, i:i + image.shape[1]] for i in range(len(k)))

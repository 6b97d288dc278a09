"""Procedural numpy face renderer: 68 iBUG landmarks displaced by AU intensities, shapes drawn from them.

The face is built in a canonical frame (x right, y down, half face width ~1). Identity parameters
place the 68 landmarks (0-based iBUG order, see ``faujax.geometry.schemes``); each AU displaces the
landmarks its muscle moves (FACS: brows 1/2/4, lids 5/7/43, cheeks 6, nose 9, lips 10/12/14/15/17/
20/23/24/25, jaw 26) and adds the texture cues FACS lists (forehead wrinkles, glabellar furrows,
crow's feet, nose-bridge wrinkles, nasolabial fold, dimples, chin-boss texture, teeth). Every point
of every shape then goes through one geometric map, canonical -> pixels (small yaw about a depth
profile, then in-plane rotation, scale and shift), and the shapes are rasterised from the mapped
points, so the returned landmarks are exactly where the drawn features are.

Public entry points: `canonical_landmarks(identity, au_strength) -> (68, 2)`,
`render_face(identity, au_strength, nuisance, image_size) -> (uint8 (S, S, 3), float32 (68, 2))`.
"""

from __future__ import annotations

import numpy as np

from faujax.data.synthetic_faces import face_model
from faujax.data.synthetic_faces import raster

AU_INDEX = face_model.AU_INDEX
_W_IN = np.array([0.0, 0.15, 0.4, 0.75, 1.0])  # brow point weights, outer -> inner
_W_OUT = np.array([1.0, 0.8, 0.45, 0.15, 0.0])
# Mouth parameter t of each outer (48-59) and inner (60-67) lip landmark.
_T_OUTER = np.array([-1.0, -0.6, -0.25, 0.0, 0.25, 0.6, 1.0, 0.6, 0.25, 0.0, -0.25, -0.6])
_UPPER_OUTER = np.array([True, True, True, True, True, True, True, False, False, False, False, False])
_T_INNER = np.array([-0.88, -0.4, 0.0, 0.4, 0.88, 0.4, 0.0, -0.4])
_UPPER_INNER = np.array([True, True, True, True, True, False, False, False])


# Overall movement gain: makes intensity 5 of a fully visible AU move its landmarks by a few
# pixels at 64-112 px, so that a small CNN can learn the AUs across subjects.
AU_GAIN = 1.5


def effective_units(identity: face_model.Identity, au_strength: np.ndarray) -> dict[int, float]:
  """Visible movement per AU in [0, ~1.8]: gain * intensity / 5 * visibility * expressivity."""
  s = np.clip(np.asarray(au_strength, np.float64), 0.0, 5.0) / 5.0
  return {au: AU_GAIN * float(s[i]) * face_model.AU_VISIBILITY[au] * identity.expressivity
          for au, i in AU_INDEX.items()}


def _mouth(idn: face_model.Identity, u: dict[int, float], s25: float, jaw: float):
  """Outer (12, 2) and inner (8, 2) lip landmarks and the lip opening."""
  hw = (idn.mouth_w + 0.09 * u[12] + 0.09 * u[20] - 0.035 * u[14] - 0.045 * u[23]
        - 0.01 * u[24] - 0.03 * u[26])
  cdy = -0.09 * u[12] + 0.085 * u[15] + 0.015 * u[20]
  parted = float(np.clip(s25 / 2.0, 0.0, 1.0))
  press = 1.0 - min(1.0, 2.0 * u[24])
  gu = (0.02 * u[25] + 0.03 * u[10]) * press
  gl = (0.035 * u[25] + 0.75 * jaw * parted) * press
  ut = idn.upper_lip * max(0.3, 1 - 0.25 * u[12] - 0.3 * u[20] - 0.55 * u[23] - 0.35 * u[24])
  lt = idn.lower_lip * max(0.3, 1 - 0.15 * u[12] - 0.3 * u[20] - 0.55 * u[23] - 0.35 * u[24]
                           + 0.35 * u[17] + 0.2 * u[15]) + 0.5 * jaw * (1 - parted)

  def lip_y(t, upper, inner):
    t = np.asarray(t)
    y_mid = idn.mouth_y + cdy * t ** 2
    h = np.sqrt(np.clip(1 - (t / 0.88) ** 2, 0, 1))
    s = np.clip(1 - np.abs(t) ** 1.6, 0, 1) ** 0.7
    raise10 = 0.05 * u[10] * np.sqrt(np.clip(1 - np.abs(t), 0, 1))
    up_in = y_mid - gu * h - raise10 - 0.015 * u[17] * (1 - np.abs(t))
    lo_in = np.maximum(y_mid + gl * h - 0.03 * u[17] * h, up_in)
    up_out = up_in - ut * s * (1 - 0.3 * np.exp(-(t / 0.12) ** 2))
    lo_out = lo_in + lt * s
    if inner:
      return np.where(upper, up_in, lo_in)
    return np.where(upper, up_out, lo_out)

  outer = np.stack([_T_OUTER * hw, lip_y(_T_OUTER, _UPPER_OUTER, False)], -1)
  inner = np.stack([_T_INNER * hw, lip_y(_T_INNER, _UPPER_INNER, True)], -1)
  return outer, inner, gu + gl


def canonical_landmarks(identity: face_model.Identity, au_strength: np.ndarray) -> np.ndarray:
  """The 68 iBUG landmarks (68, 2) in the canonical face frame for given AU intensities (18,)."""
  return _canonical(identity, au_strength)[0]


def _canonical(idn: face_model.Identity, au_strength: np.ndarray):
  au_strength = np.asarray(au_strength, np.float64)
  if au_strength.shape != (face_model.NUM_AUS,):
    raise ValueError(f'au_strength must have shape ({face_model.NUM_AUS},) in ALL_AUS order; '
                     f'got {au_strength.shape}.')
  u = effective_units(idn, au_strength)
  lm = np.zeros((68, 2))
  # Jaw 0-16: lower half of a superellipse; AU26 drops the chin, AU17 raises the chin boss.
  alpha = np.pi - np.arange(17) * np.pi / 16
  c, s = np.cos(alpha), np.sin(alpha)
  jaw = 0.17 * u[26]
  lm[0:17, 0] = idn.face_w * np.sign(c) * np.abs(c) ** idn.jaw_power * (1 - 0.05 * u[26] * s ** 2)
  lm[0:17, 1] = -0.05 + idn.face_h * s + jaw * s ** 2 - 0.035 * u[17] * s ** 8
  # Brows 17-21 (image left, outer -> inner) and 22-26 (mirror, inner -> outer).
  t = np.linspace(0.0, 1.0, 5)
  outer_x = idn.eye_sep + idn.eye_w + 0.1
  inner_x = 0.12
  bx = -(outer_x + (inner_x - outer_x) * t)
  by = idn.eye_y - idn.brow_gap - idn.brow_arch * np.sin(np.pi * (0.8 * t + 0.1)) + 0.03 * (1 - t)
  by = by - 0.13 * u[1] * _W_IN - 0.12 * u[2] * _W_OUT + 0.075 * u[4] * (0.5 + 0.5 * _W_IN)
  by = by + 0.03 * u[9] * _W_IN
  bx = bx + (0.06 * u[4] + 0.01 * u[9]) * _W_IN
  lm[17:22] = np.stack([bx, by], -1)
  lm[22:27] = np.stack([-bx[::-1], by[::-1]], -1)
  # Eyes 36-41 (image left) and 42-47.
  up_dy = -0.045 * u[5] + 0.018 * u[7] + 0.012 * u[4] + 0.008 * u[6]
  lo_dy = -0.03 * u[7] - 0.025 * u[6]
  oc_dy = -0.012 * u[6]
  closure = float(np.clip(au_strength[AU_INDEX[43]] / 4.5, 0.0, 1.0))
  ew, eh, ey = idn.eye_w, idn.eye_h, idn.eye_y
  lower = ey + 0.7 * eh + lo_dy
  upper = ey - eh + up_dy
  upper = upper + closure * (lower - 0.01 - upper)
  for cx, sign, base in ((-idn.eye_sep, -1.0, 36), (idn.eye_sep, 1.0, 42)):
    outer_pt = (cx + sign * ew, ey + oc_dy)
    inner_pt = (cx - sign * ew, ey)
    if sign < 0:  # 36 outer, 37 38 upper, 39 inner, 40 41 lower.
      pts = [outer_pt, (cx - ew / 3, upper), (cx + ew / 3, upper), inner_pt,
             (cx + ew / 3, lower), (cx - ew / 3, lower)]
    else:  # 42 inner, 43 44 upper, 45 outer, 46 47 lower.
      pts = [inner_pt, (cx - ew / 3, upper), (cx + ew / 3, upper), outer_pt,
             (cx + ew / 3, lower), (cx - ew / 3, lower)]
    lm[base:base + 6] = pts
  # Nose 27-30 bridge, 31-35 nostrils; AU9 wrinkles the nose and lifts the nostrils.
  tip_y = idn.nose_tip_y - 0.02 * u[9]
  top = np.array([0.0, ey - 0.02])
  tip = np.array([0.0, tip_y])
  for k in range(4):
    lm[27 + k] = top + (tip - top) * k / 3
  lm[29, 1] -= 0.01 * u[9]
  ny = tip_y + 0.07 - 0.045 * u[9] - 0.015 * u[10]
  nw = idn.nose_w + 0.03 * u[9]
  lm[31:36] = [(-nw, ny - 0.03), (-nw / 2, ny + 0.005), (0.0, ny + 0.015), (nw / 2, ny + 0.005),
               (nw, ny - 0.03)]
  # Mouth 48-67.
  outer, inner, opening = _mouth(idn, u, float(au_strength[AU_INDEX[25]]), jaw)
  lm[48:60] = outer
  lm[60:68] = inner
  return lm, u, opening


def _depth(idn: face_model.Identity, pts: np.ndarray) -> np.ndarray:
  x, y = pts[:, 0], pts[:, 1]
  base = 0.55 * np.sqrt(np.clip(1 - (x / 1.15) ** 2, 0, 1))
  ramp = np.clip((y - idn.eye_y) / (idn.nose_tip_y - idn.eye_y), 0, 1)
  ramp = np.where(y > idn.nose_tip_y, np.exp(-((y - idn.nose_tip_y) / 0.07) ** 2), ramp)
  return base + 0.3 * np.exp(-(x / 0.11) ** 2) * ramp - 0.3


class _Warp:
  """The canonical -> pixel map: yaw about the depth profile, then rotation, scale and shift."""

  def __init__(self, idn, nuisance: face_model.Nuisance, size: int):
    self.idn = idn
    self.cy, self.sy = np.cos(nuisance.yaw), np.sin(nuisance.yaw)
    self.ppu = size * nuisance.scale
    cr, sr = np.cos(nuisance.rotation), np.sin(nuisance.rotation)
    self.rot = np.array([[cr, -sr], [sr, cr]]) * self.ppu
    self.center = (size - 1) / 2 + size * np.asarray(nuisance.shift)

  def __call__(self, pts) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    x = pts[:, 0] * self.cy + _depth(self.idn, pts) * self.sy
    return np.stack([x, pts[:, 1]], -1) @ self.rot.T + self.center


def _bezier(p0, p1, p2, n: int = 8) -> np.ndarray:
  t = np.linspace(0, 1, n)[:, None]
  p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
  return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _ellipse(center, rx, ry, n: int = 20) -> np.ndarray:
  a = np.linspace(0, 2 * np.pi, n, endpoint=False)
  return np.stack([center[0] + rx * np.cos(a), center[1] + ry * np.sin(a)], -1)


def _rect(center, hx, hy) -> np.ndarray:
  cx, cy = center
  return np.array([(cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)])


def render_face(identity: face_model.Identity, au_strength: np.ndarray,
                nuisance: face_model.Nuisance, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Renders one face.

  Args:
    identity: the subject.
    au_strength: (18,) AU intensities in [0, 5], `faujax.labels.ALL_AUS` order.
    nuisance: pose, illumination, noise, blur and occlusion of the frame.
    image_size: S, the output is S x S.

  Returns:
    image: uint8 (S, S, 3); landmarks: float32 (68, 2) (x, y) pixel coordinates of the drawn face.
  """
  if not isinstance(image_size, (int, np.integer)) or image_size < 16:
    raise ValueError(f'image_size must be an int >= 16; got {image_size!r}.')
  size = int(image_size)
  idn = identity
  lm, u, opening = _canonical(idn, au_strength)
  warp = _Warp(idn, nuisance, size)
  px = warp.ppu  # pixels per canonical unit (for widths)
  P = warp(lm)
  canvas = np.empty((size, size, 3), np.float32)
  yy = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
  canvas[:] = idn.background[0] * (1 - yy) + idn.background[1] * yy
  skin = idn.skin
  dark = skin * 0.55
  wr = idn.wrinkle

  def line(pts, width, color, alpha, closed=False):
    if alpha < 0.01:
      return
    raster.stroke_polyline(canvas, warp(pts), max(0.6, width * px), color, min(1.0, alpha),
                           closed=closed)

  def poly(pts, color, alpha=1.0, feather=1.0):
    if alpha < 0.01:
      return
    raster.fill_polygon(canvas, warp(pts), color, min(1.0, alpha), feather)

  W, y0 = idn.face_w, -0.05
  top_h = 1.05 * idn.face_h
  phi = np.linspace(0, np.pi, 15)[1:-1]
  forehead = np.stack([W * np.cos(phi), y0 - top_h * np.sin(phi)], -1)
  # Hair behind the head.
  vol = idn.hair_volume
  back_phi = np.linspace(-0.15, np.pi + 0.15, 17)
  back = np.stack([(W + vol) * np.cos(back_phi), y0 - (top_h + vol) * np.sin(back_phi)], -1)
  if idn.long_hair:
    back = np.concatenate([back, [(-W - vol, 0.75), (W + vol, 0.75)]])
  poly(back, idn.hair)
  # Neck and ears.
  poly(np.array([(-0.42, 0.5), (0.42, 0.5), (0.5, 2.0), (-0.5, 2.0)]), skin * 0.82)
  ear_y = (idn.eye_y + idn.nose_tip_y) / 2
  poly(_ellipse((-W - 0.02, ear_y), 0.09, 0.2, 12), skin * 0.9)
  poly(_ellipse((W + 0.02, ear_y), 0.09, 0.2, 12), skin * 0.9)
  # Head from the jaw landmarks and the forehead arc.
  poly(np.concatenate([lm[0:17], forehead]), skin)
  # Cheeks (AU6 raises and bulges them).
  for sgn, eye in ((-1, lm[36:42]), (1, lm[42:48])):
    cx = sgn * (idn.eye_sep + 0.05)
    cy = eye[:, 1].max() + 0.22 - 0.08 * u[6]
    poly(_ellipse((cx, cy), 0.2, 0.11 + 0.03 * u[6], 12), np.minimum(skin * 1.12, 1.0),
         0.25 + 0.5 * u[6], feather=0.06 * px)
    poly(_ellipse((cx, cy + 0.13), 0.2, 0.05, 12), skin * 0.8, 0.5 * u[6], feather=0.05 * px)
  # Beard shadow.
  if idn.stubble > 0:
    upper_edge = np.array([(0.55, lm[54, 1] - 0.08), (0.0, lm[33, 1] + 0.03),
                           (-0.55, lm[48, 1] - 0.08)])
    poly(np.concatenate([lm[3:14], upper_edge]), idn.hair * 0.6 + skin * 0.4, idn.stubble,
         feather=2.0)
  # Nasolabial folds (deepened by AU9, AU10, AU12).
  fold_alpha = wr * (0.12 + 0.7 * max(u[9], u[10], 0.8 * u[12]))
  for nos, corner, sgn in ((31, 48, -1), (35, 54, 1)):
    a = lm[nos] + (sgn * 0.05, 0.0)
    b = lm[corner] + (sgn * 0.07, 0.08)
    ctrl = ((a[0] + b[0]) / 2 + sgn * 0.08, (a[1] + b[1]) / 2)
    line(_bezier(a, ctrl, b), 0.018, dark, fold_alpha)
  # Forehead wrinkles: AU1 centre, AU2 sides.
  brow_top = lm[17:27, 1].min()
  for k, off in enumerate((0.1, 0.17, 0.24)):
    y = brow_top - off
    if y < idn.hairline + 0.03:
      continue
    xs = np.linspace(-0.35, 0.35, 7)
    line(np.stack([xs, y + 0.02 * (xs / 0.35) ** 2], -1), 0.012, dark, wr * 0.9 * u[1])
    for sgn in (-1, 1):
      xs2 = sgn * np.linspace(0.3, 0.72, 5)
      line(np.stack([xs2, y + 0.03 - 0.03 * ((np.abs(xs2) - 0.3) / 0.42)], -1), 0.012, dark,
           wr * 0.9 * u[2])
  # Glabella: vertical furrows (AU4), nose-bridge wrinkles (AU9).
  by_in = (lm[21, 1] + lm[22, 1]) / 2
  for sgn in (-1, 1):
    line(np.array([(sgn * 0.045, by_in - 0.03), (sgn * 0.04, by_in + 0.1)]), 0.014, dark,
         wr * 1.2 * u[4])
  for k in range(3):
    y = lm[27, 1] + (lm[29, 1] - lm[27, 1]) * (0.3 + 0.25 * k)
    line(np.array([(-0.07, y), (0.0, y - 0.012), (0.07, y)]), 0.012, dark, wr * 1.2 * u[9])
  # Brows.
  for sl in (slice(17, 22), slice(22, 27)):
    b = lm[sl]
    thick = idn.brow_thick * np.linspace(0.6, 1.0, 5)
    if sl.start == 22:
      thick = thick[::-1]
    poly(np.concatenate([b - np.stack([0 * thick, thick * 0.5], -1),
                         (b + np.stack([0 * thick, thick * 0.5], -1))[::-1]]), idn.hair * 0.75, 0.92)
  # Eyes: crease, sclera, iris, lids; AU6 crow's feet, AU7 lower-lid bulge.
  for base, sgn in ((36, -1), (42, 1)):
    eye = lm[base:base + 6]
    crease = eye[[0, 1, 2, 3]] + (0.0, -0.05 + 0.03 * u[5])
    line(crease, 0.012, dark, 0.45 * (1 - min(1.0, u[5] * 1.5)))
    pe = warp(eye)
    box = raster._bbox(pe, 2.0, canvas.shape[:2])
    if box is not None:
      cov = raster.polygon_coverage(pe, box)
      raster.blend(canvas, box, cov, (0.93, 0.91, 0.88))
      center = warp(eye.mean(0, keepdims=True) + (0.0, 0.01))[0]
      r_iris = 0.075 * px
      raster.blend(canvas, box, np.minimum(cov, raster.disc_coverage(center, r_iris, box)), idn.iris)
      raster.blend(canvas, box, np.minimum(cov, raster.disc_coverage(center, 0.45 * r_iris, box)),
                   (0.03, 0.03, 0.03))
    up = eye[[0, 1, 2, 3]]
    low = eye[[3, 4, 5, 0]]
    line(up, 0.022, (0.08, 0.06, 0.05), 0.95)
    line(low, 0.01, dark, 0.55)
    line(low[1:3] + (0.0, 0.035), 0.012, dark, wr * 1.2 * u[7])
    corner = eye[0] if sgn < 0 else eye[3]
    starts = np.array([corner + (sgn * 0.05, d) for d in (-0.04, 0.0, 0.04)])
    ends = np.array([corner + (sgn * 0.15, 2.5 * d) for d in (-0.04, 0.0, 0.04)])
    if u[6] > 0.01:
      raster.stroke_segments(canvas, warp(starts), warp(ends), max(0.6, 0.012 * px), dark,
                             min(1.0, wr * 1.4 * u[6]))
    below = eye[[4, 5]] + (0.0, 0.08)
    line(below, 0.014, dark, wr * 0.9 * u[6])
  # Nose.
  for sgn in (-1, 1):
    line(np.array([(sgn * 0.05, lm[27, 1] + 0.08), (sgn * 0.07, lm[30, 1] - 0.02)]), 0.02, dark, 0.18)
  line(lm[31:36], 0.014, dark, 0.5)
  flare = 1 + 0.5 * u[9]
  for a, b in ((31, 32), (34, 35)):
    c = (lm[a] + lm[b]) / 2 + (0.0, -0.012)
    poly(_ellipse(c, 0.032 * flare, 0.016 * flare, 10), skin * 0.3, 0.85)
  # Mouth: lips, cavity, teeth.
  poly(lm[48:60], idn.lip)
  inner = lm[60:68]
  if opening > 0.004:
    pin = warp(inner)
    box = raster._bbox(pin, 2.0, canvas.shape[:2])
    if box is not None:
      cov = raster.polygon_coverage(pin, box)
      raster.blend(canvas, box, cov, (0.2, 0.06, 0.06))
      teeth_up = np.concatenate([inner[0:5], (inner[0:5] + (0.0, 0.045))[::-1]])
      raster.blend(canvas, box, np.minimum(cov, raster.polygon_coverage(warp(teeth_up), box)),
                   (0.95, 0.93, 0.86))
      low_pts = np.concatenate([inner[[4, 5, 6, 7, 0]], (inner[[4, 5, 6, 7, 0]] + (0.0, -0.03))[::-1]])
      raster.blend(canvas, box, np.minimum(cov, raster.polygon_coverage(warp(low_pts), box)),
                   (0.9, 0.88, 0.8), 0.9)
  line(inner[[0, 1, 2, 3, 4]], 0.012, idn.lip * 0.45, 0.8)
  line(lm[48:60], 0.008, idn.lip * 0.6, 0.25 + 0.7 * u[23], closed=True)
  # Lip-region texture: dimples (AU14), depressor folds (AU15), stretch (AU20), press bulges (AU24),
  # chin boss (AU17).
  for corner, sgn in ((48, -1), (54, 1)):
    c = lm[corner]
    line(_bezier(c + (sgn * 0.04, -0.035), c + (sgn * 0.065, 0.0), c + (sgn * 0.04, 0.035), 5),
         0.016, dark, wr * 1.6 * u[14])
    line(np.array([c + (0.0, 0.025), c + (sgn * 0.03, 0.13)]), 0.014, dark, wr * 1.2 * u[15])
    line(np.array([c + (sgn * 0.02, 0.0), c + (sgn * 0.1, 0.005)]), 0.012, dark, wr * 1.2 * u[20])
  hw = lm[54, 0] - lm[51, 0]
  xs = np.linspace(-0.6, 0.6, 7) * hw
  line(np.stack([xs, lm[51, 1] - 0.035 + 0.02 * (xs / hw) ** 2], -1), 0.014, dark, wr * 1.5 * u[24])
  line(np.stack([xs, lm[57, 1] + 0.035 - 0.02 * (xs / hw) ** 2], -1), 0.014, dark, wr * 1.5 * u[24])
  sulcus_y = lm[57, 1] + 0.06
  line(_bezier((-0.12, sulcus_y + 0.02), (0.0, sulcus_y - 0.03 * (1 + 2 * u[17])),
               (0.12, sulcus_y + 0.02), 6), 0.014, dark, 0.15 + wr * 0.8 * u[17])
  chin_lo = lm[8, 1] - 0.07
  if chin_lo > sulcus_y + 0.05 and u[17] > 0.01:
    dots = np.stack([-0.14 + 0.28 * idn.dots[:, 0],
                     sulcus_y + 0.04 + (chin_lo - sulcus_y - 0.04) * idn.dots[:, 1]], -1)
    dp = warp(dots)
    raster.stroke_segments(canvas, dp, dp, max(0.8, 0.025 * px), dark, min(1.0, wr * 1.3 * u[17]))
  # Hair in front: the hairline (optionally a fringe).
  hl = idn.hairline
  fringe_y = idn.eye_y - idn.brow_gap - 0.12 if idn.fringe else hl
  xs = np.linspace(W * 0.98, -W * 0.98, 11)
  hairline = np.stack([xs, fringe_y + (hl - fringe_y) * (np.abs(xs) / W) ** 3
                       + 0.25 * (np.abs(xs) / W) ** 4], -1)
  front_phi = np.linspace(np.pi, 0, 13)
  cap = np.stack([(W + 0.5 * vol) * np.cos(front_phi),
                  y0 - (top_h + 0.5 * vol) * np.sin(front_phi)], -1)
  poly(np.concatenate([cap, hairline]), idn.hair)
  # Glasses.
  if idn.glasses:
    for sgn in (-1, 1):
      line(_rect((sgn * idn.eye_sep, idn.eye_y), idn.eye_w + 0.07, 0.11), 0.02, (0.1, 0.1, 0.12),
           0.95, closed=True)
    line(np.array([(-idn.eye_sep + idn.eye_w + 0.07, idn.eye_y - 0.03),
                   (idn.eye_sep - idn.eye_w - 0.07, idn.eye_y - 0.03)]), 0.02, (0.1, 0.1, 0.12), 0.95)
  # Occlusion.
  q = nuisance.occlusion_params
  if nuisance.occlusion == 'eyes':
    side = int(q[0] * 3)  # 0 both, 1 image-left eye, 2 image-right eye
    cx = (0.0, -idn.eye_sep, idn.eye_sep)[side]
    hx = (idn.eye_sep + idn.eye_w + 0.1) if side == 0 else idn.eye_w + 0.12
    color = (np.array([0.05, 0.05, 0.06]) if q[3] < 0.5
             else face_model.sample_identity(int(q[4] * 1e6), 0).skin)
    poly(_rect((cx + (q[1] - 0.5) * 0.1, idn.eye_y + (q[2] - 0.5) * 0.12), hx, 0.09 + 0.05 * q[5]),
         color)
  elif nuisance.occlusion == 'mouth':
    color = (face_model.sample_identity(int(q[4] * 1e6), 0).skin if q[5] < 0.6
             else np.array([0.35 + 0.6 * q[3], 0.55 + 0.4 * q[3], 0.85]))
    poly(_ellipse(((q[0] - 0.5) * 0.5, idn.mouth_y + (q[1] - 0.3) * 0.15),
                  0.28 + 0.15 * q[2], 0.14 + 0.1 * q[3], 16), color)
  elif nuisance.occlusion == 'patch':
    poly(_rect(((q[0] - 0.5) * 1.4, (q[1] - 0.5) * 1.6), 0.12 + 0.2 * q[2], 0.12 + 0.2 * q[3]),
         np.array([q[4], q[5], q[2]]) * 0.9)
  # Illumination, blur, noise.
  ys, xs_ = np.mgrid[0:size, 0:size].astype(np.float32)
  d = np.array([np.cos(nuisance.light_dir), np.sin(nuisance.light_dir)], np.float32)
  ramp = ((xs_ - size / 2) * d[0] + (ys - size / 2) * d[1]) / size
  canvas *= (nuisance.ambient + nuisance.light_strength * ramp)[..., None]
  canvas = raster.gaussian_blur(canvas, nuisance.blur * size)
  if nuisance.noise > 0:
    canvas = canvas + np.random.default_rng(nuisance.noise_seed).normal(
        0, nuisance.noise, canvas.shape).astype(np.float32)
  image = np.clip(np.round(canvas * 255.0), 0, 255).astype(np.uint8)
  return image, P.astype(np.float32)

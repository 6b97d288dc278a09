"""AU centres from facial landmarks: the JAA-Net (49-point) and EAC-Net (68-point) rules.

Every AU has two centres (a left/right pair, or an upper/lower pair for midline regions).
A centre is the mean of one or more landmarks plus a vertical offset in units of the ruler
r, the horizontal distance between the inner eye corners (JAA-Net: r = |x22 - x25| on 49
points; EAC-Net: r = |x39 - x42| on 68 points -- the same two points). y grows downwards,
so a negative offset is above the landmark. Rules (docs/reference/face_geometry.md, "JAA-Net AU
centres" and "EAC-Net AU centres"), with indices in each method's own scheme (0-based):

  JAA-Net, 49 points: AU1 (4,-r/2),(5,-r/2); AU2 (1,-r/3),(8,-r/3); AU4 (2,+r/3),(7,+r/3);
    AU6 (24,+r),(29,+r); AU7 21, 26; AU10 43, 45; AU12/14/15 31, 37; AU17 (39,+r/2),(41,+r/2);
    AU23/24 34, 40; AU9 (15,-r/2),(17,-r/2); AU25 34, 40; AU26 (39,+r/2),(41,+r/2).
  EAC-Net, 68 points: AU1 (21,-r/2),(22,-r/2); AU2 (18,-r/3),(25,-r/3); AU4 (19,+r/3),
    (24,+r/3); AU6 (41,+r),(46,+r); AU7 38, 43; AU10 49, 53; AU12/14 48, 54; AU17 51, 57;
    AU23/24 61, 63; the lower-lip region (56,+r/2),(58,+r/2).

faujax's choices for AUs the published rules do not cover (``RULE_SOURCES`` marks them):
  both rule sets: AU5 (upper lid raiser): the upper-lid midpoints (mean of 68-pt 37, 38 and
    of 43, 44) raised by r/8, the lid-fold area the raised lid exposes; AU20 (lip
    stretcher): the lip corners 48, 54 (shares the AU12 region); AU43 (eyes closed): the
    eye centres (mean of 36-41 and of 42-47), the aperture that closes.
  EAC-Net only: AU15 shares the AU12/14 lip-corner region (as in JAA-Net and AU-GCN);
    AU9 uses JAA-Net's nostril rule (68-pt (32,-r/2),(34,-r/2)); AU25 and AU26 share the
    AU23/24 inner-lip region 61, 63, as AU-GCN (which takes its ROIs from EAC-Net) states:
    with AU9's region as one ROI between its two centres (``faujax.models.parts.roi_nodes``)
    this gives AU-GCN's counts, 9 regions x 2 + the whole face = 19 ROIs on BP4D and
    6 x 2 + 1 + the face = 14 on DISFA. The lower-lip region is kept as ``EACNET_LOWER_LIP``.

Rules are stored in 68-point indices and apply to 68-, 66- or 49-point landmarks alike
(no rule uses the jaw or the inner mouth corners). Centres are linear in the landmarks:
centres = W @ landmarks + offsets(r), so the functions are jit-able, batch over leading
axes and are differentiable.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import chex
import jax.numpy as jnp
import numpy as np

from faujax import labels
from faujax.geometry import conversions
from faujax.geometry import schemes

RULE_SET_NAMES = ('jaanet', 'eacnet')
RULER_POINTS_68 = (39, 42)  # inner eye corners; r = |x39 - x42|.


@dataclasses.dataclass(frozen=True)
class Centre:
  """One AU centre: the mean of ``points`` (68-point indices) moved down by ``dy`` * r."""
  points: tuple[int, ...]
  dy: float = 0.0


Region = tuple[Centre, Centre]


def _c(*points: int, dy: float = 0.0) -> Centre:
  return Centre(tuple(int(p) for p in points), float(dy))


def _from_49(i: int) -> int:
  return int(schemes.IDX_49_IN_68[i])


def _j(i: int, dy: float = 0.0) -> Centre:
  """A JAA-Net centre given in its native 49-point index."""
  return _c(_from_49(i), dy=dy)


_JAANET_PUBLISHED: dict[int, Region] = {
    1: (_j(4, -1 / 2), _j(5, -1 / 2)),
    2: (_j(1, -1 / 3), _j(8, -1 / 3)),
    4: (_j(2, 1 / 3), _j(7, 1 / 3)),
    6: (_j(24, 1.0), _j(29, 1.0)),
    7: (_j(21), _j(26)),
    10: (_j(43), _j(45)),
    12: (_j(31), _j(37)),
    14: (_j(31), _j(37)),
    15: (_j(31), _j(37)),
    17: (_j(39, 1 / 2), _j(41, 1 / 2)),
    23: (_j(34), _j(40)),
    24: (_j(34), _j(40)),
    9: (_j(15, -1 / 2), _j(17, -1 / 2)),
    25: (_j(34), _j(40)),
    26: (_j(39, 1 / 2), _j(41, 1 / 2)),
}

_EACNET_PUBLISHED: dict[int, Region] = {
    1: (_c(21, dy=-1 / 2), _c(22, dy=-1 / 2)),
    2: (_c(18, dy=-1 / 3), _c(25, dy=-1 / 3)),
    4: (_c(19, dy=1 / 3), _c(24, dy=1 / 3)),
    6: (_c(41, dy=1.0), _c(46, dy=1.0)),
    7: (_c(38), _c(43)),
    10: (_c(49), _c(53)),
    12: (_c(48), _c(54)),
    14: (_c(48), _c(54)),
    17: (_c(51), _c(57)),
    23: (_c(61), _c(63)),
    24: (_c(61), _c(63)),
}
EACNET_LOWER_LIP: Region = (_c(56, dy=1 / 2), _c(58, dy=1 / 2))

_FAUJAX_BOTH: dict[int, Region] = {
    5: (_c(37, 38, dy=-1 / 8), _c(43, 44, dy=-1 / 8)),
    20: (_c(48), _c(54)),
    43: (_c(36, 37, 38, 39, 40, 41), _c(42, 43, 44, 45, 46, 47)),
}
_FAUJAX_EACNET: dict[int, Region] = {
    15: (_c(48), _c(54)),
    9: (_c(32, dy=-1 / 2), _c(34, dy=-1 / 2)),
    25: (_c(61), _c(63)),
    26: (_c(61), _c(63)),
}

RULES: dict[str, dict[int, Region]] = {
    'jaanet': {**_JAANET_PUBLISHED, **_FAUJAX_BOTH},
    'eacnet': {**_EACNET_PUBLISHED, **_FAUJAX_EACNET, **_FAUJAX_BOTH},
}
RULE_SOURCES: dict[str, dict[int, str]] = {
    'jaanet': {a: ('published' if a in _JAANET_PUBLISHED else 'faujax') for a in RULES['jaanet']},
    'eacnet': {a: ('published' if a in _EACNET_PUBLISHED else 'faujax') for a in RULES['eacnet']},
}


def _resolve_aus(aus: str | Sequence[int]) -> tuple[int, ...]:
  if isinstance(aus, str):
    return labels.au_set(aus)
  return tuple(int(a) for a in aus)


def au_regions(aus: str | Sequence[int], rules: str = 'jaanet') -> tuple[Region, ...]:
  """The (centre, centre) rule of each AU, in the order of ``aus``."""
  if rules not in RULES:
    raise ValueError(f'rules: expected one of {RULE_SET_NAMES}, got {rules!r}.')
  aus = _resolve_aus(aus)
  unknown = [a for a in aus if a not in RULES[rules]]
  if unknown:
    raise ValueError(f'aus: AU{unknown} have no centre rule in {rules!r}; known AUs '
                     f'{sorted(RULES[rules])}.')
  return tuple(RULES[rules][a] for a in aus)


def _weights(regions: Sequence[Region], num_points: int) -> tuple[np.ndarray, np.ndarray]:
  """(A, 2, P) averaging weights and (A, 2) offsets in units of r."""
  w = np.zeros((len(regions), 2, num_points), np.float32)
  dy = np.zeros((len(regions), 2), np.float32)
  for a, region in enumerate(regions):
    for k, centre in enumerate(region):
      idx = conversions.points_index(np.array(centre.points), num_points)
      w[a, k, idx] = 1.0 / len(idx)
      dy[a, k] = centre.dy
  return w, dy


def ruler(landmarks: chex.Array) -> chex.Array:
  """r = |x39 - x42| (68-point indices; inner eye corners) of (..., P, 2) landmarks -> (...)."""
  p = conversions.num_points_of(landmarks)
  i, j = conversions.points_index(np.array(RULER_POINTS_68), p)
  landmarks = jnp.asarray(landmarks)
  return jnp.abs(landmarks[..., i, 0] - landmarks[..., j, 0])


def _centres_of_regions(landmarks: chex.Array, regions: Sequence[Region],
                        min_ruler: float) -> tuple[chex.Array, chex.Array]:
  p = conversions.num_points_of(landmarks)
  landmarks = jnp.asarray(landmarks, jnp.result_type(jnp.asarray(landmarks).dtype, jnp.float32))
  w, dy = _weights(regions, p)
  r = ruler(landmarks)
  centres = jnp.einsum('akp,...pc->...akc', jnp.asarray(w), landmarks)
  offset = jnp.asarray(dy) * r[..., None, None]
  centres = centres.at[..., 1].add(offset)
  used = np.zeros(p, bool)
  used[w.reshape(-1, p).sum(0) > 0] = True
  used[conversions.points_index(np.array(RULER_POINTS_68), p)] = True
  finite = jnp.all(jnp.isfinite(landmarks[..., np.flatnonzero(used), :]), axis=(-2, -1))
  ok = finite & (r > min_ruler)
  return centres, ok


def au_centres(landmarks: chex.Array, aus: str | Sequence[int] = 'bp4d',
               rules: str = 'jaanet', min_ruler: float = 1.0) -> tuple[chex.Array, chex.Array]:
  """Two centres per AU (JAA-Net / EAC-Net rules, see module docstring).

  Args:
    landmarks: (..., P, 2) landmarks, P in (68, 66, 49), (x, y) pixels, y down.
    aus: AU numbers, or a label-space name of ``faujax.labels`` ('bp4d', 'disfa', ...).
    rules: 'jaanet' or 'eacnet'.
    min_ruler: faces whose ruler r is at most this many pixels (coincident eyes) are not
      ok.

  Returns:
    centres: (..., A, 2, 2): [..., a, k] is the (x, y) of centre k of AU ``aus[a]``;
      for left/right pairs k = 0 is the subject's right (image left on a frontal face).
    ok: (...) bool; False when a used landmark is not finite or the face is degenerate.
      Centres of a not-ok face are meaningless: check ``ok`` (or use
      ``au_centres_checked`` outside jit).
  """
  return _centres_of_regions(landmarks, au_regions(aus, rules), min_ruler)


def au_centres_checked(landmarks, aus: str | Sequence[int] = 'bp4d', rules: str = 'jaanet'):
  """Host-level ``au_centres`` that raises ValueError instead of returning ok = False."""
  arr = conversions.validate_landmarks(landmarks)
  centres, ok = au_centres(arr, aus, rules)
  bad = ~np.asarray(ok)
  if bad.any():
    raise ValueError(f'landmarks: degenerate face (eye corners coincide horizontally, ruler '
                     f'|x39 - x42| ~ 0) at batch index {tuple(np.argwhere(bad)[0])}.')
  return np.asarray(centres)


@dataclasses.dataclass(frozen=True)
class Roi:
  """A unique AU region: its two centres and the AUs (in input order) that share it."""
  region: Region
  aus: tuple[int, ...]


def roi_table(aus: str | Sequence[int] = 'bp4d', rules: str = 'jaanet') -> tuple[Roi, ...]:
  """Unique regions of an AU set in first-appearance order, with the AUs sharing each.

  E.g. BP4D with the JAA-Net rules gives 9 regions: AU12, AU14 and AU15 share the lip
  corners, AU23 and AU24 share the lip midline (AU-GCN's 9 x 2 = 18 local ROIs).
  """
  aus = _resolve_aus(aus)
  regions = au_regions(aus, rules)
  order: list[Region] = []
  members: dict[Region, list[int]] = {}
  for a, region in zip(aus, regions):
    if region not in members:
      order.append(region)
      members[region] = []
    members[region].append(a)
  return tuple(Roi(r, tuple(members[r])) for r in order)


def au_to_roi(aus: str | Sequence[int] = 'bp4d', rules: str = 'jaanet') -> np.ndarray:
  """(A,) index of each AU's region in ``roi_table(aus, rules)``."""
  aus = _resolve_aus(aus)
  table = roi_table(aus, rules)
  where = {roi.region: i for i, roi in enumerate(table)}
  return np.array([where[r] for r in au_regions(aus, rules)], np.int64)


def roi_centres(landmarks: chex.Array, aus: str | Sequence[int] = 'bp4d',
                rules: str = 'jaanet', min_ruler: float = 1.0) -> tuple[chex.Array, chex.Array]:
  """Centres of the unique regions: ((..., R, 2, 2), ok (...)), R = len(roi_table(...))."""
  regions = [roi.region for roi in roi_table(aus, rules)]
  return _centres_of_regions(landmarks, regions, min_ruler)


def centre_flip_index(aus: str | Sequence[int] = 'bp4d', rules: str = 'jaanet') -> np.ndarray:
  """(A, 2) index k' such that centre k of a mirrored face mirrors centre k' of the face.

  Left/right pairs swap (k' = 1 - k); midline pairs (e.g. AU17 51/57 in EAC-Net) keep
  k' = k. Derived from ``schemes.FLIP_68``; raises ValueError for a rule not closed under
  flipping.
  """
  out = np.zeros((len(_resolve_aus(aus)), 2), np.int64)
  for a, region in enumerate(au_regions(aus, rules)):
    for k, centre in enumerate(region):
      mirrored = Centre(tuple(sorted(int(schemes.FLIP_68[p]) for p in centre.points)), centre.dy)
      for kk, other in enumerate(region):
        if mirrored == Centre(tuple(sorted(other.points)), other.dy):
          out[a, k] = kk
          break
      else:
        raise ValueError(f'rule {rules!r} for AU index {a} is not closed under flipping.')
  return out

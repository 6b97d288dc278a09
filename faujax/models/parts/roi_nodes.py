"""AU-GCN's ROI nodes: which ROIs a label space has, where they are, their crops and labels.

AU-GCN sec. 3.2: every AU region of the EAC-Net rules (``faujax.geometry.au_centres``; AUs that
share a region share its ROIs, e.g. AU12/14/15 and AU23/24 on BP4D) gives two n x n ROIs, a
left / right or up / down pair, except the regions of ``single_aus`` (``SINGLE_ROI_AUS``: AU9),
which give one ROI at the midpoint of the region's two centres; a last node holds the whole face
resized to n x n. The paper's counts read this way: 12 ROIs shared by BP4D and DISFA (AU1, AU2,
AU4, AU6, AU12 and the inner-lip region of AU23-26, two each), 6 more on BP4D (AU7, AU10, AU17),
"one" more on DISFA (AU9), plus the face: 19 on BP4D, 14 on DISFA (``docs/reference/
model_details.md``, "AU-GCN ROIs"). The layout is built from the AU set alone, so every label
space (EmotioNet, the synthetic configs) gets its ROIs by the same rule; an AU without a rule is
an error naming it.

Node order: region 0 centre 0, region 0 centre 1 (or region 0's one midpoint), region 1 ..., then
the face. Centre 0 of a left / right pair is the subject's right (``au_centres.au_centres``).

ROI labels (eq. 2): ``membership[r, c] = 1`` if AU c belongs to ROI r (the partition rule); the
whole-face node holds every AU. Targets are ``Y^ROI = y[None, :] * membership``.

Out-of-image ROIs: a centre is clamped so that its n x n patch lies inside the image (a
non-finite centre goes to the image centre); ``clamped`` marks the ROIs that moved, for the run's
statistics. Crops (``faujax.geometry.roi.crop_patches``) are bilinear, so differentiable in the
image.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from faujax import relations
from faujax.geometry import au_centres as au_centres_lib
from faujax.geometry import roi as roi_lib

# AU-GCN sec. 3.2: the AUs whose region is one ROI (DISFA's "addition one" ROI, AU9 the nose
# wrinkler, whose EAC-Net-style centres are the two nostril wings: one ROI between them).
SINGLE_ROI_AUS: tuple[int, ...] = (9,)


@dataclasses.dataclass(frozen=True)
class RoiLayout:
  """The ROI nodes of one label space.

  Attributes:
    aus: the AU numbers of the label columns (C,).
    rules: the centre rule set ('eacnet' in AU-GCN).
    specs: one ``relations.Roi`` ``(aus, side)`` per node (R,): side 'right' / 'left' or
      'up' / 'down' for a pair, None for a single ROI; the face as ``(None, None)``.
    membership: (R, C) float32 0/1, the ROI label mask of eq. 2.
    num_local: the number of landmark ROIs (2 per region, 1 per single-ROI region); the face
      node, if any, comes last.
    with_face: whether the last node is the whole face.
    centre_weights: (num_local, 2 * regions) float32: landmark ROI l's centre is
      ``sum_k centre_weights[l, k] * (the regions' centres, flattened)`` (a pair's node picks
      its centre, a single ROI averages the two).
  """
  aus: tuple[int, ...]
  rules: str
  specs: tuple[relations.Roi, ...]
  membership: np.ndarray
  num_local: int
  with_face: bool
  centre_weights: np.ndarray

  @property
  def num_nodes(self) -> int:
    return len(self.specs)


def roi_layout(aus: Sequence[int], *, rules: str = 'eacnet', with_face: bool = True,
               single_aus: Sequence[int] = SINGLE_ROI_AUS,
               where: str = 'config.model.roi_rules') -> RoiLayout:
  """The ROI nodes of the AUs ``aus`` (see the module docstring).

  ``single_aus``: AUs whose region gives one ROI (at the midpoint of its two centres) instead
  of a pair; a region shared by several AUs is single only when all of them are listed. AUs
  outside ``aus`` are ignored (BP4D has no AU9); ``()`` gives every region two ROIs.

  Raises:
    ValueError: an AU has no region rule in ``rules`` (the message names the AU and ``where``).
  """
  aus = tuple(int(a) for a in aus)
  single = {int(a) for a in single_aus}
  known = au_centres_lib.RULES.get(rules)
  if known is None:
    raise ValueError(f'{where}={rules!r}; expected one of {au_centres_lib.RULE_SET_NAMES}.')
  missing = [a for a in aus if a not in known]
  if missing:
    raise ValueError(f'{where}={rules!r} has no ROI rule for '
                     f'{", ".join(f"AU{a}" for a in missing)} (label space {["AU%d" % a for a in aus]}); '
                     f'AUs with a rule: {sorted(known)}.')
  table = au_centres_lib.roi_table(aus, rules)
  flip = au_centres_lib.centre_flip_index(aus, rules)
  first_au = {roi.region: aus.index(roi.aus[0]) for roi in table}
  specs: list[relations.Roi] = []
  weights: list[np.ndarray] = []
  for g, roi in enumerate(table):
    members = roi.aus[0] if len(roi.aus) == 1 else tuple(roi.aus)
    if set(roi.aus) <= single:
      specs.append((members, None))
      weights.append(np.eye(2 * len(table), dtype=np.float32)[[2 * g, 2 * g + 1]].mean(0))
      continue
    swaps = flip[first_au[roi.region], 0] == 1
    sides = ('right', 'left') if swaps else ('up', 'down')
    specs.extend((members, side) for side in sides)
    weights.extend(np.eye(2 * len(table), dtype=np.float32)[[2 * g, 2 * g + 1]])
  num_local = len(specs)
  if with_face:
    specs.append((None, None))
  membership = np.zeros((len(specs), len(aus)), np.float32)
  for r, (members, _) in enumerate(specs):
    if members is None:
      membership[r] = 1.0
    else:
      for a in (members if isinstance(members, tuple) else (members,)):
        membership[r, aus.index(a)] = 1.0
  return RoiLayout(aus=aus, rules=rules, specs=tuple(specs), membership=membership,
                   num_local=num_local, with_face=with_face,
                   centre_weights=np.stack(weights).astype(np.float32))


def clamp_centres(centres: chex.Array, image_size: int,
                  patch_size: int) -> tuple[chex.Array, chex.Array]:
  """Moves (..., 2) centres so that their ``patch_size`` patch lies inside the image.

  The patch of ``roi.crop_patches`` around c covers [c - n//2, c - n//2 + n - 1]; its centre is
  clamped to [n//2, S - n + n//2] (to the image centre when the patch is wider than the image or
  the centre is not finite). Returns (clamped centres, (...) bool: moved by more than 1e-3 px or
  not finite).
  """
  n, s = int(patch_size), int(image_size)
  lo, hi = float(n // 2), float(s - n + n // 2)
  if hi < lo:
    lo = hi = (s - 1) / 2.0
  finite = jnp.all(jnp.isfinite(centres), axis=-1)
  safe = jnp.where(finite[..., None], centres, (s - 1) / 2.0)
  clamped = jnp.clip(safe, lo, hi)
  moved = jnp.any(jnp.abs(clamped - safe) > 1e-3, axis=-1) | ~finite
  return clamped, moved


def local_centres(landmarks: chex.Array, layout: RoiLayout) -> chex.Array:
  """(B, P, 2) landmarks -> (B, num_local, 2) ROI centres in node order (unclamped)."""
  centres, _ = au_centres_lib.roi_centres(landmarks, layout.aus, layout.rules)
  flat = centres.reshape(centres.shape[:-3] + (-1, 2))               # (B, 2 regions, 2)
  return jnp.einsum('lk,...kc->...lc', jnp.asarray(layout.centre_weights, flat.dtype), flat)


def crop_rois(images: chex.Array, landmarks: chex.Array, layout: RoiLayout,
              patch_size: int) -> tuple[chex.Array, chex.Array]:
  """The ROI patches of a batch: ((B, R, n, n, ch), clamped (B, num_local) bool).

  The landmark ROIs are n x n crops around the clamped centres; the face node (if any) is the
  whole image resized to n x n (antialiased bilinear).
  """
  chex.assert_rank(images, 4)
  chex.assert_rank(landmarks, 3)
  b, s, _, ch = images.shape
  centres, clamped = clamp_centres(local_centres(landmarks, layout), s, patch_size)
  patches, _ = jax.vmap(lambda im, c: roi_lib.crop_patches(im, c, patch_size))(images, centres)
  if layout.with_face:
    face = jax.image.resize(images, (b, patch_size, patch_size, ch), 'linear', antialias=True)
    patches = jnp.concatenate([patches, face[:, None].astype(patches.dtype)], axis=1)
  return patches, clamped

"""Training losses of the five papers, as pure, jit- and grad-safe JAX functions.

Every loss takes a label mask (1 = known label, 0 = unknown / padding): masked entries
contribute nothing to the value or the gradient, and a fully masked batch gives 0 (never
NaN). Every loss returns a float32 scalar and computes in float32 even for bf16 inputs.

Reductions (documented per function) are chosen so that, with no mask, each loss equals the
paper's equation averaged over the batch:

  * per-entry multi-label losses (BCE, Dice, asymmetric): sum over valid (example, label)
    entries divided by the number of valid entries -- with no mask this is
    ``mean_b (1/C) sum_c`` as in AU-GCN eq. 7-8, MGRR-Net eq. 9 and MACG eq. 15;
  * class-weighted CE: torch ``CrossEntropyLoss(weight=w)`` semantics, i.e. divided by the sum
    of the target classes' weights over valid examples (Emotion-GCN eq. 8);
  * CCC loss: batch statistics over valid examples only (Emotion-GCN eq. 11-12);
  * per-example losses (landmark alignment, L1 reconstruction, SVML-RGCN BCE): mean over valid
    examples.

Weights helpers: ``occurrence_weights`` (AU-GCN eq. 7, MGRR-Net eq. 9, MACG eq. 16) and
``class_balance_weights`` (Emotion-GCN eq. 9, in its text's f_min / f_i form), float32 wrappers of
``faujax.statistics.inverse_rate_weights`` (the one home of label statistics and their edge
cases).

CCC (``ccc``, ``ccc_loss``): ``normalization='paper'`` (default, population moments in eq. 11)
or ``'public_code'`` (the Emotion-GCN public code's covariance over n, variances over n - 1); the
same option as ``faujax.metrics.ccc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from faujax import statistics
from faujax.geometry import schemes
from faujax.metrics import CCC_NORMALIZATIONS

Array = Any  # jax.Array or np.ndarray

# The eye landmark indices of d_o (MGRR-Net eq. 10), per landmark scheme.
EYE_INDICES = schemes.EYE_INDICES


# ----------------------------------------------------------------------------- input checks


def _expect_rank(x: Array, rank: int | set[int], name: str) -> None:
  """chex rank assertion turned into a ValueError naming the argument."""
  try:
    chex.assert_rank(x, rank)
  except AssertionError:
    raise ValueError(
        f'{name}: expected an array of rank {rank}, got shape {np.shape(x)}.') from None


def _expect_shape(x: Array, shape: Sequence[int], name: str) -> None:
  try:
    chex.assert_shape(x, tuple(shape))
  except AssertionError:
    raise ValueError(
        f'{name}: expected shape {tuple(shape)}, got {np.shape(x)}.') from None


def _f32(x: Array) -> jax.Array:
  return jnp.asarray(x).astype(jnp.float32)


def _mask_or_ones(mask: Array | None, shape: Sequence[int], name: str = 'mask') -> jax.Array:
  """Float32 mask of ``shape`` (all ones when None); raises ValueError on a shape mismatch."""
  if mask is None:
    return jnp.ones(tuple(shape), jnp.float32)
  _expect_shape(mask, shape, name)
  return _f32(mask)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den where den > 0, else 0; gradients stay finite (double-where)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _check_multilabel(preds: Array, labels: Array, weights: Array | None, mask: Array | None,
                      pred_name: str) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Checks (B, C) predictions/labels, (C,) weights and (B, C) mask; returns float32 arrays."""
  _expect_rank(preds, 2, pred_name)
  _expect_shape(labels, np.shape(preds), 'labels')
  num_labels = np.shape(preds)[1]
  if weights is None:
    w = jnp.ones((num_labels,), jnp.float32)
  else:
    _expect_shape(weights, (num_labels,), 'weights')
    w = _f32(weights)
  m = _mask_or_ones(mask, np.shape(preds))
  return _f32(preds), _f32(labels), w, m


# ----------------------------------------------------------------------------- weights


def occurrence_weights(rates: Array) -> jax.Array:
  """Data-balance weights from occurrence rates: w_i = (1/r_i) N / sum_j (1/r_j), float32.

  AU-GCN eq. 7 (w_i = (1/r_i) C / sum_i (1/r_i)), MGRR-Net eq. 9 (the JAA weights it cites) and
  MACG eq. 16 are the same formula: inverse occurrence rates normalised to sum to N (the number
  of labels). Computed by ``faujax.statistics.inverse_rate_weights`` (the rates themselves by
  ``statistics.occurrence_rates``), whose rule for a label that never occurs in training
  (r_i = 0) applies: it weighs 0 and the other weights still sum to N.

  Args:
    rates: (N,) occurrence rates in [0, 1]. Concrete rates are checked (ValueError naming
      ``rates``); traced rates (under jit) are not, and all-zero traced rates give zeros.

  Returns:
    (N,) float32 weights summing to N.
  """
  _expect_rank(rates, 1, 'rates')
  try:
    concrete = np.asarray(rates, np.float64)
  except jax.errors.TracerArrayConversionError:  # Traced under jit: values cannot be checked.
    return statistics.inverse_rate_weights(_f32(rates), xp=jnp)
  return jnp.asarray(statistics.inverse_rate_weights(concrete), jnp.float32)


def class_balance_weights(counts: Array) -> jax.Array:
  """Emotion-GCN class weights w_i = f_min / f_i (eq. 9 as its text and code read it), float32.

  The rarest class weighs 1 and frequent classes less (eq. 9 prints f_i / f_min, which its own
  text contradicts; see docs/reference/model_details.md, "Emotion-GCN"). Computed by
  ``faujax.statistics.inverse_rate_weights(counts / sum(counts), normalize='max')``: a class
  with a count of 0 never appears as a training target; it gets weight 0 and f_min is taken
  over the classes that occur (the same zero rule as ``occurrence_weights``).

  Args:
    counts: (K,) number of training examples per class (``statistics.class_counts``).

  Returns:
    (K,) float32 weights in [0, 1].
  """
  _expect_rank(counts, 1, 'counts')
  c = np.asarray(counts, np.float64)
  if np.any(~np.isfinite(c)) or np.any(c < 0) or not np.any(c > 0):
    raise ValueError(
        f'counts: expected non-negative class counts with at least one positive, got {c.tolist()}.')
  return jnp.asarray(statistics.inverse_rate_weights(c / c.sum(), normalize='max'), jnp.float32)


# ----------------------------------------------------------------------------- multi-label


def weighted_bce_with_logits(logits: Array, labels: Array, weights: Array | None = None,
                             mask: Array | None = None) -> jax.Array:
  """Weighted multi-label binary cross-entropy on logits (AU-GCN eq. 7, MGRR-Net eq. 9).

  L = -sum_{b,i} m_bi w_i [y log s(x) + (1 - y) log(1 - s(x))] / sum_{b,i} m_bi, with s the
  sigmoid (computed stably as log-sigmoid). With no mask this is eq. 7 (1/C sum_i) averaged
  over the batch.

  Args:
    logits: (B, C) logits.
    labels: (B, C) targets in [0, 1].
    weights: optional (C,) per-label weights (``occurrence_weights``); ones when None.
    mask: optional (B, C) label mask.

  Returns:
    float32 scalar.
  """
  x, y, w, m = _check_multilabel(logits, labels, weights, mask, 'logits')
  nll = -(y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x))
  return _safe_div(jnp.sum(m * w[None, :] * nll), jnp.sum(m))


def multilabel_bce_with_logits(logits: Array, labels: Array, mask: Array | None = None,
                               class_reduction: str = 'sum') -> jax.Array:
  """Plain multi-label BCE on logits (SVML-RGCN eq. 2).

  Eq. 2 sums the per-class BCE over the C classes of one image; the batch loss is the mean
  over examples. With a mask, masked entries are dropped from the sum and the batch mean runs
  over examples with at least one known label. ``class_reduction='mean'`` divides each
  example's sum by its number of known labels instead (torch ``BCEWithLogitsLoss`` scale).

  Args:
    logits: (B, C) logits.
    labels: (B, C) targets in [0, 1].
    mask: optional (B, C) label mask.
    class_reduction: 'sum' (paper eq. 2) or 'mean'.

  Returns:
    float32 scalar.
  """
  if class_reduction not in ('sum', 'mean'):
    raise ValueError(f"class_reduction: expected 'sum' or 'mean', got {class_reduction!r}.")
  x, y, _, m = _check_multilabel(logits, labels, None, mask, 'logits')
  nll = -(y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x))
  per_example = jnp.sum(m * nll, axis=1)
  known = jnp.sum(m, axis=1)
  if class_reduction == 'mean':
    per_example = _safe_div(per_example, known)
  has_label = (known > 0).astype(jnp.float32)
  return _safe_div(jnp.sum(per_example * has_label), jnp.sum(has_label))


def weighted_dice_loss(probs: Array, labels: Array, weights: Array | None = None,
                       mask: Array | None = None, smooth: float = 1.0,
                       over_batch: bool = False) -> jax.Array:
  """Weighted multi-label Dice loss (AU-GCN eq. 8).

  Default (``over_batch=False``, eq. 8 as printed, per example): each (example, AU) entry
  contributes w_i (1 - (2 y p + eps) / (y^2 + p^2 + eps)); the loss is the masked mean over
  entries (1/C sum_i, then the batch mean). ``over_batch=True`` is the V-Net / JAA-Net form:
  per AU, 1 - (2 sum_b y p + eps) / (sum_b y^2 + sum_b p^2 + eps) over the valid examples, then
  (1/C') sum_i w_i d_i over the C' AUs with at least one valid entry.

  The paper calls eps "the smooth term" without a value; the default 1.0 is the value used by
  V-Net [17] style Dice losses in AU detection (JAA-Net).

  Args:
    probs: (B, C) predicted probabilities.
    labels: (B, C) targets in [0, 1].
    weights: optional (C,) per-label weights; ones when None.
    mask: optional (B, C) label mask.
    smooth: the smoothing constant eps (> 0).
    over_batch: per-example (paper) or batch-wise Dice.

  Returns:
    float32 scalar.
  """
  if smooth <= 0:
    raise ValueError(f'smooth: expected a positive smoothing constant, got {smooth}.')
  p, y, w, m = _check_multilabel(probs, labels, weights, mask, 'probs')
  if not over_batch:
    dice = 1.0 - (2.0 * y * p + smooth) / (y * y + p * p + smooth)
    return _safe_div(jnp.sum(m * w[None, :] * dice), jnp.sum(m))
  inter = jnp.sum(m * y * p, axis=0)
  denom = jnp.sum(m * y * y, axis=0) + jnp.sum(m * p * p, axis=0)
  dice = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
  present = (jnp.sum(m, axis=0) > 0).astype(jnp.float32)
  return _safe_div(jnp.sum(present * w * dice), jnp.sum(present))


def weighted_asymmetric_loss(probs: Array, labels: Array, weights: Array | None = None,
                             mask: Array | None = None, eps: float = 1e-8) -> jax.Array:
  """Weighted asymmetric loss on probabilities (MACG eq. 15-16).

  L = -sum_{b,c} m_bc w_c [y log p + (1 - y) sg(p) log(1 - p)] / sum_{b,c} m_bc, where sg is
  ``stop_gradient``: the negative term is down-weighted by the (constant) predicted probability,
  so easy negatives (small p) cost little. Logs are taken of p and 1 - p clipped to >= eps. With
  no mask this is -mean_b mean_c w_c [...] (docs/reference/model_details.md, "Weighted
  asymmetric loss").
  MACG's cosine head outputs probabilities directly, hence no sigmoid here.

  Args:
    probs: (B, C) probabilities in [0, 1].
    labels: (B, C) targets in [0, 1].
    weights: optional (C,) weights (``occurrence_weights``, eq. 16); ones when None.
    mask: optional (B, C) label mask.
    eps: clip for the logs.

  Returns:
    float32 scalar.
  """
  p, y, w, m = _check_multilabel(probs, labels, weights, mask, 'probs')
  log_p = jnp.log(jnp.clip(p, eps, None))
  log_1mp = jnp.log(jnp.clip(1.0 - p, eps, None))
  per = y * log_p + (1.0 - y) * jax.lax.stop_gradient(p) * log_1mp
  return _safe_div(-jnp.sum(m * w[None, :] * per), jnp.sum(m))


# ----------------------------------------------------------------------------- expressions


def class_weighted_cross_entropy(logits: Array, labels: Array,
                                 class_weights: Array | None = None,
                                 mask: Array | None = None) -> jax.Array:
  """Class-weighted softmax cross-entropy (Emotion-GCN eq. 8-9).

  L = sum_b m_b w_{y_b} (-log softmax(x_b)[y_b]) / sum_b m_b w_{y_b}: the normalisation of
  torch ``F.cross_entropy(logits, labels, weight=w)`` (mean reduction), restricted to valid
  examples. With no weights this is the plain mean CE over valid examples.

  Args:
    logits: (B, K) class logits.
    labels: (B,) integer class indices in [0, K). Masked examples may hold any value (e.g. -1).
    class_weights: optional (K,) weights (``class_balance_weights``); ones when None.
    mask: optional (B,) example mask.

  Returns:
    float32 scalar.
  """
  _expect_rank(logits, 2, 'logits')
  batch, num_classes = np.shape(logits)
  _expect_shape(labels, (batch,), 'labels')
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
    raise ValueError(f'labels: expected integer class indices, got dtype {jnp.asarray(labels).dtype}.')
  if class_weights is None:
    w = jnp.ones((num_classes,), jnp.float32)
  else:
    _expect_shape(class_weights, (num_classes,), 'class_weights')
    w = _f32(class_weights)
  m = _mask_or_ones(mask, (batch,))
  x = _f32(logits)
  lab = jnp.asarray(labels)
  # Masked or out-of-range labels become class 0 with weight 0.
  m = m * ((lab >= 0) & (lab < num_classes)).astype(jnp.float32)
  safe = jnp.where(m > 0, lab, 0)
  logp = jax.nn.log_softmax(x, axis=-1)
  nll = -jnp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
  wy = m * w[safe]
  return _safe_div(jnp.sum(wy * nll), jnp.sum(wy))


def _ccc_ddof(normalization: str) -> float:
  """Degrees of freedom of the CCC variances: 0 (paper) or 1 (public code)."""
  if normalization not in CCC_NORMALIZATIONS:
    raise ValueError(f'normalization: expected one of {CCC_NORMALIZATIONS}, got '
                     f'{normalization!r}.')
  return 1.0 if normalization == 'public_code' else 0.0


def ccc(x: Array, y: Array, mask: Array | None = None, eps: float = 1e-8,
        normalization: str = 'paper') -> jax.Array:
  """Concordance correlation coefficient with batch statistics (Emotion-GCN eq. 11).

  rho_c = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2) over the valid examples only (n of
  them); ``eps`` is added to the denominator. No valid example gives 0.

  ``normalization='paper'`` (default): population moments, covariance and variances all over n.
  ``normalization='public_code'``: the public code's behaviour, covariance over n but variances
  over n - 1 (torch's default ``var``); it gives values slightly smaller in magnitude, e.g.
  (n - 1) / n rather than 1 for perfect agreement; with n = 1 the variances are taken as 0.

  Args:
    x: (B,) predictions.
    y: (B,) targets.
    mask: optional (B,) example mask.
    eps: denominator guard.
    normalization: 'paper' or 'public_code' (the same option as ``faujax.metrics.ccc``).

  Returns:
    float32 scalar in [-1, 1].
  """
  ddof = _ccc_ddof(normalization)
  _expect_rank(x, 1, 'x')
  _expect_shape(y, np.shape(x), 'y')
  m = _mask_or_ones(mask, np.shape(x))
  x, y = _f32(x), _f32(y)
  n = jnp.sum(m)
  mx = _safe_div(jnp.sum(m * x), n)
  my = _safe_div(jnp.sum(m * y), n)
  dx, dy = (x - mx) * m, (y - my) * m
  vx = _safe_div(jnp.sum(dx * dx), n - ddof)
  vy = _safe_div(jnp.sum(dy * dy), n - ddof)
  cxy = _safe_div(jnp.sum(dx * dy), n)
  return 2.0 * cxy / (vx + vy + (mx - my) ** 2 + eps)


def ccc_loss(preds: Array, targets: Array, mask: Array | None = None,
             eps: float = 1e-8, normalization: str = 'paper') -> jax.Array:
  """CCC loss 1 - mean_d CCC_d (Emotion-GCN eq. 12: 1 - (CCC_V + CCC_A) / 2).

  Args:
    preds: (B, D) predictions (D = 2: valence, arousal).
    targets: (B, D) targets.
    mask: optional (B,) example mask, or (B, D) to mask each dimension separately; statistics
      use only valid examples.
    eps: denominator guard of each CCC.
    normalization: 'paper' (default) or 'public_code' (covariance over n, variances over
      n - 1: the public code's behaviour); see ``ccc``.

  Returns:
    float32 scalar in [0, 2]; 0 when no example is valid.
  """
  _ccc_ddof(normalization)
  _expect_rank(preds, 2, 'preds')
  _expect_shape(targets, np.shape(preds), 'targets')
  batch, dims = np.shape(preds)
  if mask is None:
    m = jnp.ones((batch, dims), jnp.float32)
  elif np.ndim(mask) == 1:
    _expect_shape(mask, (batch,), 'mask')
    m = jnp.broadcast_to(_f32(mask)[:, None], (batch, dims))
  else:
    _expect_shape(mask, (batch, dims), 'mask')
    m = _f32(mask)
  rhos = jnp.stack([ccc(preds[:, d], targets[:, d], m[:, d], eps, normalization)
                    for d in range(dims)])
  present = (jnp.sum(m, axis=0) > 0).astype(jnp.float32)
  return _safe_div(jnp.sum(present * (1.0 - rhos)), jnp.sum(present))


# ----------------------------------------------------------------------------- landmarks / pixels


def landmark_alignment_loss(
    pred: Array, target: Array, mask: Array | None = None,
    eyes: int | tuple[Sequence[int], Sequence[int]] | None = None) -> jax.Array:
  """Face alignment loss (MGRR-Net eq. 10, JAA-Net's normalisation).

  Per example: sum_i [(x_i - x^_i)^2 + (y_i - y^_i)^2] / (2 d_o^2), d_o the ground-truth
  inter-ocular distance = distance between the two eye centres (means of the eye index sets) of
  ``target``; the loss is the mean over valid examples.

  Args:
    pred: (B, M, 2) predicted (x, y) landmarks, or (B, 2M) with x, y interleaved (the JAA-Net
      landmark head's layout).
    target: ground truth, same shape as ``pred``.
    mask: optional (B,) example mask (examples without landmarks or padding rows).
    eyes: None (default) picks the eye indices of the scheme with M points (``EYE_INDICES``:
      68-point 36-41 / 42-47, 66-point the same, 49-point 19-24 / 25-30); 68, 66 or 49 names the
      scheme explicitly (must equal M); or a pair of index sequences (right eye, left eye).

  Returns:
    float32 scalar.
  """
  _expect_rank(pred, {2, 3}, 'pred')
  _expect_shape(target, np.shape(pred), 'target')
  if np.ndim(pred) == 2:
    if np.shape(pred)[1] % 2:
      raise ValueError(f'pred: expected (B, 2M) interleaved x, y, got shape {np.shape(pred)}.')
    pred = jnp.reshape(pred, (np.shape(pred)[0], -1, 2))
    target = jnp.reshape(target, pred.shape)
  batch, num_points, two = np.shape(pred)
  if two != 2:
    raise ValueError(f'pred: expected (B, M, 2) landmarks, got shape {np.shape(pred)}.')
  if eyes is None:
    if num_points not in EYE_INDICES:
      raise ValueError(f'pred: no default eye indices for {num_points} landmarks (known schemes: '
                       f'{sorted(EYE_INDICES)}); pass eyes=(right_eye_indices, left_eye_indices).')
    eyes = num_points
  if isinstance(eyes, int):
    if eyes not in EYE_INDICES or eyes != num_points:
      raise ValueError(f'eyes: landmark scheme {eyes} does not fit {num_points} landmarks; expected '
                       f'one of {sorted(EYE_INDICES)} equal to the number of points, or a pair of '
                       'index sequences.')
    eyes = EYE_INDICES[eyes]
  if len(eyes) != 2 or not all(len(e) for e in eyes):
    raise ValueError(f'eyes: expected two non-empty index sequences, got {eyes!r}.')
  right, left = (np.asarray(e, np.int64) for e in eyes)
  if max(right.max(), left.max()) >= num_points or min(right.min(), left.min()) < 0:
    raise ValueError(f'eyes: indices {eyes!r} out of range for {num_points} landmarks.')
  m = _mask_or_ones(mask, (batch,))
  p, t = _f32(pred), _f32(target)
  sq = jnp.sum((p - t) ** 2, axis=(1, 2))
  d_o2 = jnp.sum((t[:, right].mean(1) - t[:, left].mean(1)) ** 2, axis=-1)
  ok = (m > 0) & (d_o2 > 0)
  per = jnp.where(ok, sq / (2.0 * jnp.where(ok, d_o2, 1.0)), 0.0)
  return _safe_div(jnp.sum(m * per), jnp.sum(m))


def l1_reconstruction_loss(recon: Array, target: Array, mask: Array | None = None) -> jax.Array:
  """Pixel-wise L1 reconstruction loss (AU-GCN eq. 1).

  Eq. 1 averages |I_gt - I_rec| over the n x n pixels of one ROI. Here the mean runs over every
  axis after the mask's axes, then over the valid mask entries: with a (B,) mask and inputs
  (B, R, n, n, ch) this is the mean over examples of the mean over ROIs of eq. 1 (channels
  averaged too); a (B, R) mask drops individual ROIs.

  Args:
    recon: (B, ...) reconstructions.
    target: same shape, ground truth.
    mask: optional mask whose shape is a prefix of ``recon.shape`` (default (B,) of ones).

  Returns:
    float32 scalar.
  """
  _expect_rank(recon, set(range(1, 9)), 'recon')
  _expect_shape(target, np.shape(recon), 'target')
  shape = np.shape(recon)
  if mask is None:
    mask = jnp.ones(shape[:1], jnp.float32)
  k = np.ndim(mask)
  if k < 1 or tuple(np.shape(mask)) != tuple(shape[:k]):
    raise ValueError(f'mask: expected a prefix of the input shape {shape}, got {np.shape(mask)}.')
  m = _f32(mask)
  err = jnp.abs(_f32(recon) - _f32(target))
  per = jnp.mean(err, axis=tuple(range(k, len(shape)))) if len(shape) > k else err
  return _safe_div(jnp.sum(m * per), jnp.sum(m))


def au_relation_loss(edge_logits: Array, labels: Array, mask: Array | None = None) -> jax.Array:
  """ME-GraphAU's edge classification loss: cross-entropy of every ordered AU pair's relation.

  The relation of the pair (i, j) is ``2 y_i + y_j`` (0 neither, 1 only j, 2 only i, 3 both; the
  public code's ``tool/*_deal_AU_relation.py``), predicted by ``edge_logits[b, i, j]``; the loss
  is the mean over the pairs whose two labels are known (``mask``), as the public
  ``nn.CrossEntropyLoss`` over every pair when all are known.

  Args:
    edge_logits: (B, N, N, 4).
    labels: (B, L) 0/1 AU labels, L >= N; the first N are the graph's nodes.
    mask: (B, L) 1 where the label is known.
  """
  _expect_rank(edge_logits, 4, 'edge_logits')
  b, n, n2, k = edge_logits.shape
  if n != n2 or k != 4:
    raise ValueError(f'edge_logits must be (B, N, N, 4); got {edge_logits.shape}.')
  y = _f32(labels)[:, :n]
  m = _mask_or_ones(mask, labels.shape)[:, :n]
  relation = (2.0 * y[:, :, None] + y[:, None, :]).astype(jnp.int32)
  pair_mask = m[:, :, None] * m[:, None, :]
  log_p = jax.nn.log_softmax(_f32(edge_logits), axis=-1)
  nll = -jnp.take_along_axis(log_p, relation[..., None], axis=-1)[..., 0]
  return _safe_div(jnp.sum(pair_mask * nll), jnp.sum(pair_mask))

"""Evaluation metrics of the five papers, in numpy on the host.

Metrics are computed once over the predictions of ALL evaluation batches (``Accumulator``
collects the valid rows of every batch), never averaged per batch. Every function matches
scikit-learn where scikit-learn has the metric (the tests compare them), without depending
on it.

* AU detection (AU-GCN, MGRR-Net, MACG tables): per-AU F1, AUC and accuracy and their means
  (``au_metrics``), with a per-entry label mask.
* Expressions (Emotion-GCN): accuracy, mean class accuracy (balanced accuracy), macro F1, the
  Aff-Wild2 score 0.67 * macro F1 + 0.33 * accuracy, confusion matrix (``expression_metrics``).
* Valence / arousal: CCC (Emotion-GCN eq. 11; ``ccc``).
* Multi-label FER (SVML-RGCN section 4.1, eq. 8-12): Hamming loss, coverage, one-error, ranking
  loss, average precision, micro/macro F1, micro/macro AUC (``multilabel_metrics``).
* Paper-style markdown tables: ``format_au_table`` and ``format_fold_table``.

Binary decisions (``decide``): AU detection takes ``score >= threshold`` (default 0.5; the AU
papers name no rule); the multi-label FER metrics take ``score > threshold`` as SVML-RGCN sec. 4.1
states ("predicted as true if the confidence scores are greater than 0.5"). Both rules are
``DECISION_RULES``; docs/reference/model_details.md, "Decision rules".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from typing import Any

import numpy as np

from faujax import statistics
from faujax.geometry import schemes

# Keys ``Accumulator.add`` understands (other keys are kept and returned by ``arrays`` only).
AU_PROB = 'au_prob'        # (B, N) AU probabilities.
AU_LABEL = 'au_label'      # (B, N) 0/1 AU labels.
AU_MASK = 'au_mask'        # optional (B, N) 1 = label known.
EXPR_SCORE = 'expr_score'  # (B, K) class logits or probabilities (argmax is the prediction).
EXPR_LABEL = 'expr_label'  # (B,) integer class.
EXPR_MASK = 'expr_mask'    # optional (B,) 1 = expression label known.
VA_PRED = 'va_pred'        # (B, 2) predicted valence, arousal.
VA_LABEL = 'va_label'      # (B, 2) ground-truth valence, arousal.
VA_MASK = 'va_mask'        # optional (B,) or (B, 2) 1 = known.
ML_PROB = 'ml_prob'        # (B, C) multi-label confidence scores (probabilities).
ML_LABEL = 'ml_label'      # (B, C) 0/1 multi-labels.
LOSS = 'loss'              # optional (B,) per-example loss; its mean is reported as 'loss'.

# CCC conventions (``ccc``, ``va_metrics``; the same option of ``faujax.losses.ccc``): 'paper'
# (Emotion-GCN eq. 11 with population moments) or 'public_code' (covariance over n, variances
# over n - 1, as the Emotion-GCN public code computes it).
CCC_NORMALIZATIONS: tuple[str, ...] = ('paper', 'public_code')

# Binary decision rules of ``decide``: '>=' (AU detection) and '>' (SVML-RGCN sec. 4.1).
DECISION_RULES: tuple[str, ...] = ('>=', '>')
AU_RULE = '>='         # AU detection (the papers name no rule)
MULTILABEL_RULE = '>'  # multi-label expressions, SVML-RGCN sec. 4.1


def decide(scores: Any, threshold: float, rule: str) -> np.ndarray:
  """The 0/1 decisions (bool array) of ``scores`` at ``threshold``: ``scores >= threshold``
  (``rule='>='``) or ``scores > threshold`` (``rule='>'``); they differ only at the threshold."""
  if rule not in DECISION_RULES:
    raise ValueError(f'decision rule {rule!r}; expected one of {DECISION_RULES}.')
  scores = np.asarray(scores)
  return scores > threshold if rule == '>' else scores >= threshold


def _as2d(x: Any, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f'{name}: expected a 2-D array (examples, labels), got shape {x.shape}.')
  return x


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape != b.shape:
    raise ValueError(f'{name_b}: expected the shape of {name_a} {a.shape}, got {b.shape}.')


def _nanmean(values: Sequence[float] | np.ndarray) -> float:
  v = np.asarray(values, np.float64)
  v = v[~np.isnan(v)]
  return float(v.mean()) if v.size else float('nan')


# ----------------------------------------------------------------------------- binary building blocks


def f1_binary(y_true: Any, y_pred: Any) -> float:
  """Binary F1 = 2 TP / (2 TP + FP + FN); 0 when that denominator is 0.

  Equals ``sklearn.metrics.f1_score(y_true, y_pred, zero_division=0)``: an AU with no positives
  has F1 0 (whether or not it is ever predicted).
  """
  t = np.asarray(y_true).astype(bool).ravel()
  p = np.asarray(y_pred).astype(bool).ravel()
  tp = np.sum(t & p)
  den = 2 * tp + np.sum(~t & p) + np.sum(t & ~p)
  return float(2 * tp / den) if den else 0.0


def roc_auc(y_true: Any, scores: Any) -> float:
  """Area under the ROC curve, NaN when only one class is present.

  Computed as the Mann-Whitney statistic with tied scores at half weight (from
  ``faujax.statistics.average_ranks``), which equals ``sklearn.metrics.roc_auc_score``
  (trapezoidal ROC) exactly; scikit-learn raises where this returns NaN. A NaN score (a diverged
  model) also gives NaN.
  """
  t = np.asarray(y_true).astype(bool).ravel()
  s = np.asarray(scores, np.float64).ravel()
  if t.shape != s.shape:
    raise ValueError(f'scores: expected the shape of y_true {t.shape}, got {s.shape}.')
  n_pos = int(t.sum())
  n_neg = t.size - n_pos
  if n_pos == 0 or n_neg == 0 or np.any(np.isnan(s)):
    return float('nan')
  ranks = statistics.average_ranks(s)
  return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ----------------------------------------------------------------------------- AU detection


def au_metrics(probs: Any, labels: Any, mask: Any | None = None, threshold: float = 0.5,
               au_names: Sequence[str] | None = None) -> dict[str, float]:
  """Per-AU F1, AUC and accuracy and their means over AUs.

  For each AU only the entries with mask 1 count. An AU whose valid entries hold no positive has
  F1 0 (sklearn ``zero_division=0``) and AUC NaN (undefined; also NaN with no negative); an AU
  with no valid entry at all has NaN for all three. Means ('f1_mean', 'auc_mean', 'acc_mean')
  run over the AUs where the metric is defined (not NaN).

  Args:
    probs: (N, C) predicted probabilities (or any score; F1/accuracy use ``>= threshold``,
      ``decide(..., '>=')``).
    labels: (N, C) 0/1 labels.
    mask: optional (N, C) 0/1 label mask.
    threshold: decision threshold.
    au_names: C names for the keys (default 'AU0', 'AU1', ... by column index).

  Returns:
    {'f1/<au>', 'auc/<au>', 'acc/<au>' for every AU, 'f1_mean', 'auc_mean', 'acc_mean'}.
  """
  probs = _as2d(probs, 'probs').astype(np.float64)
  labels = _as2d(labels, 'labels')
  _same_shape(probs, labels, 'probs', 'labels')
  num = probs.shape[1]
  valid = np.ones(probs.shape, bool) if mask is None else np.asarray(mask).astype(bool)
  _same_shape(probs, valid, 'probs', 'mask')
  names = list(au_names) if au_names is not None else [f'AU{i}' for i in range(num)]
  if len(names) != num:
    raise ValueError(f'au_names: expected {num} names, got {len(names)}.')
  out: dict[str, float] = {}
  f1s, aucs, accs = [], [], []
  for c, name in enumerate(names):
    v = valid[:, c]
    t = labels[v, c].astype(bool)
    s = probs[v, c]
    if t.size == 0:
      f1, auc, acc = (float('nan'),) * 3
    else:
      pred = decide(s, threshold, AU_RULE)
      f1 = f1_binary(t, pred)
      auc = roc_auc(t, s)
      acc = float(np.mean(pred == t))
    out[f'f1/{name}'], out[f'auc/{name}'], out[f'acc/{name}'] = f1, auc, acc
    f1s.append(f1)
    aucs.append(auc)
    accs.append(acc)
  out['f1_mean'] = _nanmean(f1s)
  out['auc_mean'] = _nanmean(aucs)
  out['acc_mean'] = _nanmean(accs)
  return out


# ----------------------------------------------------------------------------- expressions


def confusion_matrix(labels: Any, preds: Any, num_classes: int) -> np.ndarray:
  """(K, K) int64 counts, rows = true class, columns = predicted class (sklearn's layout)."""
  t = np.asarray(labels).astype(np.int64).ravel()
  p = np.asarray(preds).astype(np.int64).ravel()
  if t.shape != p.shape:
    raise ValueError(f'preds: expected the shape of labels {t.shape}, got {p.shape}.')
  for arr, name in ((t, 'labels'), (p, 'preds')):
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
      raise ValueError(f'{name}: expected class indices in [0, {num_classes}), '
                       f'got range [{arr.min()}, {arr.max()}].')
  return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
      num_classes, num_classes)


def expression_metrics(scores: Any, labels: Any, mask: Any | None = None,
                       class_names: Sequence[str] | None = None) -> dict[str, float]:
  """Single-label expression metrics (Emotion-GCN on AffectNet and Aff-Wild2).

  * 'accuracy': fraction of correct argmax predictions.
  * 'mean_class_accuracy': mean per-class recall over classes present in the labels
    (= ``sklearn.metrics.balanced_accuracy_score``; AffectNet's metric).
  * 'macro_f1': mean per-class F1 over all K classes, 0 for a class with no true and no
    predicted example (= ``f1_score(labels=range(K), average='macro', zero_division=0)``).
  * 'affwild2_score': 0.67 * macro_f1 + 0.33 * accuracy.
  * 'recall/<class>' and 'f1/<class>' per class (recall NaN for a class absent from the labels).

  Args:
    scores: (N, K) logits or probabilities.
    labels: (N,) integer classes.
    mask: optional (N,) example mask.
    class_names: K names (default 'class0', ...).

  Returns:
    flat dict of floats, keys as listed.
  """
  scores = _as2d(scores, 'scores')
  labels = np.asarray(labels)
  n, num_classes = scores.shape
  if labels.shape != (n,):
    raise ValueError(f'labels: expected shape ({n},), got {labels.shape}.')
  if mask is not None:
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (n,):
      raise ValueError(f'mask: expected shape ({n},), got {mask.shape}.')
    scores, labels = scores[mask], labels[mask]
  names = list(class_names) if class_names is not None else [f'class{i}' for i in range(num_classes)]
  if len(names) != num_classes:
    raise ValueError(f'class_names: expected {num_classes} names, got {len(names)}.')
  preds = np.argmax(scores, axis=1)
  cm = confusion_matrix(labels, preds, num_classes)
  tp = np.diag(cm).astype(np.float64)
  support = cm.sum(1).astype(np.float64)
  predicted = cm.sum(0).astype(np.float64)
  with np.errstate(divide='ignore', invalid='ignore'):
    recall = np.where(support > 0, tp / support, np.nan)
    f1_den = support + predicted
    f1 = np.where(f1_den > 0, 2 * tp / f1_den, 0.0)
  total = cm.sum()
  out: dict[str, float] = {}
  out['accuracy'] = float(tp.sum() / total) if total else float('nan')
  out['mean_class_accuracy'] = _nanmean(recall)
  out['macro_f1'] = float(f1.mean()) if total else float('nan')
  out['affwild2_score'] = 0.67 * out['macro_f1'] + 0.33 * out['accuracy']
  for k, name in enumerate(names):
    out[f'recall/{name}'] = float(recall[k])
    out[f'f1/{name}'] = float(f1[k])
  return out


def ccc(x: Any, y: Any, normalization: str = 'paper') -> float:
  """Concordance correlation coefficient (Emotion-GCN eq. 11).

  rho_c = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2); NaN for empty inputs or a zero
  denominator (both constant and equal).

  ``normalization='paper'`` (default): population moments (covariance and variances over n).
  ``normalization='public_code'``: the public code's behaviour, covariance over n but variances
  over n - 1; perfect agreement then scores (n - 1) / n, and with n = 1 the variances are 0.
  The same option as ``faujax.losses.ccc``.
  """
  if normalization not in CCC_NORMALIZATIONS:
    raise ValueError(f'normalization: expected one of {CCC_NORMALIZATIONS}, got '
                     f'{normalization!r}.')
  x = np.asarray(x, np.float64).ravel()
  y = np.asarray(y, np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f'y: expected the shape of x {x.shape}, got {y.shape}.')
  if x.size == 0:
    return float('nan')
  mx, my = x.mean(), y.mean()
  ddof = 1 if normalization == 'public_code' else 0
  vx, vy = (x.var(ddof=ddof), y.var(ddof=ddof)) if x.size > ddof else (0.0, 0.0)
  cxy = np.mean((x - mx) * (y - my))
  den = vx + vy + (mx - my) ** 2
  return float(2 * cxy / den) if den > 0 else float('nan')


def va_metrics(preds: Any, labels: Any, mask: Any | None = None,
               names: Sequence[str] = ('valence', 'arousal'),
               normalization: str = 'paper') -> dict[str, float]:
  """CCC per dimension: {'ccc_valence', 'ccc_arousal', 'ccc_mean'} (names configurable).

  Args:
    preds: (N, D) predictions.
    labels: (N, D) targets.
    mask: optional (N,) or (N, D) mask.
    names: D dimension names.
    normalization: 'paper' (default) or 'public_code'; see ``ccc``.
  """
  preds = _as2d(preds, 'preds')
  labels = _as2d(labels, 'labels')
  _same_shape(preds, labels, 'preds', 'labels')
  n, dims = preds.shape
  if len(names) != dims:
    raise ValueError(f'names: expected {dims} names, got {len(names)}.')
  if mask is None:
    m = np.ones((n, dims), bool)
  else:
    m = np.asarray(mask).astype(bool)
    if m.shape == (n,):
      m = np.repeat(m[:, None], dims, axis=1)
    _same_shape(preds, m, 'preds', 'mask')
  out = {f'ccc_{name}': ccc(preds[m[:, d], d], labels[m[:, d], d], normalization)
         for d, name in enumerate(names)}
  out['ccc_mean'] = _nanmean(list(out.values()))
  return out


# ----------------------------------------------------------------------------- multi-label (SVML-RGCN)


def _check_ml(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
  y = _as2d(labels, 'labels').astype(bool)
  s = _as2d(scores, 'scores').astype(np.float64)
  _same_shape(y, s, 'labels', 'scores')
  if y.shape[0] == 0:
    raise ValueError('labels: expected at least one example, got none.')
  return y, s


def _pairwise_ge(s: np.ndarray, chunk: int = 4096):
  """Yields (start, ge) with ge[i, c, k] = s[start + i, c] >= s[start + i, k], in row chunks."""
  for lo in range(0, s.shape[0], chunk):
    blk = s[lo:lo + chunk]
    yield lo, blk[:, :, None] >= blk[:, None, :]


def hamming_loss(labels: Any, preds: Any) -> float:
  """SVML-RGCN eq. 8: fraction of wrong (example, label) decisions (= sklearn ``hamming_loss``)."""
  y, p = _check_ml(labels, preds)
  return float(np.mean(y != p.astype(bool)))


def coverage(labels: Any, scores: Any, zero_based: bool = False) -> float:
  """SVML-RGCN eq. 9: mean over examples of max over relevant c of |{k : s_k >= s_c}|.

  Eq. 9 as printed is exactly ``sklearn.metrics.coverage_error`` (1-based: a perfect ranking of
  one relevant label costs 1); an example with no relevant label counts 0. The multi-label
  literature (Zhang and Zhou) often subtracts 1; ``zero_based=True`` gives that convention.
  faujax reports eq. 9 (the default).
  """
  y, s = _check_ml(labels, scores)
  masked = np.where(y, s, np.inf)
  min_relevant = masked.min(axis=1, keepdims=True)
  cov = np.where(y.any(1), (s >= min_relevant).sum(1), 0).astype(np.float64)
  if zero_based:
    cov = np.where(y.any(1), cov - 1, 0.0)
  return float(cov.mean())


def one_error(labels: Any, scores: Any) -> float:
  """SVML-RGCN eq. 10: fraction of examples whose top-scored label is not relevant.

  The top label is the argmax (first index on ties). An example with no relevant label counts as
  an error, as eq. 10 reads literally.
  """
  y, s = _check_ml(labels, scores)
  top = np.argmax(s, axis=1)
  return float(np.mean(~y[np.arange(y.shape[0]), top]))


def ranking_loss(labels: Any, scores: Any) -> float:
  """SVML-RGCN eq. 11: mean fraction of (relevant, irrelevant) pairs ordered wrongly.

  Matches ``sklearn.metrics.label_ranking_loss``: a pair with tied scores counts as wrong (eq. 11
  counts only strict inversions; the two agree on untied scores), and an example with no or only
  relevant labels contributes 0.
  """
  y, s = _check_ml(labels, scores)
  losses = np.zeros(y.shape[0])
  for lo, ge in _pairwise_ge(s):
    yy = y[lo:lo + ge.shape[0]]
    # ge[i, c, k] = s_c >= s_k; a relevant c with s_c <= s_k for an irrelevant k is wrong.
    wrong = ge.transpose(0, 2, 1)  # wrong[i, c, k] = s_k >= s_c
    bad = np.sum(wrong & yy[:, :, None] & ~yy[:, None, :], axis=(1, 2))
    n_pos = yy.sum(1)
    n_neg = yy.shape[1] - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    losses[lo:lo + ge.shape[0]] = np.where(ok, bad / np.maximum(n_pos * n_neg, 1), 0.0)
  return float(losses.mean())


def average_precision(labels: Any, scores: Any) -> float:
  """SVML-RGCN eq. 12: label-ranking average precision.

  For each relevant c: |{relevant k : s_k >= s_c}| / |{k : s_k >= s_c}|, averaged over the
  relevant labels, then over examples (= ``sklearn.metrics.label_ranking_average_precision_score``;
  an example with no or only relevant labels scores 1).
  """
  y, s = _check_ml(labels, scores)
  out = np.ones(y.shape[0])
  for lo, ge in _pairwise_ge(s):
    yy = y[lo:lo + ge.shape[0]]
    # For each c: ranks counted over k with s_k >= s_c, i.e. ge[i, k, c].
    above_all = ge.sum(1)
    above_rel = np.sum(ge & yy[:, :, None], axis=1)
    n_rel = yy.sum(1)
    prec = np.where(yy, above_rel / np.maximum(above_all, 1), 0.0).sum(1) / np.maximum(n_rel, 1)
    ok = (n_rel > 0) & (n_rel < yy.shape[1])
    out[lo:lo + ge.shape[0]] = np.where(ok, prec, 1.0)
  return float(out.mean())


def f1_micro(labels: Any, preds: Any) -> float:
  """Micro F1 over all (example, label) decisions (= ``f1_score(average='micro')``)."""
  y, p = _check_ml(labels, preds)
  return f1_binary(y, p.astype(bool))


def f1_macro(labels: Any, preds: Any) -> float:
  """Mean per-label F1, 0 for a label with no TP, FP or FN (= ``f1_score(average='macro',
  zero_division=0)``)."""
  y, p = _check_ml(labels, preds)
  return float(np.mean([f1_binary(y[:, c], p[:, c].astype(bool)) for c in range(y.shape[1])]))


def auc_micro(labels: Any, scores: Any) -> float:
  """AUC of all (example, label) scores pooled (= ``roc_auc_score(average='micro')``)."""
  y, s = _check_ml(labels, scores)
  return roc_auc(y.ravel(), s.ravel())


def auc_macro(labels: Any, scores: Any) -> float:
  """Mean per-label AUC over labels where it is defined (= ``roc_auc_score(average='macro')``
  when every label has both classes; scikit-learn raises otherwise, this skips such labels)."""
  y, s = _check_ml(labels, scores)
  return _nanmean([roc_auc(y[:, c], s[:, c]) for c in range(y.shape[1])])


def multilabel_metrics(scores: Any, labels: Any, threshold: float = 0.5,
                       prefix: str = 'ml/', rule: str = MULTILABEL_RULE) -> dict[str, float]:
  """The nine multi-label FER metrics of SVML-RGCN section 4.1.

  Args:
    scores: (N, C) confidence scores (probabilities); a label is predicted true when its score
      is greater than ``threshold`` (sec. 4.1; ``decide(scores, threshold, rule)``).
    labels: (N, C) 0/1 labels (fully known).
    threshold: decision threshold.
    rule: '>' (the paper) or '>=' (``DECISION_RULES``).
    prefix: key prefix.

  Returns:
    {prefix + k for k in 'hamming_loss', 'coverage', 'one_error', 'ranking_loss',
    'average_precision', 'micro_f1', 'macro_f1', 'micro_auc', 'macro_auc'}.
  """
  y, s = _check_ml(labels, scores)
  p = decide(s, threshold, rule)
  return {
      f'{prefix}hamming_loss': hamming_loss(y, p),
      f'{prefix}coverage': coverage(y, s),
      f'{prefix}one_error': one_error(y, s),
      f'{prefix}ranking_loss': ranking_loss(y, s),
      f'{prefix}average_precision': average_precision(y, s),
      f'{prefix}micro_f1': f1_micro(y, p),
      f'{prefix}macro_f1': f1_macro(y, p),
      f'{prefix}micro_auc': auc_micro(y, s),
      f'{prefix}macro_auc': auc_macro(y, s),
  }


# ----------------------------------------------------------------------------- accumulation


class Accumulator:
  """Collects the valid rows of every evaluation batch and computes metrics once over all.

  ``add`` takes a dict of per-example arrays (leading axis = example; jax arrays are fine) and an
  optional ``valid`` mask marking real rows (0 = padding added to fill the last batch). ``valid``
  may have several leading axes, e.g. (devices, per_device_batch) for pmap outputs; the arrays'
  matching leading axes are flattened. ``compute`` dispatches on the keys present:

    * 'au_prob' + 'au_label' [+ 'au_mask']   -> ``au_metrics``
    * 'expr_score' + 'expr_label' [+ 'expr_mask'] -> ``expression_metrics``
    * 'va_pred' + 'va_label' [+ 'va_mask']   -> ``va_metrics``
    * 'ml_prob' + 'ml_label'                 -> ``multilabel_metrics`` ('ml/...' keys)
    * 'loss' (per-example)                   -> 'loss' (mean over valid rows)

  Other keys are stored and returned by ``arrays`` (e.g. for dumping predictions).
  ``ccc_normalization`` ('paper' | 'public_code') is passed to ``va_metrics``.
  """

  def __init__(self, au_names: Sequence[str] | None = None,
               class_names: Sequence[str] | None = None,
               va_names: Sequence[str] = ('valence', 'arousal'),
               threshold: float = 0.5, ccc_normalization: str = 'paper'):
    if ccc_normalization not in CCC_NORMALIZATIONS:
      raise ValueError(f'ccc_normalization: expected one of {CCC_NORMALIZATIONS}, got '
                       f'{ccc_normalization!r}.')
    self.ccc_normalization = ccc_normalization
    self.au_names = None if au_names is None else list(au_names)
    self.class_names = None if class_names is None else list(class_names)
    self.va_names = tuple(va_names)
    self.threshold = float(threshold)
    self._chunks: dict[str, list[np.ndarray]] = {}
    self._num = 0

  def reset(self) -> None:
    """Forgets everything added."""
    self._chunks = {}
    self._num = 0

  @property
  def num_examples(self) -> int:
    """Number of valid rows added so far."""
    return self._num

  def add(self, batch_outputs: Mapping[str, Any], valid: Any | None = None) -> None:
    """Adds one batch: keeps only the rows where ``valid`` is nonzero.

    Args:
      batch_outputs: {key: array of shape valid.shape + (...)}; every add must provide the same
        keys.
      valid: mask over the leading axes (default: all rows valid, leading axis of the arrays).
    """
    if not batch_outputs:
      raise ValueError('batch_outputs: expected at least one array, got an empty dict.')
    arrays = {k: np.asarray(v) for k, v in batch_outputs.items()}
    if valid is None:
      first = next(iter(arrays.values()))
      if first.ndim == 0:
        raise ValueError('batch_outputs: expected arrays with a leading example axis, got a scalar.')
      valid = np.ones(first.shape[:1], bool)
    valid = np.asarray(valid).astype(bool)
    lead = valid.shape
    flat_valid = valid.reshape(-1)
    if self._chunks and set(arrays) != set(self._chunks):
      raise ValueError(f'batch_outputs: expected the keys of earlier batches {sorted(self._chunks)}, '
                       f'got {sorted(arrays)}.')
    kept = {}
    for key, arr in arrays.items():
      if arr.shape[:len(lead)] != lead:
        raise ValueError(f'batch_outputs[{key!r}]: expected leading shape {lead} (of valid), '
                         f'got {arr.shape}.')
      kept[key] = arr.reshape((-1,) + arr.shape[len(lead):])[flat_valid]
    for key, arr in kept.items():
      self._chunks.setdefault(key, []).append(arr)
    self._num += int(flat_valid.sum())

  def arrays(self) -> dict[str, np.ndarray]:
    """All valid rows added so far, concatenated per key."""
    return {k: np.concatenate(v, axis=0) for k, v in self._chunks.items()}

  def compute(self) -> dict[str, float]:
    """Flat dict of metrics over everything added (empty dict if nothing was added)."""
    if not self._chunks or self._num == 0:
      return {}
    a = self.arrays()
    out: dict[str, float] = {}
    if AU_PROB in a and AU_LABEL in a:
      out.update(au_metrics(a[AU_PROB], a[AU_LABEL], a.get(AU_MASK), self.threshold,
                            self.au_names))
    if EXPR_SCORE in a and EXPR_LABEL in a:
      out.update(expression_metrics(a[EXPR_SCORE], a[EXPR_LABEL], a.get(EXPR_MASK),
                                    self.class_names))
    if VA_PRED in a and VA_LABEL in a:
      out.update(va_metrics(a[VA_PRED], a[VA_LABEL], a.get(VA_MASK), self.va_names,
                            self.ccc_normalization))
    if ML_PROB in a and ML_LABEL in a:
      out.update(multilabel_metrics(a[ML_PROB], a[ML_LABEL], self.threshold))
    if LOSS in a:
      out[LOSS] = float(np.mean(a[LOSS]))
    return out


# ----------------------------------------------------------------------------- tables


def _fmt(v: float, scale: float, digits: int) -> str:
  if v is None or math.isnan(float(v)):
    return '-'
  return f'{float(v) * scale:.{digits}f}'


def format_au_table(metrics: Mapping[str, float], au_names: Sequence[str],
                    columns: Sequence[str] = ('f1', 'auc'), scale: float = 100.0,
                    digits: int = 1) -> str:
  """Markdown table shaped like the papers' tables: one row per AU and an 'Avg.' row.

  Args:
    metrics: output of ``au_metrics`` / ``Accumulator.compute`` ('f1/<au>', 'f1_mean', ...).
    au_names: the AU names used as keys, in row order.
    columns: metric prefixes to show ('f1', 'auc', 'acc').
    scale: multiplier (100 gives percentages as in the papers).
    digits: decimals.

  Returns:
    the table as a string; undefined values (NaN or missing) print as '-'.
  """
  headers = {'f1': 'F1', 'auc': 'AUC', 'acc': 'Acc.'}
  lines = ['| AU | ' + ' | '.join(headers.get(c, c) for c in columns) + ' |',
           '|---|' + '---:|' * len(columns)]
  for name in au_names:
    cells = [_fmt(metrics.get(f'{c}/{name}', float('nan')), scale, digits) for c in columns]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  cells = [_fmt(metrics.get(f'{c}_mean', float('nan')), scale, digits) for c in columns]
  lines.append('| **Avg.** | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def format_fold_table(per_fold: Sequence[Mapping[str, float]], au_names: Sequence[str],
                      columns: Sequence[str] = ('f1', 'auc'), scale: float = 100.0,
                      digits: int = 1) -> str:
  """Markdown table of a k-fold protocol: per-AU metrics for each fold and their average.

  Columns: for each metric, one column per fold then 'avg' (mean over folds, NaN-skipping).
  The 'Avg.' row holds each fold's mean over AUs ('<metric>_mean') and, in the 'avg' column, the
  mean of those fold means.

  Args:
    per_fold: one ``au_metrics`` dict per fold.
    au_names: the AU names used as keys, in row order.
    columns: metric prefixes to show.
    scale: multiplier (100 gives percentages).
    digits: decimals.

  Returns:
    the table as a string.
  """
  if not per_fold:
    raise ValueError('per_fold: expected at least one fold, got none.')
  headers = {'f1': 'F1', 'auc': 'AUC', 'acc': 'Acc.'}
  k = len(per_fold)
  head = ['AU']
  for c in columns:
    head += [f'{headers.get(c, c)} fold {i + 1}' for i in range(k)] + [f'{headers.get(c, c)} avg']
  lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 1)]
  nan = float('nan')

  def row(label: str, key_of) -> str:
    cells = []
    for c in columns:
      vals = [fold.get(key_of(c), nan) for fold in per_fold]
      cells += [_fmt(v, scale, digits) for v in vals] + [_fmt(_nanmean(vals), scale, digits)]
    return f'| {label} | ' + ' | '.join(cells) + ' |'

  for name in au_names:
    lines.append(row(name, lambda c, name=name: f'{c}/{name}'))
  lines.append(row('**Avg.**', lambda c: f'{c}_mean'))
  return '\n'.join(lines) + '\n'


def landmark_mean_error(pred: np.ndarray, target: np.ndarray,
                        valid: np.ndarray | None = None) -> float:
  """MGRR-Net Table 8's face-alignment error: the mean over valid faces (and d_o > 0) of
  mean_i ||pred_i - target_i|| / d_o, d_o the inter-ocular distance of the target
  (``geometry.schemes.EYE_INDICES``, eq. 10's).

  (B, M, 2) pixel landmarks, optional (B,) ``valid`` -> scalar."""
  pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
    raise ValueError(f'pred / target: expected equal (B, M, 2) shapes, got {pred.shape} and '
                     f'{target.shape}.')
  right, left = (list(e) for e in schemes.EYE_INDICES[pred.shape[1]])
  d_o = np.linalg.norm(target[:, right].mean(1) - target[:, left].mean(1), axis=-1)
  keep = d_o > 0
  if valid is not None:
    keep &= np.asarray(valid) > 0
  per = np.linalg.norm(pred - target, axis=-1).mean(-1)[keep] / d_o[keep]
  return float(per.mean())

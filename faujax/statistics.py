"""Label statistics of a training set, computed in one place (numpy, float64).

This is the only module in faujax that computes these statistics. The relation graphs
(``faujax.relations``), the loss weights (``faujax.losses``), the ROC AUC of ``faujax.metrics``
and the dataset builders' metadata all call it, so each statistic has one definition and one
set of edge cases.

Conventions:

* ``labels`` is ``(num_examples, N)`` with 0/1 entries, one column per label (AU or
  expression). ``mask`` has the same shape and is truthy where a label is known (``False`` =
  unknown, e.g. BP4D's code 9). An unknown entry is never counted, whatever value it holds
  (9, -1, NaN). A known entry other than 0 or 1 raises ValueError.
* A statistic over a pair of labels (i, j) uses only the examples where both are known.
* Counts are int64 (exact, and they serialise as JSON integers); rates, probabilities, weights
  and ranks are float64.
* A ratio with a zero denominator is never NaN or inf: each function says what it returns
  instead.

Functions: ``occurrence_counts`` / ``occurrence_rates`` (per label), ``inverse_rate_weights``
(AU-GCN eq. 7, MGRR-Net eq. 9, MACG eq. 16; also Emotion-GCN eq. 9), ``class_counts`` (single
label classes), ``cooccurrence_counts`` and ``conditional_probabilities`` (ML-GCN, SVML-RGCN
eq. 3, AU-GCN eq. 4), ``average_ranks`` and ``spearman`` (Emotion-GCN eq. 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np

NORMALIZATIONS: tuple[str, ...] = ('sum', 'max')


def _binary_labels(labels: Any, mask: Any | None) -> tuple[np.ndarray, np.ndarray]:
  """Checks labels and mask; returns float64 (labels with unknown entries set to 0, mask 0/1)."""
  y = np.asarray(labels)
  if y.ndim != 2:
    raise ValueError(f'labels: expected shape (num_examples, num_labels), got {y.shape}.')
  if mask is None:
    known = np.ones(y.shape, bool)
  else:
    known = np.asarray(mask)
    if known.shape != y.shape:
      raise ValueError(f'mask: expected the shape of labels {y.shape}, got {known.shape}.')
    known = known.astype(bool)
  values = y[known]
  if values.size and not np.all((values == 0) | (values == 1)):
    bad = sorted(set(np.unique(values).tolist()) - {0, 1})[:5]
    raise ValueError(f'labels: expected 0/1 values where the mask marks them known, found {bad}.')
  return np.where(known, y, 0).astype(np.float64), known.astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
  """num / den where den > 0, ``fill`` elsewhere (no warning, no NaN unless fill is NaN)."""
  return np.where(den > 0, num / np.where(den > 0, den, 1.0), fill)


def occurrence_counts(labels: Any, mask: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Per-label ``(positives, known)``: the number of 1s and of known entries, int64 ``(N,)``."""
  y, m = _binary_labels(labels, mask)
  return y.sum(0).astype(np.int64), m.sum(0).astype(np.int64)


def occurrence_rates(labels: Any, mask: Any | None = None) -> np.ndarray:
  """Occurrence rate r_i of each label: positives / known examples of that label.

  Args:
    labels: (num_examples, N) 0/1 labels.
    mask: optional (num_examples, N), truthy = known.

  Returns:
    (N,) float64 rates in [0, 1]; 0.0 for a label with no known value (also for an empty
    ``labels``).
  """
  positives, known = occurrence_counts(labels, mask)
  return _ratio(positives.astype(np.float64), known.astype(np.float64), 0.0)


def inverse_rate_weights(rates: Any, *, normalize: str = 'sum', xp: Any = np) -> Any:
  """Data-balance weights w_i proportional to 1 / r_i.

  ``normalize='sum'``: w_i = (1 / r_i) N / sum_j (1 / r_j), so the weights sum to N (AU-GCN
  eq. 7, MGRR-Net eq. 9 and MACG eq. 16 are this formula). ``normalize='max'``: w_i =
  min_j r_j / r_i, so the rarest label weighs 1 (Emotion-GCN eq. 9 as its text and public code
  read it, with r the class frequencies; see docs/reference/model_details.md, "Emotion-GCN").
  Both are invariant to scaling the rates, so class frequencies or rates give the same result.

  Rule for r_i = 0 (a label never positive in training; the same for every caller): w_i = 0,
  and the sum / minimum above run over the labels with r_j > 0. Such a label has no positive
  example to up-weight; clipping r_i to a small eps instead would hand it nearly all of the
  total weight N and silence every other label.

  Args:
    rates: (N,) occurrence rates in [0, 1].
    normalize: 'sum' (the weights sum to N) or 'max' (the largest weight is 1).
    xp: the array module. ``numpy`` (default): the rates are checked (1-D, non-empty, finite,
      in [0, 1], at least one > 0; ValueError otherwise) and the result is float64.
      ``jax.numpy``: the same formula on jax arrays (traceable under jit; values are not
      checked, the result keeps the rates' dtype, and all-zero rates give all-zero weights).

  Returns:
    (N,) weights: 0 where r_i = 0, positive elsewhere.
  """
  if normalize not in NORMALIZATIONS:
    raise ValueError(f'normalize: expected one of {NORMALIZATIONS}, got {normalize!r}.')
  if np.ndim(rates) != 1 or not np.shape(rates)[0]:
    raise ValueError(f'rates: expected a non-empty 1-D array, got shape {np.shape(rates)}.')
  r = xp.asarray(rates)
  if xp is np:
    r = r.astype(np.float64)
    if np.any(~np.isfinite(r)) or np.any(r < 0) or np.any(r > 1) or not np.any(r > 0):
      raise ValueError('rates: expected occurrence rates in [0, 1] with at least one > 0, got '
                       f'{r.tolist()}.')
  occurs = r > 0
  inv = xp.where(occurs, 1.0 / xp.where(occurs, r, 1.0), 0.0)
  total = xp.sum(inv) if normalize == 'sum' else xp.max(inv)
  target = r.shape[0] if normalize == 'sum' else 1.0
  return inv * xp.where(total > 0, target / xp.where(total > 0, total, 1.0), 0.0)


def class_counts(labels: Any, num_classes: int, mask: Any | None = None) -> np.ndarray:
  """Number of examples of each class of a single-label task.

  Args:
    labels: (num_examples,) integer class indices in [0, num_classes) (integral floats are
      accepted). Unknown examples may hold any value when ``mask`` marks them.
    num_classes: K.
    mask: optional (num_examples,), truthy = label known.

  Returns:
    (K,) int64 counts; zeros for an empty ``labels``.
  """
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f'num_classes: expected a positive integer, got {num_classes!r}.')
  c = np.asarray(labels)
  if c.ndim != 1:
    raise ValueError(f'labels: expected class indices of shape (num_examples,), got {c.shape}.')
  known = np.ones(c.shape, bool) if mask is None else np.asarray(mask)
  if known.shape != c.shape:
    raise ValueError(f'mask: expected the shape of labels {c.shape}, got {known.shape}.')
  values = c[known.astype(bool)]
  if values.size and (not np.all(np.isfinite(values)) or np.any(values != np.round(values))
                      or values.min() < 0 or values.max() >= num_classes):
    raise ValueError(f'labels: expected class indices in [0, {num_classes}) where known, got '
                     f'values in [{values.min()}, {values.max()}].')
  return np.bincount(values.astype(np.int64), minlength=num_classes).astype(np.int64)


def cooccurrence_counts(labels: Any, mask: Any | None = None) -> np.ndarray:
  """Co-occurrence counts M_ij = #examples with labels i and j both 1 (hence both known).

  ``M[i, i]`` is the number of positives of label i. Symmetric, int64 ``(N, N)``.
  """
  y, _ = _binary_labels(labels, mask)
  return np.rint(y.T @ y).astype(np.int64)


def conditional_probabilities(labels: Any, mask: Any | None = None, *,
                              undefined: float = 0.0) -> np.ndarray:
  """Conditional occurrence P[i, j] = P(label j = 1 | label i = 1) = M_ij / N_i.

  The co-occurrence matrix of ML-GCN, SVML-RGCN eq. 3 and AU-GCN eq. 4. With a mask, N_i
  counts the examples where label i is 1 and label j is known, so numerator and denominator
  come from the same examples; without a mask it is label i's number of positives.

  Args:
    labels: (num_examples, N) 0/1 labels.
    mask: optional (num_examples, N), truthy = known.
    undefined: the value of P[i, j] when that denominator is 0 (label i never positive where
      j is known): 0.0 by default; MGRR-Net's prior uses 0.5, SVML-RGCN NaN (no relation).

  Returns:
    (N, N) float64; the diagonal is 1 for labels with a positive, ``undefined`` otherwise.
  """
  y, m = _binary_labels(labels, mask)
  return _ratio(y.T @ y, y.T @ m, undefined)


def average_ranks(x: Any) -> np.ndarray:
  """1-based ranks of a 1-D sample, tied values sharing their average rank.

  Equals ``scipy.stats.rankdata(x, method='average')``. NaN values cannot be ranked
  (ValueError); an empty sample gives an empty result.
  """
  x = np.asarray(x)
  if x.ndim != 1:
    raise ValueError(f'x: expected a 1-D sample, got shape {x.shape}.')
  if np.issubdtype(x.dtype, np.floating) and np.any(np.isnan(x)):
    raise ValueError('x: NaN values cannot be ranked.')
  order = np.argsort(x, kind='mergesort')
  xs = x[order]
  starts = np.flatnonzero(np.concatenate([[True], xs[1:] != xs[:-1]]))  # First of each tie run.
  ends = np.concatenate([starts[1:], [x.size]])
  ranks = np.empty(x.size, np.float64)
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # Mean of starts+1 .. ends.
  return ranks


def spearman(x: Any, y: Any) -> float:
  """Spearman's rank correlation of two samples (tied values get average ranks).

  The Pearson correlation of the average ranks, i.e. Emotion-GCN eq. 4 on centred ranks (the
  standard coefficient; the printed formula leaves the centring implicit); equals
  ``scipy.stats.spearmanr``. Inputs are flattened. If either sample is constant the coefficient
  is undefined (scipy gives NaN); it is returned as 0.0, "no correlation", so that a relation
  graph gets no edge from it.
  """
  x = np.asarray(x, np.float64).ravel()
  y = np.asarray(y, np.float64).ravel()
  if x.shape != y.shape or x.size < 2:
    raise ValueError(f'x, y: expected two samples of equal length >= 2, got {x.size} and '
                     f'{y.size}.')
  rx = average_ranks(x) - (x.size + 1) / 2.0
  ry = average_ranks(y) - (y.size + 1) / 2.0
  den = np.sqrt(np.sum(rx * rx) * np.sum(ry * ry))
  return float(np.sum(rx * ry) / den) if den > 0 else 0.0

"""Relation graphs of the papers, computed from training labels (numpy, float64).

The label statistics they start from (occurrence rates, inverse-rate weights,
co-occurrence counts, conditional probabilities, Spearman correlations) come
from ``faujax.statistics``, with its conventions: label matrices are
``(num_examples, num_labels)`` 0/1; an optional ``mask`` of the same shape
marks known labels (``False`` = unknown, e.g. BP4D's code 9) and unknown
entries never count; pair statistics use the examples where both labels are
known; undefined ratios are documented per function and never NaN.

Builders:

* ``class_weights`` (AU-GCN eq. 7 weights from labels,
  ``statistics.inverse_rate_weights`` of ``statistics.occurrence_rates``).
* AU-GCN: ``au_gcn_relation_matrix`` (eq. 4-5) and ``roi_graph`` (Sec. 3.4).
* MGRR-Net: ``mgrr_prior`` (eq. 1-2).
* Emotion-GCN: ``emotion_gcn_correlation`` (eq. 3-4),
  ``binarize`` (eq. 5), ``reweight`` (eq. 6), ``mlgcn_normalize`` and
  ``emotion_gcn_adjacency`` (with the Sec. IV-E expression-expression variant
  and the public code's valence-arousal edge, ``keep_va_edge``).
* ML-GCN / SVML-GCN: ``mlgcn_adjacency`` (SVML-RGCN eq. 13-14).
* SVML-RGCN: ``svml_relations`` (eq. 3-4), a ``(2, C, C)`` positive/negative stack.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from faujax import statistics

# A ROI: (aus, side). ``aus`` is an AU number, a tuple of AU numbers sharing the
# ROI, or None for the whole-face node; ``side`` names the member of a
# symmetric pair ('left'/'right', 'up'/'down') or is None.
Roi = tuple[int | tuple[int, ...] | None, str | None]

# BP4D-like 19 ROIs of AU-GCN (Sec. 3.2), from the EAC-Net centres
# (docs/reference/face_geometry.md, "EAC-Net AU centres"): two per AU group,
# AU12/14/15 and AU23/24 share ROIs, plus the whole face.
BP4D_ROIS_19: tuple[Roi, ...] = (
    (1, 'left'), (1, 'right'), (2, 'left'), (2, 'right'), (4, 'left'), (4, 'right'),
    (6, 'left'), (6, 'right'), (7, 'left'), (7, 'right'), (10, 'left'), (10, 'right'),
    ((12, 14, 15), 'left'), ((12, 14, 15), 'right'), (17, 'left'), (17, 'right'),
    ((23, 24), 'up'), ((23, 24), 'down'), (None, None),
)


def _ratio(num: np.ndarray, den: np.ndarray, fill: float = 0.0) -> np.ndarray:
  return np.where(den > 0, num / np.where(den > 0, den, 1.0), fill)


def class_weights(labels: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
  """``(C,)`` AU-GCN / MGRR-Net weights ``w_i = (1/r_i) C / sum_j (1/r_j)`` (sum C).

  ``statistics.inverse_rate_weights(statistics.occurrence_rates(labels, mask))``:
  a label that is never positive weighs 0 (the rule of ``inverse_rate_weights``,
  docs/reference/model_details.md, "Inverse-rate weights"); ValueError if no
  label is ever positive.
  """
  return statistics.inverse_rate_weights(statistics.occurrence_rates(labels, mask))


def au_gcn_relation_matrix(labels: np.ndarray, threshold: float,
                           mask: np.ndarray | None = None) -> np.ndarray:
  """AU-GCN eq. 4-5: ``M_bool = [M + M^T >= threshold]`` as ``(C, C)`` int, M = P(j | i)."""
  p = statistics.conditional_probabilities(labels, mask)
  return ((p + p.T) >= threshold).astype(np.int64)


def _roi_aus(roi: Roi, index: int) -> tuple[tuple[int, ...] | None, str | None]:
  if not isinstance(roi, (tuple, list)) or len(roi) != 2:
    raise ValueError(f'rois[{index}] must be a pair (aus, side); got {roi!r}.')
  aus, side = roi
  if aus is None:
    return None, side
  aus = (aus,) if isinstance(aus, (int, np.integer)) else tuple(aus)
  if not aus or not all(isinstance(a, (int, np.integer)) for a in aus):
    raise ValueError(f'rois[{index}] must name an AU, a tuple of AUs or None; got {roi!r}.')
  return tuple(int(a) for a in aus), side


def roi_graph(rois: Sequence[Roi], relation: np.ndarray, aus: Sequence[int]) -> np.ndarray:
  """AU-GCN ROI-node graph (Sec. 3.4) as a symmetric ``(R, R)`` int 0/1 matrix.

  Edges: (1) self-loops; (2) the members of a symmetric pair (same AUs,
  different side, e.g. AU1 left/right, AU23 up/down); (3) ROIs of AU ``i`` and
  ROIs of AU ``j`` whenever ``relation[i, j]`` (or ``[j, i]``) is 1; (4) the
  whole-face node (``aus=None``) to every node.

  Args:
    rois: ROI specs ``(aus, side)`` (see ``Roi``), e.g. ``BP4D_ROIS_19``.
    relation: ``(C, C)`` ``M_bool`` from ``au_gcn_relation_matrix``.
    aus: the AU number of each row/column of ``relation``.
  """
  aus = [int(a) for a in aus]
  rel = np.asarray(relation)
  if rel.shape != (len(aus), len(aus)):
    raise ValueError(f'relation must be ({len(aus)}, {len(aus)}) to match aus; got {rel.shape}.')
  parsed = [_roi_aus(roi, i) for i, roi in enumerate(rois)]
  index = {a: k for k, a in enumerate(aus)}
  for i, (roi_aus, _) in enumerate(parsed):
    for a in roi_aus or ():
      if a not in index:
        raise ValueError(f'rois[{i}] names AU{a}, which is not in aus={aus}.')
  r = len(parsed)
  graph = np.eye(r, dtype=np.int64)
  related = (rel != 0) | (rel.T != 0)
  for i, (aus_i, side_i) in enumerate(parsed):
    for j, (aus_j, side_j) in enumerate(parsed):
      if aus_i is None or aus_j is None:
        graph[i, j] = 1
      elif aus_i == aus_j and side_i != side_j:
        graph[i, j] = 1
      elif any(related[index[a], index[b]] for a in aus_i for b in aus_j):
        graph[i, j] = 1
  return graph


def mgrr_prior(labels: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
  """MGRR-Net eq. 1-2 ``(C, C)``: ``A_ij = |2 (P_ij - 0.5)|``,
  ``P_ij = (P(a_i=1 | a_j=1) + P(a_i=0 | a_j=0)) / 2``.

  An undefined conditional (AU j never 1, or never 0) counts as 0.5, i.e. no
  information. The diagonal is 1 for labels that take both values.
  """
  # statistics.conditional_probabilities gives P[j, i] = P(a_i = 1 | a_j = 1);
  # on the negated labels, P(a_i = 0 | a_j = 0). Unknown entries stay unknown.
  negated = 1 - np.asarray(labels, np.float64)
  p_11 = statistics.conditional_probabilities(labels, mask, undefined=0.5).T
  p_00 = statistics.conditional_probabilities(negated, mask, undefined=0.5).T
  return np.abs(2.0 * ((p_11 + p_00) / 2.0 - 0.5))


def _one_hot(categorical: np.ndarray, num_classes: int) -> np.ndarray:
  c = np.asarray(categorical)
  if c.ndim == 2:
    if c.shape[1] != num_classes:
      raise ValueError(f'categorical one-hot labels must have {num_classes} columns; '
                       f'got shape {c.shape}.')
    return c.astype(np.float64)
  if c.ndim != 1 or not np.issubdtype(c.dtype, np.integer):
    raise ValueError('categorical must be class indices (n,) or one-hot (n, num_classes); '
                     f'got shape {c.shape}, dtype {c.dtype}.')
  if c.size and (c.min() < 0 or c.max() >= num_classes):
    raise ValueError(f'categorical class indices must lie in [0, {num_classes}); '
                     f'got range [{c.min()}, {c.max()}].')
  return np.eye(num_classes)[c]


def emotion_gcn_correlation(categorical: np.ndarray, dimensional: np.ndarray, *,
                            num_classes: int = 7, keep_va_edge: bool = False) -> np.ndarray:
  """Emotion-GCN eq. 3: ``(K + D, K + D)`` with 1 on the diagonal, ``|spearman|``
  (``statistics.spearman``, eq. 4) between each one-hot class column and each
  dimension in the Cat/Dim blocks, 0 elsewhere.

  Args:
    categorical: ``(n,)`` class indices or ``(n, K)`` one-hot.
    dimensional: ``(n, D)`` continuous labels (valence, arousal).
    num_classes: K.
    keep_va_edge: False (default, the paper's eq. 3): the Dim-Dim off-diagonal
      entries (the valence-arousal edge) are 0. True: the public code's
      behaviour, which zeroes only the Cat-Cat off-diagonals and so keeps
      ``|spearman(V, A)|`` there (docs/reference/model_details.md,
      "Emotion-GCN").
  """
  cat = _one_hot(categorical, num_classes)
  dim = np.asarray(dimensional, np.float64)
  if dim.ndim != 2 or dim.shape[0] != cat.shape[0]:
    raise ValueError(f'dimensional must be (n={cat.shape[0]}, D); got shape {dim.shape}.')
  k, d = cat.shape[1], dim.shape[1]
  a = np.eye(k + d)
  for i in range(k):
    for j in range(d):
      a[i, k + j] = a[k + j, i] = abs(statistics.spearman(cat[:, i], dim[:, j]))
  if keep_va_edge:
    for i in range(d):
      for j in range(i + 1, d):
        a[k + i, k + j] = a[k + j, k + i] = abs(statistics.spearman(dim[:, i], dim[:, j]))
  return a


def binarize(a: np.ndarray, threshold: float) -> np.ndarray:
  """Emotion-GCN eq. 5 / SVML-RGCN eq. 13: ``1`` where ``a >= threshold`` else 0 (float)."""
  return (np.asarray(a, np.float64) >= threshold).astype(np.float64)


def reweight(a_bin: np.ndarray, p: float, self_weight: float | None = None) -> np.ndarray:
  """ML-GCN re-weighting (Emotion-GCN eq. 6; SVML-RGCN eq. 14).

  Off-diagonal ``p * A_ij / sum_{j != i} A_ij`` (0 for rows without neighbours),
  diagonal ``1 - p`` (the papers) or ``self_weight`` (ML-GCN's code adds the
  identity: ``self_weight=1``).
  """
  a = np.asarray(a_bin, np.float64)
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise ValueError(f'a_bin must be a square matrix; got shape {a.shape}.')
  if not 0.0 <= p <= 1.0:
    raise ValueError(f'p must lie in [0, 1]; got {p}.')
  off = a * (1.0 - np.eye(len(a)))
  out = p * _ratio(off, off.sum(1, keepdims=True))
  np.fill_diagonal(out, 1.0 - p if self_weight is None else self_weight)
  return out


def mlgcn_normalize(a: np.ndarray) -> np.ndarray:
  """``D^-1/2 A^T D^-1/2`` with ``D`` the row sums of ``A`` (zero rows stay 0).

  Same as ``faujax.graph.normalize_adjacency(a, 'mlgcn')``, in float64 numpy.
  """
  a = np.asarray(a, np.float64)
  deg = a.sum(1)
  d = _ratio(np.ones_like(deg), np.sqrt(np.maximum(deg, 0)))
  return d[:, None] * a.T * d[None, :]


def emotion_gcn_adjacency(categorical: np.ndarray, dimensional: np.ndarray, *,
                          num_classes: int = 7, tau: float = 0.1, p: float = 0.7,
                          expression_labels: np.ndarray | None = None,
                          expression_mask: np.ndarray | None = None,
                          keep_va_edge: bool = False,
                          normalize: bool = True) -> np.ndarray:
  """Emotion-GCN adjacency ``(K + D, K + D)``: eq. 3 -> eq. 5 (tau) -> eq. 6 (p)
  -> ``mlgcn_normalize`` (if ``normalize``).

  With ``expression_labels`` (a multi-label ``(m, K)`` 0/1 matrix, e.g.
  EMOTIC), the expression-expression block holds the conditional probabilities
  ``P(j | i)`` (``statistics.conditional_probabilities``; Sec. IV-E and its
  appendix; use ``p=0.5`` there) instead of 0. Paper default ``p = 0.7``; the
  public code uses 0.5.

  ``keep_va_edge=True`` is the public code's behaviour (see
  ``emotion_gcn_correlation``): the valence-arousal entry of eq. 3 is
  ``|spearman(V, A)|`` instead of 0, so eq. 5 keeps that edge when
  ``|rho(V, A)| >= tau``. The default (False) is the paper's eq. 3.
  """
  a = emotion_gcn_correlation(categorical, dimensional, num_classes=num_classes,
                              keep_va_edge=keep_va_edge)
  if expression_labels is not None:
    cond = statistics.conditional_probabilities(expression_labels, expression_mask)
    if cond.shape != (num_classes, num_classes):
      raise ValueError(f'expression_labels must have {num_classes} columns; '
                       f'got {cond.shape[0]}.')
    block = cond * (1.0 - np.eye(num_classes)) + np.eye(num_classes)
    a[:num_classes, :num_classes] = block
  a = reweight(binarize(a, tau), p)
  return mlgcn_normalize(a) if normalize else a


def mlgcn_adjacency(labels: np.ndarray, t: float, p: float, *,
                    mask: np.ndarray | None = None, self_weight: float | None = None,
                    normalize: bool = False) -> np.ndarray:
  """ML-GCN / SVML-GCN re-weighted correlation (SVML-RGCN eq. 13-14), ``(C, C)``.

  ``A_ij = [P(j | i) >= t]`` off the diagonal, re-weighted with ``p``
  (``reweight``); optionally followed by ``mlgcn_normalize``.
  """
  a = binarize(statistics.conditional_probabilities(labels, mask), t)
  a = reweight(a, p, self_weight)
  return mlgcn_normalize(a) if normalize else a


def svml_relations(labels: np.ndarray, t1: float, t2: float, *,
                   mask: np.ndarray | None = None) -> np.ndarray:
  """SVML-RGCN eq. 3-4: ``(2, C, C)`` 0/1 stack ``[positive, negative]``.

  ``P_ij = M_ij / N_i`` (``statistics.conditional_probabilities``); positive
  where ``P_ij > t2``, negative where ``P_ij < t1``, off the diagonal only
  (self-connections are R-GCN's ``W_0``). Pairs whose ``N_i`` is 0 (P undefined)
  get no relation. Requires ``t1 < t2``.
  """
  if not t1 < t2:
    raise ValueError(f'svml_relations needs t1 < t2; got t1={t1}, t2={t2}.')
  p = statistics.conditional_probabilities(labels, mask, undefined=np.nan)
  defined = ~np.isnan(p) & ~np.eye(len(p), dtype=bool)
  positive = defined & (p > t2)
  negative = defined & (p < t1)
  return np.stack([positive, negative]).astype(np.float64)

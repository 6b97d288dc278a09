"""Emotion-GCN figures written to the workdir after evaluation (paper ``emotion_gcn.md``; the
evaluator ``faujax.evaluators.emotion_gcn_figures`` runs it after training).

* ``emotion_gcn_adjacency.png``: the re-weighted adjacency A'' of eq. 6 (Fig. 3); written only
  when an adjacency is given (the baselines have none).
* ``confusion_matrix.png``: the row-normalised confusion matrix of the evaluated split (Fig. 4),
  rows = true class, columns = predicted class, each row summing to 1 (cells show the fraction).
* ``classifier_cosine_similarity.png``: cosine similarity between the learned expression
  classifiers and valence/arousal regressors (Fig. 6), for Emotion-GCN (the GCN output W) and for
  the baselines (the rows of their linear heads ``head`` and ``va_head``).

All use ``faujax.plots.adjacency_heatmap`` (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from faujax import plots
from faujax.models import emotion_gcn

ADJACENCY_PNG = 'emotion_gcn_adjacency.png'
CONFUSION_PNG = 'confusion_matrix.png'
COSINE_PNG = 'classifier_cosine_similarity.png'


def classifier_vectors(model: Any) -> np.ndarray:
  """The (K + 2, C) expression classifiers and valence/arousal regressors of a trained model.

  Emotion-GCN: W = GCN(Z, A) or its free linear classifiers (``EmotionGCN.classifier_weights``).
  Baseline: the transposed kernels of its ``head`` (K classes) and ``va_head`` (2) layers.
  """
  if isinstance(model, emotion_gcn.EmotionGCN):
    return np.asarray(model.classifier_weights(), np.float64)
  head, va_head = getattr(model, 'head', None), getattr(model, 'va_head', None)
  if head is not None and va_head is not None:
    return np.concatenate([np.asarray(head.kernel[...], np.float64).T,
                           np.asarray(va_head.kernel[...], np.float64).T], axis=0)
  raise ValueError(f'classifier_vectors: {type(model).__name__} has neither GCN classifiers nor '
                   "'head' and 'va_head' layers.")


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
  """(N, N) cosine similarity of the rows of ``vectors`` (N, C); zero rows give 0."""
  v = np.asarray(vectors, np.float64)
  if v.ndim != 2:
    raise ValueError(f'vectors must be (N, C); got shape {v.shape}.')
  norm = np.linalg.norm(v, axis=1, keepdims=True)
  u = np.where(norm > 0, v / np.where(norm > 0, norm, 1.0), 0.0)
  return u @ u.T


def normalized_confusion(confusion: np.ndarray) -> np.ndarray:
  """Each row divided by its sum (rows without examples stay 0)."""
  c = np.asarray(confusion, np.float64)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f'confusion must be a square (K, K) matrix; got shape {c.shape}.')
  rows = c.sum(1, keepdims=True)
  return np.where(rows > 0, c / np.where(rows > 0, rows, 1.0), 0.0)


def write_figures(workdir: str, model: Any, adjacency: np.ndarray | None,
                  confusion: np.ndarray | None, label_names: Sequence[str]) -> dict[str, str]:
  """Writes the Emotion-GCN figures (Fig. 3, 4, 6) as PNG files into ``workdir``.

  Args:
    workdir: output directory (created if needed).
    model: the trained NNX module (``EmotionGCN`` or ``Baseline``).
    adjacency: A'' (K + 2, K + 2) or None (no Fig. 3; e.g. baselines). If None and the model is
      an ``EmotionGCN``, its own adjacency is used.
    confusion: (K, K) counts (``faujax.metrics.confusion_matrix``), or None (no Fig. 4).
    label_names: the K expression class names.

  Returns:
    {'adjacency' | 'confusion' | 'cosine': path} for the figures written.
  """
  names = [str(n) for n in label_names]
  nodes = emotion_gcn.node_names(names)
  os.makedirs(workdir, exist_ok=True)
  written = {}
  if adjacency is None and isinstance(model, emotion_gcn.EmotionGCN):
    adjacency = model.adjacency
  if adjacency is not None:
    a = np.asarray(adjacency, np.float64)
    if a.shape != (len(nodes), len(nodes)):
      raise ValueError(f'adjacency must be ({len(nodes)}, {len(nodes)}) for nodes {nodes}; got '
                       f'{a.shape}.')
    written['adjacency'] = plots.save_adjacency_heatmap(
        a, nodes, os.path.join(workdir, ADJACENCY_PNG), title="Emotion-GCN adjacency A''",
        vmin=0.0, vmax=1.0)
  if confusion is not None:
    c = normalized_confusion(confusion)
    if c.shape != (len(names), len(names)):
      raise ValueError(f'confusion must be ({len(names)}, {len(names)}) for classes {names}; '
                       f'got {c.shape}.')
    fig = plots.adjacency_heatmap(c, names, title='Confusion matrix (rows: true class)',
                                  vmin=0.0, vmax=1.0)
    ax = fig.axes[0]
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    fig.tight_layout()
    written['confusion'] = os.path.join(workdir, CONFUSION_PNG)
    fig.savefig(written['confusion'], dpi=150)
  sim = cosine_similarity(classifier_vectors(model))
  if sim.shape != (len(nodes), len(nodes)):
    raise ValueError(f'The model gives {sim.shape[0]} classifier/regressor vectors; expected '
                     f'{len(nodes)} for {nodes}.')
  written['cosine'] = plots.save_adjacency_heatmap(
      sim, nodes, os.path.join(workdir, COSINE_PNG), cmap='RdBu_r', vmin=-1.0, vmax=1.0,
      title='Cosine similarity of classifiers / regressors')
  return written


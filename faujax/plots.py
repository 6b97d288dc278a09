"""Plot helpers: adjacency heatmaps with label names (AU-GCN / MGRR-Net / Emotion-GCN figures).

Built on ``matplotlib.figure.Figure`` with the Agg canvas, so nothing depends
on (or changes) the interactive pyplot backend.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def adjacency_heatmap(adjacency: np.ndarray, labels: Sequence[str], *,
                      col_labels: Sequence[str] | None = None, title: str | None = None,
                      annotate: bool = True, fmt: str = '.2f', cmap: str = 'Blues',
                      vmin: float | None = None, vmax: float | None = None,
                      size: float | None = None) -> Figure:
  """Heatmap of an ``(R, C)`` matrix with row/column label names and a colour bar.

  Args:
    adjacency: 2-D matrix (any array-like; converted with ``np.asarray``).
    labels: row names (also the column names unless ``col_labels``).
    annotate: write each value into its cell (``fmt`` format).

  Returns:
    A ``matplotlib.figure.Figure`` with an Agg canvas (``fig.savefig`` works).
  """
  a = np.asarray(adjacency, np.float64)
  if a.ndim != 2:
    raise ValueError(f'adjacency must be 2-D; got shape {a.shape}.')
  cols = list(labels) if col_labels is None else list(col_labels)
  if len(labels) != a.shape[0] or len(cols) != a.shape[1]:
    raise ValueError(f'labels ({len(labels)}) and col_labels ({len(cols)}) must match the '
                     f'adjacency shape {a.shape}.')
  side = size if size is not None else max(4.0, 0.45 * max(a.shape) + 2.0)
  fig = Figure(figsize=(side + 1.0, side))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  image = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, interpolation='nearest')
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  ax.set_xticks(range(a.shape[1]), labels=cols, rotation=90)
  ax.set_yticks(range(a.shape[0]), labels=list(labels))
  if annotate:
    lo, hi = np.nanmin(a), np.nanmax(a)
    mid = (lo + hi) / 2.0
    for i in range(a.shape[0]):
      for j in range(a.shape[1]):
        ax.text(j, i, format(a[i, j], fmt), ha='center', va='center', fontsize=7,
                color='white' if a[i, j] > mid else 'black')
  if title:
    ax.set_title(title)
  fig.tight_layout()
  return fig


def save_adjacency_heatmap(adjacency: np.ndarray, labels: Sequence[str],
                           path: str | os.PathLike[str], *, dpi: int = 150, **kwargs) -> str:
  """Draws ``adjacency_heatmap(adjacency, labels, **kwargs)`` and saves it to ``path``."""
  fig = adjacency_heatmap(adjacency, labels, **kwargs)
  fig.savefig(os.fspath(path), dpi=dpi)
  return os.fspath(path)

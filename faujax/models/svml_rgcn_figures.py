"""SVML-RGCN relation figures and arrays written to the workdir (paper ``svml_rgcn.md``, Fig. 1).

* ``svml_rgcn_relations.npz``: ``cooccurrence`` (C, C) P_ij of eq. 3 from the fold's training
  labels (NaN where label i has no positive), ``graph`` (the R-GCN relation stack (R, C, C),
  [positive, negative] by default, or the SVML-GCN matrix of eq. 13-14 (C, C); absent for the
  linear baseline), ``names``, ``classifier`` and ``relations``.
* ``svml_rgcn_relations.png``: P_ij with the relation of each pair (eq. 4): '+' positive, '-'
  negative, blank none.

``write_figures(workdir, model)`` takes a trained ``SVMLRGCN`` (any other model: nothing written).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from faujax import plots

RELATIONS_NPZ = 'svml_rgcn_relations.npz'
RELATIONS_PNG = 'svml_rgcn_relations.png'


def relation_marks(graph: np.ndarray | None, relations: str, num_nodes: int) -> np.ndarray:
  """``(C, C)`` str: '+' where a positive relation exists, '-' a negative one, '' none."""
  marks = np.full((num_nodes, num_nodes), '', dtype=object)
  if graph is None or np.ndim(graph) != 3:
    return marks
  kinds = {'both': ('+', '-'), 'positive': ('+',), 'negative': ('-',)}[relations]
  for sign, rel in zip(kinds, graph):
    marks[np.asarray(rel) != 0] = sign
  return marks


def write_figures(workdir: str, model: Any) -> dict[str, str]:
  """Writes the relations of a trained ``SVMLRGCN`` to ``workdir``; returns {name: path}."""
  from faujax.models import svml_rgcn  # pylint: disable=g-import-not-at-top
  if not isinstance(model, svml_rgcn.SVMLRGCN):
    return {}
  os.makedirs(workdir, exist_ok=True)
  names = list(model.label_names)
  p = np.asarray(model.cooccurrence, np.float64)
  arrays = {'cooccurrence': p, 'names': np.asarray(names),
            'classifier': np.asarray(model.classifier),
            'relations': np.asarray(model.relation_kind)}
  if model.relations is not None:
    arrays['graph'] = np.asarray(model.relations, np.float64)
  npz = os.path.join(workdir, RELATIONS_NPZ)
  np.savez(npz, **arrays)
  fig = plots.adjacency_heatmap(np.nan_to_num(p, nan=0.0), names, annotate=True, vmin=0.0,
                                vmax=1.0, title=f'P(j | i) (eq. 3); {model.classifier} graph')
  ax = fig.axes[0]
  marks = relation_marks(model.relations, model.relation_kind, len(names))
  for i in range(len(names)):
    for j in range(len(names)):
      if marks[i, j]:
        ax.text(j + 0.32, i - 0.28, marks[i, j], ha='center', va='center', fontsize=11,
                color='crimson', fontweight='bold')
  png = os.path.join(workdir, RELATIONS_PNG)
  fig.savefig(png, dpi=150)
  return {'relations': png, 'relations_npz': npz}


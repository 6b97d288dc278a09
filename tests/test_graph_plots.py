"""Tests of faujax.plots (adjacency heatmaps with label names)."""

from __future__ import annotations

import numpy as np
import pytest

from faujax import labels as labels_lib
from faujax import plots
from faujax import relations


def test_heatmap_has_label_names_and_saves_png(tmp_path):
  rng = np.random.default_rng(0)
  occ = (rng.random((50, 12)) < 0.3).astype(int)
  prior = relations.mgrr_prior(occ)
  names = labels_lib.au_label_names(labels_lib.BP4D_AUS)
  fig = plots.adjacency_heatmap(prior, names, title='MGRR-Net prior')
  ax = fig.axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == names
  assert [t.get_text() for t in ax.get_yticklabels()] == names
  assert len(ax.texts) == 144 and ax.get_title() == 'MGRR-Net prior'
  path = plots.save_adjacency_heatmap(prior, names, tmp_path / 'prior.png', annotate=False)
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_heatmap_rejects_mismatched_labels():
  with pytest.raises(ValueError, match='labels'):
    plots.adjacency_heatmap(np.eye(3), ['a', 'b'])
  with pytest.raises(ValueError, match='2-D'):
    plots.adjacency_heatmap(np.ones(3), ['a', 'b', 'c'])

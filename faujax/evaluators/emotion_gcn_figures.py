"""Evaluator: Emotion-GCN's figures of a finished run (Fig. 3, 4, 6; drawn by
``faujax.models.emotion_gcn_figures``) on the evaluated split."""

from __future__ import annotations

from typing import Any

import numpy as np

from faujax import metrics as metrics_lib
from faujax.models import emotion_gcn_figures


def evaluate(context: Any) -> dict[str, str]:
  """Writes the adjacency, the confusion matrix and the classifier cosines; returns their paths."""
  arrays = context.arrays
  names = list(context.info.label_names)
  labels = np.asarray(arrays[metrics_lib.EXPR_LABEL])
  keep = np.asarray(arrays.get(metrics_lib.EXPR_MASK, np.ones(len(labels)))) > 0
  confusion = metrics_lib.confusion_matrix(
      labels[keep], np.argmax(np.asarray(arrays[metrics_lib.EXPR_SCORE])[keep], -1), len(names))
  return emotion_gcn_figures.write_figures(context.workdir, context.model, None, confusion,
                                           names)

"""SVML-RGCN's visual node vectors (eq. 5): class means of pooled features, and their file.

SVML-RGCN Sec. 3.3: ``f_c = sum_n phi(I_{c,n}) / N_c``, phi a network trained on basic
expressions, averaged over the images of each basic expression c. ``python -m
faujax.tools.visual_nodes`` computes them from a trained run and writes this file; the SVML-RGCN
config points ``config.model.visual_nodes`` at it, and the model keeps the vectors as a constant
of the run (``SVMLRGCN.prepare``), so the file is read once, before training.

File format (``save`` / ``load``; numpy ``.npz``, no pickles):
  features  float32 (C, d)  the class means f_c, rows in ``names`` order
  names     str (C,)        the class names (matched case-insensitively by ``load``)
  counts    int64 (C,)      N_c, the number of images averaged per class
  meta      str             JSON: config file, workdir, split, checkpoint step, pooling
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np


class VisualNodesError(ValueError):
  """A visual-node file or its inputs cannot give the requested class means."""


# ----------------------------------------------------------------------------- eq. 5 and the file


def class_means(features: Any, classes: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """SVML-RGCN eq. 5: ``f_c = mean of features[n] over n with classes[n] == c``.

  Args:
    features: ``(n, d)`` pooled features phi(I_n).
    classes: ``(n,)`` int class of each row in ``[0, num_classes)``; other values (e.g. -1 for
      rows outside the requested classes) are ignored.
    num_classes: C.

  Returns:
    ``(means (C, d) float64, counts (C,) int64)``; a class without rows has a zero mean and
    count 0 (``save`` refuses it).
  """
  x = np.asarray(features, np.float64)
  c = np.asarray(classes).astype(np.int64).ravel()
  if x.ndim != 2 or x.shape[0] != c.shape[0]:
    raise VisualNodesError(f'class_means: features must be (n, d) with n = len(classes) = '
                           f'{c.shape[0]}; got {x.shape}.')
  keep = (c >= 0) & (c < num_classes)
  counts = np.bincount(c[keep], minlength=num_classes).astype(np.int64)
  sums = np.zeros((num_classes, x.shape[1]))
  np.add.at(sums, c[keep], x[keep])
  means = sums / np.maximum(counts, 1)[:, None]
  return means, counts


def save(path: str, features: Any, names: Sequence[str], counts: Any,
         meta: Mapping[str, Any] | None = None) -> str:
  """Writes the visual-node file (see the module docstring); returns its absolute path."""
  f = np.asarray(features, np.float32)
  counts = np.asarray(counts, np.int64)
  names = [str(n) for n in names]
  if f.ndim != 2 or f.shape[0] != len(names) or counts.shape != (len(names),):
    raise VisualNodesError(f'save: features {f.shape}, names {len(names)} and counts '
                           f'{counts.shape} must describe the same C classes.')
  empty = [n for n, k in zip(names, counts) if k <= 0]
  if empty:
    raise VisualNodesError(f'No images of class(es) {empty} in the data: their visual node '
                           'vectors (eq. 5) would be undefined.')
  if not np.all(np.isfinite(f)):
    raise VisualNodesError('save: the class means contain non-finite values.')
  path = os.path.abspath(os.path.expanduser(path))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path, features=f, names=np.asarray(names), counts=counts,
           meta=np.asarray(json.dumps(dict(meta or {}), sort_keys=True)))
  return path


def load(path: str, label_names: Sequence[str]) -> np.ndarray:
  """The ``(N, d)`` float32 visual node vectors of ``label_names`` from a file of ``save``.

  Raises:
    VisualNodesError: naming the file and the missing names / malformed fields.
  """
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise VisualNodesError(
        f'config.model.visual_nodes: {path!r} does not exist; write it with '
        '`python -m faujax.tools.visual_nodes --config <basic-expression config> --workdir <run> '
        f'--out {path} [--train]`.')
  try:
    with np.load(path, allow_pickle=False) as data:
      table = np.asarray(data['features'], np.float32)
      stored = [str(n).lower() for n in data['names']]
  except (OSError, KeyError, ValueError) as e:
    raise VisualNodesError(f'{path}: not a visual-node .npz with "features" and "names" ({e}).'
                           ) from None
  if table.ndim != 2 or table.shape[0] != len(stored):
    raise VisualNodesError(f'{path}: features {table.shape} do not match {len(stored)} names.')
  index = {n: i for i, n in enumerate(stored)}
  missing = [n for n in label_names if str(n).lower() not in index]
  if missing:
    raise VisualNodesError(f'{path} has no visual node for {missing}; it holds {stored}.')
  return table[[index[str(n).lower()] for n in label_names]]

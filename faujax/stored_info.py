"""The dataset's label space stored beside a run: ``dataset_info.json`` and ``train_labels.npz``.

A workdir that holds them predicts without its dataset (``faujax.predictor``): training writes
them when a run starts (``faujax.train.train_and_evaluate``, process 0), and the checkpoint
importer writes them for the authors' checkpoints (``faujax.tools.import_checkpoint``).

``dataset_info.json``: the fields of ``input_pipeline.DatasetInfo`` that define the label space
(``FIELDS``), the fold's training statistics (``class_counts``, ``train_occurrence_rates``) and
``face_template``, the mean five points of the stored training faces (``faces.
template_from_landmarks``), which the 'template' alignment of the stored faces needs.
``train_labels.npz``: the fold's training label arrays that the model read to build its constants
(Emotion-GCN's adjacency, eq. 3-6; the AU-GCN, MGRR-Net and SVML-RGCN graphs); the landmarks are
kept only as the template. Both files are written atomically (``faujax.files``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from faujax import faces as faces_lib
from faujax import files
from faujax.data import input_pipeline

INFO_FILE = 'dataset_info.json'
LABELS_FILE = 'train_labels.npz'
FIELDS = ('name', 'builder_config', 'task', 'label_names', 'aus', 'num_examples', 'image_size',
          'num_landmarks', 'fold', 'multi_label_names')
_STATISTICS = ('class_counts', 'train_occurrence_rates')


def labels_to_store(info: Any) -> dict[str, np.ndarray]:
  """The training label arrays worth storing: those the model already read (the cached
  ``info.train_labels``), and the landmarks of a 'template'-aligned dataset (for its template).
  Reading nothing else keeps a run's start from scanning a large dataset for labels no one uses.
  """
  cached = vars(info).get('train_labels')
  if cached is None and faces_lib.method_for(info) == 'template':
    try:
      cached = info.train_labels
    except Exception:  # pylint: disable=broad-except  # a hand-made info without a dataset
      cached = None
  return dict(cached or {})


def save(workdir: str, info: input_pipeline.DatasetInfo,
         train_labels: dict[str, np.ndarray] | None = None) -> None:
  """Writes ``info``'s label space, statistics and face template into ``workdir``.

  Args:
    workdir: the run's directory (created if needed).
    info: the dataset.
    train_labels: the label arrays to store (default ``labels_to_store(info)``); a
      ``'landmarks'`` (n, P, 2) entry is stored only as the five-point template.
  """
  labels = dict(labels_to_store(info) if train_labels is None else train_labels)
  template = faces_lib.template_from_landmarks(labels.pop('landmarks', np.zeros((0, 0, 2))))
  record = {k: getattr(info, k) for k in FIELDS}
  record.update(aus=[int(a) for a in info.aus], label_names=list(info.label_names),
                multi_label_names=list(info.multi_label_names),
                num_examples={k: int(v) for k, v in info.num_examples.items()},
                class_counts=np.asarray(info.class_counts).tolist(),
                train_occurrence_rates=np.asarray(info.train_occurrence_rates).tolist(),
                face_template=None if template is None else template.tolist())
  os.makedirs(workdir, exist_ok=True)
  files.write_json(os.path.join(workdir, INFO_FILE), record)
  files.write_atomic(
      os.path.join(workdir, LABELS_FILE),
      lambda f: np.savez_compressed(f, **{k: np.asarray(v) for k, v in labels.items()}),
      binary=True)


def load(workdir: str) -> tuple[input_pipeline.DatasetInfo, np.ndarray | None] | None:
  """(info, face template or None) from ``save``'s files; None when ``workdir`` has none.

  Raises:
    ValueError: naming the file, when ``dataset_info.json`` lacks a field.
  """
  path = os.path.join(workdir, INFO_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as f:
    record = json.load(f)
  missing = [k for k in FIELDS + _STATISTICS if k not in record]
  if missing:
    raise ValueError(f'{path}: not a faujax dataset info (missing {missing}).')
  info = input_pipeline.DatasetInfo(
      name=record['name'], builder_config=record['builder_config'], task=record['task'],
      label_names=list(record['label_names']), num_labels=len(record['label_names']),
      aus=tuple(record['aus']), num_examples=dict(record['num_examples']),
      image_size=int(record['image_size']), num_landmarks=int(record['num_landmarks']),
      fold=int(record['fold']), multi_label_names=list(record['multi_label_names']),
      train_occurrence_rates=np.asarray(record['train_occurrence_rates'], np.float32),
      class_counts=np.asarray(record['class_counts'], np.int64))
  labels_path = os.path.join(workdir, LABELS_FILE)
  labels = {}
  if os.path.exists(labels_path):
    with np.load(labels_path, allow_pickle=False) as z:
      labels = {k: z[k] for k in z.files}
  info.__dict__['train_labels'] = labels  # the cached property, without the dataset
  template = record.get('face_template')
  return info, None if template is None else np.asarray(template, np.float32)

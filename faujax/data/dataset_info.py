"""The configured dataset: ``config.data`` (``DataConfig``) and its label space (``DatasetInfo``).

``config.data`` (declared by ``DataConfig``; pass ``config.data`` or a full config with a ``data``
field; a dict, ConfigDict or DataConfig):
  name               tfds builder: 'synthetic_faces' (default) or a real dataset
                     (``faujax.data.builders``: 'bp4d', 'disfa', 'emotionet', 'affectnet',
                     'aff_wild2', 'raf_ml', 'raf_db', 'jaffe').
  builder_config     builder config, e.g. 'bp4d' (synthetic), 'megraphau_lists' (an AU layout),
                     '8class' (AffectNet). None / '' (default): synthetic 'bp4d'; for the AU
                     datasets the layout whose files are present in manual_dir (``detect_layouts``
                     of the builder), else one error naming the layouts and their files; for the
                     expression datasets the builder's default config.
  image_size         S of the stored S x S images. None (default): what the builder stores.
                     For 'synthetic_faces' another size builds a variant; for the other builders
                     it must equal the stored size.
  fold               the fold (default 1): 1-3 (``faujax.data.splits``); JAFFE 1-5.
  data_dir           tfds data directory (None: the tfds default, ~/tensorflow_datasets).
  manual_dir         the directory of the downloaded files of a real dataset (None: only valid
                     when the dataset is already built in data_dir). Checked first.
  shuffle_buffer     examples in the training shuffle buffer (default 2048).
  sample_positive_frames, sample_negative_frames
                     AU-GCN sec. 4.1: each epoch trains on a fresh draw of this many frames per
                     AU per video where the AU is active / inactive (``faujax.data.frame_sampling``;
                     AU datasets only). 0 and 0 (default): every training frame, every epoch.
  num_subjects, frames_per_subject
                     synthetic only (None: the registered config's values).

``DatasetInfo`` is what a model, a task and the training loop know of the dataset: its label
space and training statistics, read from the builder's metadata (``builders.get_dataset_info``)
or from a checkpoint's record (``DatasetInfo.from_record``). This module imports neither
TensorFlow nor tensorflow-datasets.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import functools
from typing import Any

import numpy as np

from faujax import config_schema
from faujax import labels

FEATURE_KEYS = ('image', 'landmarks', 'au', 'au_mask', 'au_intensity', 'expression', 'valence',
                'arousal', 'expression_multi', 'subject')
DEFAULT_SHUFFLE_BUFFER = 2048
SYNTHETIC = 'synthetic_faces'
# Metadata keys every faujax builder writes (builders of an older faujax may lack some).
REQUIRED_METADATA = ('task', 'label_names', 'multi_label_names', 'class_counts',
                     'train_occurrence_rates')



def _optional_int(value) -> bool:
  return value is None or (isinstance(value, int) and not isinstance(value, bool))


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """``config.data``: which dataset, fold and files (see the module docstring for each key).

  Attributes:
    name: tfds builder name.
    builder_config: builder config; None / '': detected (AU layouts) or the builder's default.
    image_size: stored image side; None: the builder's.
    fold: evaluation fold (1-3; JAFFE 1-5).
    data_dir: tfds data directory; None: the tfds default.
    manual_dir: directory of a real dataset's downloaded files; None: the dataset must be built.
    shuffle_buffer: training shuffle buffer (examples).
    sample_positive_frames: frames drawn per AU per video among its positives each epoch (0: no
      sampling).
    sample_negative_frames: the same among its negatives (0 exactly when the above is 0).
    num_subjects: synthetic subjects; None: the registered config's.
    frames_per_subject: synthetic frames per subject; None: the registered config's.
  """
  name: str = SYNTHETIC
  builder_config: str | None = None
  image_size: int | None = None
  fold: int = 1
  data_dir: str | None = None
  manual_dir: str | None = None
  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
  sample_positive_frames: int = 0
  sample_negative_frames: int = 0
  num_subjects: int | None = None
  frames_per_subject: int | None = None

  def __post_init__(self):
    check = config_schema.check
    check(isinstance(self.name, str) and bool(self.name), 'name', self.name,
          "a tfds builder name such as 'synthetic_faces' or 'bp4d'")
    check(self.builder_config is None or isinstance(self.builder_config, str), 'builder_config',
          self.builder_config, 'a builder config name, or None / empty to detect it')
    check(_optional_int(self.image_size) and (self.image_size is None or self.image_size >= 1),
          'image_size', self.image_size, "an int >= 1, or None for the builder's stored size")
    check(_optional_int(self.fold) and self.fold is not None and self.fold >= 1, 'fold',
          self.fold, 'an int >= 1 (1-3; JAFFE 1-5)')
    for key in ('data_dir', 'manual_dir'):
      value = getattr(self, key)
      check(value is None or isinstance(value, str), key, value, 'a directory path or None')
    check(_optional_int(self.shuffle_buffer) and self.shuffle_buffer is not None
          and self.shuffle_buffer >= 1, 'shuffle_buffer', self.shuffle_buffer, 'an int >= 1')
    for key in ('sample_positive_frames', 'sample_negative_frames'):
      value = getattr(self, key)
      check(_optional_int(value) and value is not None and value >= 0, key, value,
            'an int >= 0 (frames per AU per video and epoch; 0: every frame)')
    check((self.sample_positive_frames == 0) == (self.sample_negative_frames == 0),
          'sample_negative_frames', self.sample_negative_frames,
          f'0 exactly when sample_positive_frames is 0 (it is {self.sample_positive_frames}): '
          'sample both classes or neither')
    check(_optional_int(self.num_subjects) and (self.num_subjects is None
                                                or self.num_subjects >= 6),
          'num_subjects', self.num_subjects, 'an int >= 6 (synthetic_faces), or None')
    check(_optional_int(self.frames_per_subject) and (self.frames_per_subject is None
                                                      or self.frames_per_subject >= 1),
          'frames_per_subject', self.frames_per_subject, 'an int >= 1 (synthetic_faces), or None')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model, a task and a training loop need to know about the configured dataset and fold.

  Every label space and statistic comes from the builder's metadata.

  Attributes:
    name: the tfds builder name ('synthetic_faces', 'bp4d', ...).
    builder_config: the builder config used (after detection), e.g. 'megraphau_lists', '8class'.
    task: what the dataset trains, from its metadata: 'au' (multi-label AU occurrence, targets
      ``batch['au']`` with ``batch['au_mask']``), 'expression' (single-label classes, targets
      ``batch['expression']`` in [0, num_labels) or -1 = unlabelled, plus ``valence`` /
      ``arousal`` with ``va_mask`` where annotated) or 'expression_multi' (multi-label
      expressions, targets ``batch['expression_multi']`` of width num_labels).
    label_names: the task's labels in output order: ['AU1', 'AU2', ...] ('au'); the builder
      config's classes ('expression', e.g. EXPRESSIONS_7, or EXPRESSIONS_8 with 'contempt' for
      affectnet/8class); the multi-label names ('expression_multi', BASIC_6). A model's output
      width is num_labels.
    num_labels: len(label_names).
    aus: the AU numbers of the columns of ``batch['au']`` (may be non-empty for an expression
      task: synthetic data carries all 18 AUs); () when the dataset has no AU labels.
    multi_label_names: the columns of ``batch['expression_multi']`` where the dataset annotates
      multi-label expressions (BASIC_6: RAF-ML, RAF-DB, JAFFE, synthetic); () where that feature
      is only zero padding (AU datasets, AffectNet, Aff-Wild2). Equals label_names for the
      'expression_multi' task.
    class_counts: int64 (num_labels,), the fold's training examples of each label: examples of
      each class ('expression'), positive known labels of each label ('au', 'expression_multi').
    train_occurrence_rates: float32 (num_labels,), the fraction of the fold's labelled training
      examples in which each label is positive (``faujax.statistics.occurrence_rates``; 0.0
      where no label is known): AU / multi-label occurrence rates; for 'expression' the class
      frequencies.
    num_examples: examples per logical split of the fold {'train', 'validation', 'test'} (0
      where the dataset has no such split).
    image_size: S of the stored S x S images.
    num_landmarks: P of the stored (P, 2) landmarks (68 synthetic / expression datasets; 49, 66
      or 0 for the AU layouts).
    fold: the configured fold.
    batch_spec: {key: (per-example shape, numpy dtype)} of every key of a batch of
      ``create_split`` (``valid`` included), for dummy batches of the right shapes.
    alignment: how inference aligns a detected face to the stored faces ('' = the dataset's own,
      ``faujax.faces.STORED_ALIGNMENT``); imported runs name their authors' alignment.
    train_labels: (lazy) every label array of the training split, read without decoding images:
      {'au', 'au_mask', 'expression', 'valence', 'arousal', 'expression_multi', ...}; models whose
      graph is computed from the training labels (Emotion-GCN eq. 3-6) read it.
  """
  name: str
  builder_config: str
  task: str
  label_names: list[str]
  num_labels: int
  aus: tuple[int, ...]
  num_examples: dict[str, int]
  image_size: int
  num_landmarks: int
  fold: int
  train_occurrence_rates: np.ndarray
  class_counts: np.ndarray
  multi_label_names: list[str] = dataclasses.field(default_factory=list)
  alignment: str = ''
  batch_spec: dict[str, tuple[tuple[int, ...], Any]] = dataclasses.field(
      default_factory=dict, repr=False, compare=False)
  data_config: Any = dataclasses.field(default=None, repr=False, compare=False)

  @property
  def num_au(self) -> int:
    return len(self.aus)

  @functools.cached_property
  def train_labels(self) -> dict[str, np.ndarray]:
    from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top  # TensorFlow
    return input_pipeline.load_labels(self.data_config, 'train')

  def to_record(self) -> dict[str, Any]:
    """The label space, sizes and statistics as JSON values (stored in every checkpoint)."""
    return {'name': self.name, 'builder_config': self.builder_config, 'task': self.task,
            'label_names': [str(n) for n in self.label_names],
            'aus': [int(a) for a in self.aus],
            'num_examples': {k: int(v) for k, v in self.num_examples.items()},
            'image_size': int(self.image_size), 'num_landmarks': int(self.num_landmarks),
            'fold': int(self.fold),
            'train_occurrence_rates': np.asarray(self.train_occurrence_rates).tolist(),
            'class_counts': np.asarray(self.class_counts).tolist(),
            'multi_label_names': [str(n) for n in self.multi_label_names],
            'alignment': self.alignment,
            'batch_spec': {k: [list(shape), np.dtype(dtype).str]
                           for k, (shape, dtype) in self.batch_spec.items()}}

  @classmethod
  def from_record(cls, record: Mapping[str, Any], where: str = 'the record') -> 'DatasetInfo':
    """The ``to_record`` inverse (no dataset: ``train_labels`` is empty).

    Raises:
      ValueError: naming ``where`` and the missing or malformed field.
    """
    fields = ('name', 'builder_config', 'task', 'label_names', 'aus', 'num_examples',
              'image_size', 'num_landmarks', 'fold', 'train_occurrence_rates', 'class_counts')
    missing = [k for k in fields if k not in record]
    if missing:
      raise ValueError(f'{where}: not a faujax dataset record (missing {missing}).')
    try:
      names = [str(n) for n in record['label_names']]
      info = cls(
          name=str(record['name']), builder_config=str(record['builder_config']),
          task=str(record['task']), label_names=names, num_labels=len(names),
          aus=tuple(int(a) for a in record['aus']),
          num_examples={str(k): int(v) for k, v in dict(record['num_examples']).items()},
          image_size=int(record['image_size']), num_landmarks=int(record['num_landmarks']),
          fold=int(record['fold']),
          train_occurrence_rates=np.asarray(record['train_occurrence_rates'], np.float32),
          class_counts=np.asarray(record['class_counts'], np.int64),
          multi_label_names=[str(n) for n in record.get('multi_label_names', [])],
          alignment=str(record.get('alignment', '')),
          batch_spec={str(k): (tuple(int(d) for d in v[0]), np.dtype(v[1]))
                      for k, v in dict(record.get('batch_spec', {})).items()})
    except (TypeError, ValueError) as e:
      raise ValueError(f'{where}: a malformed field of the dataset record ({e}).') from None
    if info.task not in labels.TASKS:
      raise ValueError(f'{where}: task {info.task!r}; expected one of {labels.TASKS}.')
    if info.train_occurrence_rates.shape != (len(names),) or info.class_counts.shape != (
        len(names),):
      raise ValueError(f'{where}: train_occurrence_rates / class_counts do not have one entry per '
                       f'label of {names}.')
    info.__dict__['train_labels'] = {}  # the cached property, without a dataset
    return info


def as_data_config(config: Any) -> DataConfig:
  """The DataConfig of ``config.data``, of a full config, or of a dict (unknown keys raise)."""
  if isinstance(config, DataConfig):
    return config
  if isinstance(config, Mapping) or hasattr(config, 'keys'):
    keys = set(config.keys())
    if 'name' not in keys and 'data' in keys:
      config = config['data']
      if isinstance(config, DataConfig):
        return config
  values = config_schema.to_plain(config)
  if isinstance(values, Mapping) and values.get('builder_config') == '':
    values = {**values, 'builder_config': None}
  return config_schema.read(DataConfig, values, 'data')


def _spec_from_fields(info: DatasetInfo) -> dict[str, tuple[tuple[int, ...], Any]]:
  """A batch spec from the label space alone (a hand-made info without a builder)."""
  multi = len(info.multi_label_names) or (
      info.num_labels if info.task == 'expression_multi' else 0)
  f32, i32 = np.dtype(np.float32), np.dtype(np.int32)
  return {'image': ((info.image_size, info.image_size, 3), np.dtype(np.uint8)),
          'landmarks': ((info.num_landmarks, 2), f32), 'au': ((info.num_au,), f32),
          'au_mask': ((info.num_au,), f32), 'au_intensity': ((info.num_au,), f32),
          'expression': ((), i32), 'valence': ((), f32), 'arousal': ((), f32),
          'expression_multi': ((multi,), f32), 'subject': ((), i32), 'valid': ((), f32)}


def dummy_batch(info: DatasetInfo, batch_size: int) -> dict[str, np.ndarray]:
  """A batch with the pipeline's keys, shapes and dtypes (``info.batch_spec``): zeros, all
  labels known, landmarks spread over the image; for benchmarks and tracing."""
  spec = info.batch_spec or _spec_from_fields(info)
  batch = {k: np.zeros((batch_size,) + tuple(shape), dtype) for k, (shape, dtype) in spec.items()}
  s, p = info.image_size, batch['landmarks'].shape[1]
  batch['landmarks'][:] = np.linspace(s * 0.3, s * 0.7, 2 * p, dtype=np.float32).reshape(p, 2)
  for key in ('au_mask', 'valid', 'va_mask'):
    if key in batch:
      batch[key][:] = 1
  return batch

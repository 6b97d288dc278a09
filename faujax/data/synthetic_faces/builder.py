"""tensorflow-datasets builder `synthetic_faces`: procedurally rendered faces with AU and expression labels.

Builder configs (one per label space of the real datasets, identical features):
  bp4d              12 AUs (faujax.labels.BP4D_AUS), task 'au'
  disfa             8 AUs (DISFA_AUS), task 'au'
  emotionet         12 AUs (EMOTIONET_AUS), task 'au'
  expression        all 18 AUs (ALL_AUS); task 'expression': the 7 classes (+ valence / arousal)
  expression_multi  all 18 AUs; task 'expression_multi': the 6-dim BASIC_6 multi-label
                    (the same examples as 'expression', built under its own name)
  all               all 18 AUs, task 'au'
Custom sizes: ``SyntheticFaces(config=SyntheticFacesConfig(name='bp4d_tiny', au_set='bp4d',
image_size=40, num_subjects=12, frames_per_subject=6), data_dir=...)``.

Features of every example:
  image             uint8 (S, S, 3), PNG
  landmarks         float32 (68, 2), (x, y) pixels, iBUG order
  au                float32 (N,), occurrence (intensity >= 2) of the config's AUs
  au_mask           float32 (N,), 1 = label known (always 1 here)
  au_intensity      float32 (N,), integers 0-5
  expression        int64 in [0, 7), faujax.labels.EXPRESSIONS_7
  valence, arousal  float32 in [-1, 1]
  expression_multi  float32 (6,), faujax.labels.BASIC_6 multi-label
  subject           int64 subject id

Splits follow ``faujax.data.splits``: subjects are permuted with the seed and cut into 3 parts; in
each part ~20% of the subjects (at least 1) form ``part{p}_val``. The dataset metadata holds the
config's 'task', its 'label_names' (AU names, EXPRESSIONS_7 or BASIC_6), 'multi_label_names'
(BASIC_6), 'aus', and per fold the training statistics of the task's labels:
'train_occurrence_rates' (``faujax.statistics.occurrence_rates``; for 'expression' the class
frequencies) and 'class_counts' (positives of each label; for 'expression' examples per class),
e.g. ``metadata['train_occurrence_rates']['fold1']``, plus the subject ids of each physical split.
Every example is a pure function of (seed, subject, frame), so the dataset is deterministic for a
seed whatever the worker count.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from faujax import labels
from faujax import statistics
from faujax.data import splits
from faujax.data.synthetic_faces import examples
from faujax.data.synthetic_faces import face_model
from faujax.data.synthetic_faces import png

TASKS = labels.TASKS
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 24, 512
VAL_FRACTION = 0.2


@dataclasses.dataclass(eq=False)
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  """Label space, size and seed of a synthetic face dataset.

  Attributes:
    au_set: 'bp4d', 'disfa', 'emotionet' or 'all' (faujax.labels.AU_SETS).
    task: 'au', 'expression' or 'expression_multi' (what the config is meant to train; the
      features are identical).
    image_size: S of the S x S images.
    num_subjects: subjects (>= 6: each of the 3 parts needs a training and a validation subject).
    frames_per_subject: frames rendered per subject.
    seed: dataset seed; examples depend on (seed, subject, frame) only.
    num_workers: processes used to render (0 = min(4, cpu count)); does not change the data.
  """
  au_set: str = 'bp4d'
  task: str = 'au'
  image_size: int = 112
  num_subjects: int = 90
  frames_per_subject: int = 20
  seed: int = 0
  num_workers: int = 0

  def __post_init__(self):
    if self.au_set not in labels.AU_SETS:
      raise ValueError(f'SyntheticFacesConfig.au_set must be one of {sorted(labels.AU_SETS)}; '
                       f'got {self.au_set!r}.')
    if self.task not in TASKS:
      raise ValueError(f'SyntheticFacesConfig.task must be one of {TASKS}; got {self.task!r}.')
    if (not isinstance(self.image_size, (int, np.integer))
        or not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE):
      raise ValueError(f'SyntheticFacesConfig.image_size must be an int in '
                       f'[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}]; got {self.image_size!r}.')
    if not isinstance(self.num_subjects, (int, np.integer)) or self.num_subjects < 6:
      raise ValueError(f'SyntheticFacesConfig.num_subjects must be an int >= 6; '
                       f'got {self.num_subjects!r}.')
    if not isinstance(self.frames_per_subject, (int, np.integer)) or self.frames_per_subject < 1:
      raise ValueError(f'SyntheticFacesConfig.frames_per_subject must be an int >= 1; '
                       f'got {self.frames_per_subject!r}.')

  @property
  def aus(self) -> tuple[int, ...]:
    return labels.au_set(self.au_set)


def _config(name: str, au_set: str, task: str = 'au') -> SyntheticFacesConfig:
  return SyntheticFacesConfig(
      name=name, au_set=au_set, task=task,
      description=f'{task} task, AU label space {au_set} ({len(labels.au_set(au_set))} AUs).')


def subject_assignment(num_subjects: int, seed: int) -> dict[str, list[int]]:
  """Subject ids of each physical split ('part1', 'part1_val', ..., 'part3_val')."""
  perm = np.random.default_rng([int(seed), 7919]).permutation(num_subjects)
  out = {}
  for p, chunk in zip(splits.PARTS, np.array_split(perm, splits.NUM_PARTS)):
    n_val = max(1, int(round(VAL_FRACTION * len(chunk))))
    out[splits.val_part(p)] = sorted(int(s) for s in chunk[:n_val])
    out[splits.train_part(p)] = sorted(int(s) for s in chunk[n_val:])
  return out


def label_names(config: SyntheticFacesConfig) -> list[str]:
  """The labels of the config's task, in order (AU names, EXPRESSIONS_7 or BASIC_6)."""
  if config.task == 'expression':
    return list(labels.EXPRESSIONS_7)
  if config.task == 'expression_multi':
    return list(labels.BASIC_6)
  return labels.au_label_names(config.aus)


def _task_labels(config: SyntheticFacesConfig, state: face_model.FrameState,
                 idx: list[int]) -> np.ndarray:
  """The task's 0/1 label vector of one frame (one-hot class for 'expression')."""
  if config.task == 'expression':
    return np.eye(len(labels.EXPRESSIONS_7))[state.expression]
  if config.task == 'expression_multi':
    return np.asarray(state.expression_multi, np.float64)
  return np.asarray(state.au_occurrence[idx], np.float64)


def label_statistics(config: SyntheticFacesConfig, test_part_of_fold) -> dict:
  """Per-fold training statistics of the task's labels, from the face model only (no rendering).

  Returns:
    {'train_occurrence_rates': {'fold<k>': [K floats]} (``statistics.occurrence_rates``),
     'class_counts': {'fold<k>': [K ints]} (positives per label), 'subjects': the assignment}.
  """
  assignment = subject_assignment(config.num_subjects, config.seed)
  idx = [face_model.AU_INDEX[a] for a in config.aus]
  per_subject = {}
  for s in range(config.num_subjects):
    identity = face_model.sample_identity(config.seed, s)
    per_subject[s] = np.stack([
        _task_labels(config, face_model.sample_frame(identity, config.seed, f), idx)
        for f in range(config.frames_per_subject)])
  rates, class_counts = {}, {}
  for fold in splits.FOLDS:
    subjects = [s for part in splits.split_parts(fold, 'train', test_part_of_fold)
                for s in assignment[part]]
    y = np.concatenate([per_subject[s] for s in subjects])
    rates[f'fold{fold}'] = [float(v) for v in statistics.occurrence_rates(y)]
    class_counts[f'fold{fold}'] = [int(v) for v in statistics.occurrence_counts(y)[0]]
  return {'train_occurrence_rates': rates, 'class_counts': class_counts, 'subjects': assignment}


def _render(args) -> tuple[str, dict]:
  seed, subject, frame, size, idx = args
  ex = examples.make_example(seed, subject, frame, size)
  n = len(idx)
  return f'{subject:05d}_{frame:05d}', {
      'image': png.encode_png(ex['image'], level=2),  # encoded here, in the worker
      'landmarks': ex['landmarks'],
      'au': ex['au'][idx],
      'au_mask': np.ones(n, np.float32),
      'au_intensity': ex['au_intensity'][idx],
      'expression': int(ex['expression']),
      'valence': float(ex['valence']),
      'arousal': float(ex['arousal']),
      'expression_multi': ex['expression_multi'],
      'subject': int(subject),
  }


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Procedural faces with 68 landmarks, 18 AU intensities and expression labels."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'First release.',
      '1.1.0': "Config 'expression_multi'; metadata 'label_names' / 'multi_label_names'; "
               "'class_counts' and 'train_occurrence_rates' are those of the task's labels.",
  }
  BUILDER_CONFIGS = [
      _config('bp4d', 'bp4d'),
      _config('disfa', 'disfa'),
      _config('emotionet', 'emotionet'),
      _config('expression', 'all', task='expression'),
      _config('expression_multi', 'all', task='expression_multi'),
      _config('all', 'all'),
  ]
  DEFAULT_CONFIG_NAME = 'bp4d'
  # Fold k tests on part k (see faujax.data.splits).
  TEST_PART_OF_FOLD = {1: 1, 2: 2, 3: 3}

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    n = len(cfg.aus)
    s = cfg.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(s, s, 3), encoding_format='png'),
            'landmarks': tfds.features.Tensor(shape=(68, 2), dtype=np.float32),
            'au': tfds.features.Tensor(shape=(n,), dtype=np.float32),
            'au_mask': tfds.features.Tensor(shape=(n,), dtype=np.float32),
            'au_intensity': tfds.features.Tensor(shape=(n,), dtype=np.float32),
            'expression': tfds.features.ClassLabel(names=list(labels.EXPRESSIONS_7)),
            'valence': tfds.features.Scalar(dtype=np.float32),
            'arousal': tfds.features.Scalar(dtype=np.float32),
            'expression_multi': tfds.features.Tensor(shape=(6,), dtype=np.float32),
            'subject': tfds.features.Scalar(dtype=np.int64),
        }),
        metadata=tfds.core.MetadataDict(),
        homepage='https://github.com/faujax/faujax',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    stats = label_statistics(cfg, self.TEST_PART_OF_FOLD)
    self.info.metadata.update({
        'task': cfg.task,
        'aus': list(cfg.aus),
        'label_names': label_names(cfg),
        'multi_label_names': list(labels.BASIC_6),
        'test_part_of_fold': {str(k): v for k, v in self.TEST_PART_OF_FOLD.items()},
        'seed': cfg.seed,
        **stats,
    })
    return {name: self._generate_examples(stats['subjects'][name])
            for name in splits.PHYSICAL_SPLITS}

  def _log_download_bytes(self) -> None:
    # tfds' DatasetBuilder.download_and_prepare prints "Downloading and preparing dataset Unknown
    # size (download: Unknown size, ...)" to stdout through this hook (dataset_builder.py,
    # tensorflow-datasets 4.9). Nothing is downloaded here: the examples are rendered locally.
    logging.info('Rendering %s locally into %s.', self.info.full_name, self.data_dir)

  def _generate_examples(self, subjects):
    cfg = self.builder_config
    idx = np.array([face_model.AU_INDEX[a] for a in cfg.aus])
    jobs = [(cfg.seed, s, f, cfg.image_size, idx)
            for s in subjects for f in range(cfg.frames_per_subject)]
    workers = cfg.num_workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(jobs) < 64:
      yield from map(_render, jobs)
      return
    # Rendering is pure numpy and order-independent. 'forkserver', not 'fork': the caller may
    # already run JAX threads (e.g. a training run that builds its data), and forking a
    # multithreaded process can deadlock; the server is started once and forks cheap workers.
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload([__name__])  # import faujax once in the server, not per worker
    with ctx.Pool(workers) as pool:
      yield from pool.imap(_render, jobs, chunksize=16)

"""Host input pipeline: tensorflow-datasets -> tf.data (decode, shuffle, batch, shard) -> numpy batches.

The host only decodes; augmentation runs on the device (``faujax.data.augment``).

Config keys read from ``config.data`` (pass ``config.data``; a full config with a ``data`` field
is accepted too):
  name               tfds builder name: 'synthetic_faces' (real-dataset builders share its features).
  builder_config     builder config, e.g. 'bp4d', 'disfa', 'emotionet', 'expression'.
  image_size         S of the stored S x S images. For 'synthetic_faces' a size other than the
                     registered config's builds a variant; for other builders it must match.
  fold               1, 2 or 3 (see ``faujax.data.splits``).
  data_dir           tfds data directory (None: the tfds default, ~/tensorflow_datasets).
  manual_dir         directory of manually downloaded files (real datasets only).
  shuffle_buffer     examples in the training shuffle buffer (default 2048).
  num_subjects, frames_per_subject
                     optional synthetic overrides (None: the registered config's values).

The dataset is built (download_and_prepare) on first use in ``data_dir``.

Batches are dicts of numpy arrays with leading dim B: image uint8 (B, S, S, 3), landmarks float32
(B, 68, 2), au / au_mask / au_intensity float32 (B, N), expression int32 (B,), valence / arousal
float32 (B,), expression_multi float32 (B, 6), subject int64 (B,), valid float32 (B,) (1 = real
example, 0 = padding of the last evaluation batch).
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
import functools
import math
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import splits
from faujax.data.synthetic_faces import builder as synthetic_builder

FEATURE_KEYS = ('image', 'landmarks', 'au', 'au_mask', 'au_intensity', 'expression', 'valence',
                'arousal', 'expression_multi', 'subject')
DEFAULT_SHUFFLE_BUFFER = 2048
SYNTHETIC = 'synthetic_faces'


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and a training loop need to know about a dataset.

  Attributes:
    name, builder_config: the tfds builder and config.
    task: 'au' or 'expression'.
    label_names: ['AU1', ...] (AU task) or EXPRESSIONS_7 (expression task).
    num_labels: len(label_names).
    aus: the AU numbers of the `au` feature.
    num_examples: examples per logical split of the fold ('train', 'validation', 'test').
    image_size: S of the stored images.
    num_landmarks: 68.
    fold: the configured fold.
    train_occurrence_rates: float32 (len(aus),), AU occurrence rates in the fold's training split.
    class_counts: int64 (7,), expression class counts in the fold's training split.
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
  data_config: Any = dataclasses.field(default=None, repr=False, compare=False)

  @property
  def num_au(self) -> int:
    return len(self.aus)

  @functools.cached_property
  def train_labels(self) -> dict[str, np.ndarray]:
    return load_labels(self.data_config, 'train')


def _data_config(config: Any):
  if 'name' not in config and 'data' in config:
    return config.data
  return config


def _get(cfg: Any, key: str, default=None):
  try:
    value = cfg.get(key, default)
  except AttributeError:
    value = getattr(cfg, key, default)
  return default if value is None else value


def _synthetic_builder(cfg: Any, data_dir):
  known = {c.name: c for c in synthetic_builder.SyntheticFaces.BUILDER_CONFIGS}
  name = _get(cfg, 'builder_config', synthetic_builder.SyntheticFaces.DEFAULT_CONFIG_NAME)
  if name not in known:
    raise ValueError(f'config.data.builder_config {name!r} is not a config of {SYNTHETIC}; '
                     f'expected one of {sorted(known)}.')
  base = known[name]
  overrides = {}
  for key in ('image_size', 'num_subjects', 'frames_per_subject'):
    value = _get(cfg, key)
    if value is not None and value != getattr(base, key):
      overrides[key] = value
  if 'image_size' in overrides:
    size = overrides['image_size']
    lo, hi = synthetic_builder.MIN_IMAGE_SIZE, synthetic_builder.MAX_IMAGE_SIZE
    if isinstance(size, bool) or not isinstance(size, int) or not lo <= size <= hi:
      raise ValueError(f'config.data.image_size must be an int in [{lo}, {hi}] for {SYNTHETIC}; '
                       f'got {size!r}.')
  if not overrides:
    return synthetic_builder.SyntheticFaces(config=name, data_dir=data_dir)
  fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
  fields.update(overrides)
  fields['name'] = (f"{name}_{fields['image_size']}px_{fields['num_subjects']}s"
                    f"x{fields['frames_per_subject']}f")
  return synthetic_builder.SyntheticFaces(
      config=synthetic_builder.SyntheticFacesConfig(**fields), data_dir=data_dir)


def get_builder(data_config: Any, *, prepare: bool = True) -> tfds.core.DatasetBuilder:
  """The tfds builder named by `config.data`, prepared (built) in `data_dir` unless it exists."""
  cfg = _data_config(data_config)
  name = _get(cfg, 'name')
  data_dir = _get(cfg, 'data_dir')
  if data_dir is not None:
    data_dir = os.path.expanduser(str(data_dir))
  if name == SYNTHETIC:
    builder = _synthetic_builder(cfg, data_dir)
  else:
    available = sorted(tfds.list_builders(with_community_datasets=False))
    if name not in available:
      raise ValueError(f'config.data.name {name!r} is not a registered tfds builder; expected '
                       f'{SYNTHETIC!r} or another builder registered by importing faujax.data.')
    builder_cls = tfds.builder_cls(name)
    configs = [c.name for c in (getattr(builder_cls, 'BUILDER_CONFIGS', None) or [])]
    config_name = _get(cfg, 'builder_config')
    if configs and config_name not in configs:
      raise ValueError(f'config.data.builder_config {config_name!r} is not a config of {name}; '
                       f'expected one of {configs}.')
    builder = tfds.builder(name, config=config_name if configs else None, data_dir=data_dir)
  expected = _get(cfg, 'image_size')
  stored = builder.info.features['image'].shape[0]
  if expected is not None and stored != expected:
    raise ValueError(f'config.data.image_size is {expected} but {builder.info.full_name} stores '
                     f'{stored} x {stored} images; set config.data.image_size = {stored}.')
  if prepare and not _is_prepared(builder):
    download_config = None
    if getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None):
      manual_dir = _get(cfg, 'manual_dir')
      if manual_dir is None or not os.path.isdir(os.path.expanduser(str(manual_dir))):
        raise ValueError(f'config.data.manual_dir must name an existing directory holding the '
                         f'{name} files; got {manual_dir!r}. {builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      download_config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(str(manual_dir)))
    builder.download_and_prepare(download_config=download_config)
  return builder


def _is_prepared(builder) -> bool:
  return tf.io.gfile.exists(os.path.join(builder.data_dir, 'dataset_info.json'))


def _fold(cfg, builder=None) -> int:
  fold = _get(cfg, 'fold', 1)
  folds = getattr(builder, 'FOLDS', splits.FOLDS)
  if isinstance(fold, bool) or fold not in folds:
    raise ValueError(f'config.data.fold must be one of {tuple(folds)}; got {fold!r}.')
  return int(fold)


def split_parts(builder: tfds.core.DatasetBuilder, fold: int, split: str) -> list[str]:
  """Physical splits of a logical split: faujax's 3-part convention (``TEST_PART_OF_FOLD``), a
  builder's own ``fold_splits(fold)`` (e.g. JAFFE's 5 folds), or the official train /
  validation / test splits of the expression datasets (empty list if the builder has none)."""
  if split not in splits.LOGICAL_SPLITS:
    raise ValueError(f'split must be one of {splits.LOGICAL_SPLITS}; got {split!r}.')
  if hasattr(builder, 'TEST_PART_OF_FOLD'):
    return splits.split_parts(fold, split, builder.TEST_PART_OF_FOLD)
  if hasattr(builder, 'fold_splits'):
    spec = builder.fold_splits(fold).get(split)
    return spec.split('+') if spec else []
  return [split] if split in builder.info.splits else []


def _fold_value(meta: Any, key: str, fold: int, default: Any) -> Any:
  value = meta.get(key, default)
  if isinstance(value, dict):
    value = value.get(f'fold{fold}', default)
  return value


def get_dataset_info(data_config: Any) -> DatasetInfo:
  """Label space, sizes and training-label statistics of the configured dataset and fold."""
  cfg = _data_config(data_config)
  builder = get_builder(cfg)
  fold = _fold(cfg, builder)
  meta = builder.info.metadata or {}
  task = meta.get('task', 'au')
  aus = tuple(meta.get('aus', ()))
  label_names = {'expression': list(labels.EXPRESSIONS_7),
                 'expression_multi': list(labels.BASIC_6)}.get(task) or labels.au_label_names(aus)
  num_examples = {split: sum(builder.info.splits[p].num_examples
                             for p in split_parts(builder, fold, split))
                  for split in splits.LOGICAL_SPLITS}
  rates = _fold_value(meta, 'train_occurrence_rates', fold, [0.0] * len(aus))
  return DatasetInfo(
      name=builder.name,
      builder_config=builder.builder_config.name if builder.builder_config else '',
      task=task,
      label_names=label_names,
      num_labels=len(label_names),
      aus=aus,
      num_examples=num_examples,
      image_size=int(builder.info.features['image'].shape[0]),
      num_landmarks=int(builder.info.features['landmarks'].shape[0]),
      fold=fold,
      train_occurrence_rates=np.nan_to_num(np.asarray(rates, np.float32)),
      class_counts=np.asarray(_fold_value(meta, 'class_counts', fold, [0] * 7), np.int64),
      data_config=cfg,
  )


def load_labels(data_config: Any, split: str) -> dict[str, np.ndarray]:
  """Every non-image feature of a logical split as numpy arrays (images are not decoded)."""
  cfg = _data_config(data_config)
  builder = get_builder(cfg)
  parts = split_parts(builder, _fold(cfg, builder), split)
  if not parts:
    return {}
  ds = builder.as_dataset(split='+'.join(parts), shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(try_autocache=False))
  keys = [k for k in FEATURE_KEYS + ('va_mask',) if k in ds.element_spec and k != 'image']
  ds = ds.map(lambda ex: {k: ex[k] for k in keys}).batch(4096)
  chunks = list(tfds.as_numpy(ds))
  return {k: np.concatenate([c[k] for c in chunks]) for k in keys}


def _select(example):
  out = {k: example[k] for k in FEATURE_KEYS + ('va_mask',) if k in example}
  out['expression'] = tf.cast(out['expression'], tf.int32)
  return out


def create_split(data_config: Any, split: str, *, batch_size: int, train: bool, seed: int = 0,
                 process_index: int = 0, process_count: int = 1,
                 start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """Numpy batches of a logical split ('train', 'validation', 'test') of the configured fold.

  train=True: infinite, shuffled (files and examples, seeded), repeated, drop remainder; each
  process reads its own even share (tfds.split_for_jax_process). Images are decoded after the
  shuffle, so the buffer holds encoded bytes and ``start_batch`` (resuming a run) skips batches
  without decoding them: the iterator continues exactly where a run stopped after that many.
  train=False: one pass; process i reads every process_count-th example from i; every process
  yields the same number of batches (ceil(n / (process_count * batch_size))), the missing tail
  padded with zeros and marked valid = 0, so each example appears exactly once over all processes.
  """
  cfg = _data_config(data_config)
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f'batch_size must be a positive int; got {batch_size!r}.')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index must be in [0, process_count={process_count}); '
                     f'got {process_index}.')
  builder = get_builder(cfg)
  parts = split_parts(builder, _fold(cfg, builder), split)
  if not parts:
    raise ValueError(f'{builder.info.full_name} has no {split!r} split for config.data.fold='
                     f'{_get(cfg, "fold", 1)}.')
  split_str = '+'.join(parts)
  if train:
    return _train_iterator(builder, cfg, split_str, batch_size, seed, process_index, process_count,
                           start_batch)
  n = sum(builder.info.splits[p].num_examples for p in parts)
  return _eval_iterator(builder, split_str, n, batch_size, process_index, process_count)


def _decode(builder):
  image_feature = builder.info.features['image']

  def fn(example):
    example = _select(example)
    example['image'] = image_feature.decode_example(example['image'])
    return example
  return fn


def _train_iterator(builder, cfg, split_str, batch_size, seed, process_index, process_count,
                    start_batch=0):
  sub = tfds.split_for_jax_process(split_str, process_index=process_index,
                                   process_count=process_count)
  read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
  ds = builder.as_dataset(split=sub, shuffle_files=True, read_config=read_config,
                          decoders={'image': tfds.decode.SkipDecoding()})
  ds = ds.repeat()
  ds = ds.shuffle(int(_get(cfg, 'shuffle_buffer', DEFAULT_SHUFFLE_BUFFER)),
                  seed=seed * 1000 + process_index)
  if start_batch:
    ds = ds.skip(int(start_batch) * batch_size)
  ds = ds.map(_decode(builder), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  def gen():
    ones = np.ones((batch_size,), np.float32)
    for batch in tfds.as_numpy(ds):
      batch['valid'] = ones
      yield batch
  return gen()


def _pad(batch: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
  n = len(batch['valid'])
  if n == batch_size:
    return batch
  return {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


def _eval_iterator(builder, split_str, n, batch_size, process_index, process_count):
  ds = builder.as_dataset(split=split_str, shuffle_files=False,
                          read_config=tfds.ReadConfig(try_autocache=False))
  ds = ds.shard(process_count, process_index)
  ds = ds.map(_select, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
  steps = math.ceil(n / (process_count * batch_size))
  example_spec = {k: (v.shape[1:], v.dtype.as_numpy_dtype)
                  for k, v in ds.element_spec.items()}

  def gen():
    done = 0
    for batch in tfds.as_numpy(ds):
      batch['valid'] = np.ones((len(batch['image']),), np.float32)
      yield _pad(batch, batch_size)
      done += 1
    for _ in range(done, steps):
      empty = {k: np.zeros((batch_size,) + tuple(shape), dtype)
               for k, (shape, dtype) in example_spec.items()}
      empty['valid'] = np.zeros((batch_size,), np.float32)
      yield empty
  return gen()

"""Host input pipeline: tensorflow-datasets -> tf.data (decode, shuffle, batch, shard) -> numpy batches.

The host only decodes; augmentation runs on the device (``faujax.data.augment``). The builder
comes from ``faujax.data.builders.get_builder``, the split's parts from the fold
(``builders.split_parts``). With ``config.data.sample_positive_frames`` /
``sample_negative_frames`` (AU-GCN sec. 4.1) each training epoch reads only a fresh per-AU,
per-video draw of the training frames (``frame_sampler``, ``faujax.data.frame_sampling``).

Batches are dicts of numpy arrays with leading dim B: image uint8 (B, S, S, 3), landmarks float32
(B, P, 2), au / au_mask / au_intensity float32 (B, len(info.aus)), expression int32 (B,),
valence / arousal float32 (B,), expression_multi float32 (B, 6) (columns
``info.multi_label_names`` where annotated), subject int64 (B,), va_mask float32 (B,) (expression
builders only), valid float32 (B,) (1 = real example, 0 = padding of the last evaluation batch).
``DatasetInfo.batch_spec`` gives every key's per-example shape and dtype.

TensorFlow is imported only where a tf.data pipeline is built (``create_split``,
``load_labels``): importing it takes several seconds, and a process that only reads a dataset's
metadata (``builders.get_dataset_info``), builds a model, benchmarks or predicts never needs it
(``tests/test_runtime.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
import math
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from faujax.data import frame_sampling
from faujax.data.builders import check_fold, get_builder, split_parts
from faujax.data.dataset_info import FEATURE_KEYS, as_data_config

def load_labels(data_config: Any, split: str) -> dict[str, np.ndarray]:
  """Every non-image feature of a logical split as numpy arrays (images are not decoded)."""
  cfg = as_data_config(data_config)
  builder = get_builder(cfg)
  parts = split_parts(builder, check_fold(cfg, builder), split)
  if not parts:
    return {}
  return _read_features(builder, '+'.join(parts), FEATURE_KEYS + ('va_mask',))


def _stored_order(builder, split_str: str):
  """The examples of ``split_str`` in stored order, images not decoded: every ordered pass
  (``load_labels``, ``frame_sampler``, the sampled training stream) reads this, so that example
  i is the same example in all of them."""
  return builder.as_dataset(split=split_str, shuffle_files=False,
                            decoders={'image': tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(try_autocache=False))


def _read_features(builder, split_str: str, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
  """The ``wanted`` non-image features of ``split_str`` in stored order, as numpy arrays."""
  ds = _stored_order(builder, split_str)
  keys = [k for k in wanted if k in ds.element_spec and k != 'image']
  ds = ds.map(lambda ex: {k: ex[k] for k in keys}).batch(4096)
  chunks = list(tfds.as_numpy(ds))
  return {k: np.concatenate([c[k] for c in chunks]) for k in keys}


def frame_sampler(data_config: Any, seed: int) -> frame_sampling.FrameSampler | None:
  """The training frames' ``FrameSampler`` of ``config.data`` and ``config.seed`` (None when
  ``config.data.sample_positive_frames`` is 0: every frame trains). Frame i is the training
  split's i-th example in stored order (``load_labels``' order)."""
  cfg = as_data_config(data_config)
  if not cfg.sample_positive_frames:
    return None
  builder = get_builder(cfg)
  split_str = '+'.join(split_parts(builder, check_fold(cfg, builder), 'train'))
  return _sampler(builder, cfg, split_str, seed)


def _sampler(builder, cfg, split_str: str, seed: int) -> frame_sampling.FrameSampler:
  table = _read_features(builder, split_str, ('au', 'au_mask', 'subject', 'image_path'))
  if 'au' not in table or np.ndim(table['au']) != 2 or not np.shape(table['au'])[1]:
    raise ValueError(f'config.data.sample_positive_frames={cfg.sample_positive_frames}: frame '
                     f'sampling (AU-GCN sec. 4.1) draws per AU, and {builder.info.full_name} '
                     'has no AU labels; set it and sample_negative_frames to 0.')
  return frame_sampling.FrameSampler(
      au=table['au'], au_mask=table['au_mask'],
      video=frame_sampling.video_ids(table.get('image_path'), table['subject']),
      positives=cfg.sample_positive_frames, negatives=cfg.sample_negative_frames,
      seed=int(seed))


def _select(example):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
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
  With frame sampling (``config.data.sample_positive_frames``) epoch e reads, in stored order,
  the frames of ``frame_sampler(...).epoch_mask(e)`` (process i those with index = i modulo
  process_count), epoch after epoch, into the same seeded shuffle buffer.
  train=False: one pass; process i reads every process_count-th example from i; every process
  yields the same number of batches (ceil(n / (process_count * batch_size))), the missing tail
  padded with zeros and marked valid = 0, so each example appears exactly once over all processes.
  """
  cfg = as_data_config(data_config)
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f'batch_size must be a positive int; got {batch_size!r}.')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index must be in [0, process_count={process_count}); '
                     f'got {process_index}.')
  builder = get_builder(cfg)
  parts = split_parts(builder, check_fold(cfg, builder), split)
  if not parts:
    raise ValueError(f'{builder.info.full_name} has no {split!r} split for config.data.fold='
                     f'{cfg.fold}.')
  split_str = '+'.join(parts)
  if train and cfg.sample_positive_frames:
    return _sampled_train_iterator(builder, cfg, split_str, batch_size, seed, process_index,
                                   process_count, start_batch)
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
  return _batches(builder, ds.repeat(), cfg, batch_size, seed, process_index, start_batch)


def _sampled_train_iterator(builder, cfg, split_str, batch_size, seed, process_index,
                            process_count, start_batch=0):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sampler = _sampler(builder, cfg, split_str, seed)
  n = sampler.num_frames
  share = np.arange(n) % process_count == process_index
  stored = _stored_order(builder, split_str)

  def epoch_frames(epoch):
    keep = tf.numpy_function(lambda e: sampler.epoch_mask(int(e)) & share, [epoch], tf.bool,
                             stateful=False)
    keep = tf.ensure_shape(keep, [n])
    return stored.enumerate().filter(lambda i, ex: tf.gather(keep, i)).map(lambda i, ex: ex)

  epochs = tf.data.Dataset.counter().flat_map(epoch_frames)
  return _batches(builder, epochs, cfg, batch_size, seed, process_index, start_batch)


def _batches(builder, ds, cfg, batch_size, seed, process_index, start_batch):
  """The shuffled, decoded, batched numpy iterator over an infinite stream of stored examples,
  ``start_batch`` batches in (skipped before decoding)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = ds.shuffle(int(cfg.shuffle_buffer),
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
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
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

"""Tests of the host input pipeline on a tiny synthetic dataset built into tmp_path."""

from __future__ import annotations

import itertools

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import input_pipeline
from faujax.data import splits
from faujax.data.synthetic_faces import builder as builder_lib


@pytest.fixture(scope='module')
def data_config(tmp_path_factory):
  tfds.disable_progress_bar()
  c = ml_collections.ConfigDict()
  c.name = 'synthetic_faces'
  c.builder_config = 'disfa'
  c.image_size = 32
  c.fold = 2
  c.data_dir = str(tmp_path_factory.mktemp('tfds'))
  c.manual_dir = None
  c.shuffle_buffer = 64
  c.num_subjects = 9
  c.frames_per_subject = 5
  return c


def _key(batch, i):
  return (int(batch['subject'][i]), batch['landmarks'][i].tobytes())


def _eval_keys(cfg, split, batch_size, process_index=0, process_count=1):
  keys, nb = [], 0
  for batch in input_pipeline.create_split(cfg, split, batch_size=batch_size, train=False,
                                           process_index=process_index,
                                           process_count=process_count):
    nb += 1
    assert batch['image'].shape == (batch_size, 32, 32, 3)
    assert batch['expression'].dtype == np.int32 and batch['valid'].dtype == np.float32
    for i in range(batch_size):
      if batch['valid'][i]:
        keys.append(_key(batch, i))
      else:
        assert not batch['image'][i].any()
  return keys, nb


def test_dataset_info(data_config):
  info = input_pipeline.get_dataset_info(data_config)
  assert info.task == 'au' and info.num_labels == 8
  assert info.label_names == labels.au_label_names(labels.DISFA_AUS)
  assert info.image_size == 32 and info.num_landmarks == 68
  assert sum(info.num_examples.values()) == 9 * 5
  assert info.train_occurrence_rates.shape == (8,) and info.class_counts.shape == (7,)
  assert info.class_counts.sum() == info.num_examples['train']
  # The rates are those of the training split's labels.
  occ, n = np.zeros(8), 0
  for batch in input_pipeline.create_split(data_config, 'train', batch_size=4, train=False):
    occ += (batch['au'] * batch['valid'][:, None]).sum(0)
    n += batch['valid'].sum()
  assert n == info.num_examples['train']
  np.testing.assert_allclose(info.train_occurrence_rates, occ / n, atol=1e-6)


def test_eval_covers_every_example_once(data_config):
  info = input_pipeline.get_dataset_info(data_config)
  keys, nb = _eval_keys(data_config, 'test', 4)
  assert len(keys) == len(set(keys)) == info.num_examples['test']
  assert nb == -(-info.num_examples['test'] // 4)
  # Two processes: same number of batches each, disjoint, together everything once.
  k0, n0 = _eval_keys(data_config, 'test', 2, 0, 2)
  k1, n1 = _eval_keys(data_config, 'test', 2, 1, 2)
  assert n0 == n1
  assert not set(k0) & set(k1) and set(k0) | set(k1) == set(keys)


def test_splits_are_subject_exclusive_in_the_pipeline(data_config):
  subjects = {}
  for split in splits.LOGICAL_SPLITS:
    subjects[split] = set()
    for batch in input_pipeline.create_split(data_config, split, batch_size=8, train=False):
      subjects[split] |= set(batch['subject'][batch['valid'] > 0].tolist())
  assert not subjects['train'] & subjects['test']
  assert not subjects['validation'] & subjects['test']
  assert not subjects['train'] & subjects['validation']
  assign = builder_lib.subject_assignment(9, 0)
  assert subjects['test'] == set(assign['part2']) | set(assign['part2_val'])  # fold 2 -> part 2


def test_train_is_infinite_shuffled_and_deterministic(data_config):
  def take(seed, n=6):
    it = input_pipeline.create_split(data_config, 'train', batch_size=8, train=True, seed=seed)
    return list(itertools.islice(it, n))
  a, b, c = take(0), take(0), take(1)
  info = input_pipeline.get_dataset_info(data_config)
  assert 6 * 8 > info.num_examples['train']  # more batches than one epoch holds
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
  assert any(not np.array_equal(x['image'], y['image']) for x, y in zip(a, c))
  for batch in a:
    assert batch['valid'].shape == (8,) and np.all(batch['valid'] == 1)
    assert set(batch) == set(input_pipeline.FEATURE_KEYS) | {'valid'}
    assert batch['au'].shape == (8, 8) and batch['landmarks'].shape == (8, 68, 2)


def test_expression_config(data_config):
  cfg = ml_collections.ConfigDict(data_config.to_dict())
  cfg.builder_config = 'expression'
  cfg.num_subjects = 6
  cfg.frames_per_subject = 3
  info = input_pipeline.get_dataset_info(cfg)
  assert info.task == 'expression' and info.label_names == list(labels.EXPRESSIONS_7)
  batch = next(input_pipeline.create_split(cfg, 'test', batch_size=4, train=False))
  assert batch['au'].shape == (4, 18) and batch['expression_multi'].shape == (4, 6)


@pytest.mark.parametrize('key, value, match', [
    ('builder_config', 'ck_plus', 'builder_config'),
    ('name', 'no_such_dataset', 'config.data.name'),
    ('fold', 4, 'config.data.fold'),
    ('image_size', 7, 'config.data.image_size'),
])
def test_bad_config_raises(data_config, key, value, match):
  cfg = ml_collections.ConfigDict(data_config.to_dict())
  cfg[key] = value
  with pytest.raises(ValueError, match=match):
    input_pipeline.get_dataset_info(cfg)


def test_bad_split_raises(data_config):
  with pytest.raises(ValueError, match="'train', 'validation', 'test'"):
    input_pipeline.create_split(data_config, 'dev', batch_size=2, train=False)

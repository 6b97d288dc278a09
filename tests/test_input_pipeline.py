"""Tests of the host input pipeline on tiny synthetic datasets and a fake BP4D manual dir."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import time

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import builders
from faujax.data import dataset_info
from faujax.data import input_pipeline
from faujax.data import splits
from faujax.data.synthetic_faces import builder as builder_lib

import test_bp4d  # the fake BP4D layouts (tests/test_bp4d.py)


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


def _train_sum(cfg, key):
  """(sum over the training split of batch[key], number of examples)."""
  total, n = 0.0, 0
  for batch in input_pipeline.create_split(cfg, 'train', batch_size=4, train=False):
    v = batch['valid']
    total = total + (batch[key] * v.reshape((-1,) + (1,) * (batch[key].ndim - 1))).sum(0)
    n += v.sum()
  return total, n


def test_dataset_info(data_config):
  info = builders.get_dataset_info(data_config)
  assert info.task == 'au' and info.num_labels == 8
  assert info.label_names == labels.au_label_names(labels.DISFA_AUS)
  assert info.aus == labels.DISFA_AUS and info.multi_label_names == list(labels.BASIC_6)
  assert info.image_size == 32 and info.num_landmarks == 68
  assert sum(info.num_examples.values()) == 9 * 5
  assert info.train_occurrence_rates.shape == (8,) and info.class_counts.shape == (8,)
  assert info.class_counts.dtype == np.int64 and info.train_occurrence_rates.dtype == np.float32
  # The statistics are those of the training split's labels: positives and their rate.
  occ, n = _train_sum(data_config, 'au')
  assert n == info.num_examples['train']
  np.testing.assert_array_equal(info.class_counts, occ)
  np.testing.assert_allclose(info.train_occurrence_rates, occ / n, atol=1e-6)


def test_batch_spec_matches_the_batches(data_config):
  info = builders.get_dataset_info(data_config)
  for train in (True, False):
    batch = next(input_pipeline.create_split(data_config, 'train', batch_size=4, train=train))
    assert set(batch) == set(info.batch_spec)
    for key, (shape, dtype) in info.batch_spec.items():
      assert batch[key].shape == (4,) + shape and batch[key].dtype == dtype, key


def test_eval_covers_every_example_once(data_config):
  info = builders.get_dataset_info(data_config)
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
  info = builders.get_dataset_info(data_config)
  assert 6 * 8 > info.num_examples['train']  # more batches than one epoch holds
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
  assert any(not np.array_equal(x['image'], y['image']) for x, y in zip(a, c))
  for batch in a:
    assert batch['valid'].shape == (8,) and np.all(batch['valid'] == 1)
    assert set(batch) == set(dataset_info.FEATURE_KEYS) | {'valid'}
    assert batch['au'].shape == (8, 8) and batch['landmarks'].shape == (8, 68, 2)


def test_sampled_training_reads_each_epochs_draw_and_resumes_exactly(data_config):
  """AU-GCN sec. 4.1 sampling (``config.data.sample_*_frames``): epoch e reads exactly the
  frames of ``FrameSampler.epoch_mask(e)`` (unshuffled here: buffer 1, batches of 1), then epoch
  e + 1; a run resumed at batch k reads from batch k of the same stream."""
  cfg = ml_collections.ConfigDict(data_config.to_dict())
  cfg.update({'shuffle_buffer': 1, 'sample_positive_frames': 1, 'sample_negative_frames': 1})
  sampler = input_pipeline.frame_sampler(cfg, seed=3)
  assert input_pipeline.frame_sampler(data_config, seed=3) is None     # off by default
  stored = input_pipeline.load_labels(cfg, 'train')
  keys = [(int(s), lm.tobytes()) for s, lm in zip(stored['subject'], stored['landmarks'])]
  expected = [keys[i] for e in range(3) for i in np.flatnonzero(sampler.epoch_mask(e))]
  assert sampler.num_frames == len(keys) and len(expected) < 3 * len(keys)
  stream = input_pipeline.create_split(cfg, 'train', batch_size=1, train=True, seed=3)
  got = [_key(b, 0) for b in itertools.islice(stream, len(expected))]
  assert got == expected
  resumed = input_pipeline.create_split(cfg, 'train', batch_size=1, train=True, seed=3,
                                         start_batch=5)
  assert [_key(b, 0) for b in itertools.islice(resumed, 4)] == expected[5:9]


def _variant(data_config, **kw):
  cfg = ml_collections.ConfigDict(data_config.to_dict())
  cfg.update({'num_subjects': 6, 'frames_per_subject': 3, **kw})
  return cfg


def test_expression_config(data_config):
  cfg = _variant(data_config, builder_config='expression')
  info = builders.get_dataset_info(cfg)
  assert info.task == 'expression' and info.label_names == list(labels.EXPRESSIONS_7)
  assert info.num_labels == 7 and info.multi_label_names == list(labels.BASIC_6)
  assert info.aus == labels.ALL_AUS
  batch = next(input_pipeline.create_split(cfg, 'test', batch_size=4, train=False))
  assert batch['au'].shape == (4, 18) and batch['expression_multi'].shape == (4, 6)
  # class_counts: training examples per class; rates: the class frequencies.
  counts = np.zeros(7, np.int64)
  for batch in input_pipeline.create_split(cfg, 'train', batch_size=4, train=False):
    counts += np.bincount(batch['expression'][batch['valid'] > 0], minlength=7)
  np.testing.assert_array_equal(info.class_counts, counts)
  np.testing.assert_allclose(info.train_occurrence_rates, counts / counts.sum(), atol=1e-6)


def test_expression_multi_config(data_config):
  """synthetic_faces/expression_multi: the multi-label task with its names and rates."""
  cfg = _variant(data_config, builder_config='expression_multi')
  info = builders.get_dataset_info(cfg)
  assert info.task == 'expression_multi' and info.builder_config.startswith('expression_multi')
  assert info.label_names == info.multi_label_names == list(labels.BASIC_6)
  assert info.num_labels == 6 and info.batch_spec['expression_multi'][0] == (6,)
  pos, n = _train_sum(cfg, 'expression_multi')
  assert n == info.num_examples['train'] and pos.sum() > 0
  np.testing.assert_array_equal(info.class_counts, pos)
  np.testing.assert_allclose(info.train_occurrence_rates, pos / n, atol=1e-6)
  assert info.train_labels['expression_multi'].shape == (n, 6)


@pytest.mark.parametrize('key, value, match', [
    ('builder_config', 'ck_plus', 'builder_config'),
    ('name', 'no_such_dataset', 'config.data.name'),
    ('fold', 4, 'config.data.fold'),
    ('fold', 0, 'config.data.fold'),
    ('image_size', 7, 'config.data.image_size'),
    ('num_subjects', 3, 'config.data.num_subjects'),
    ('shuffle_buffer', 0, 'config.data.shuffle_buffer'),
])
def test_bad_config_raises(data_config, key, value, match):
  cfg = ml_collections.ConfigDict(data_config.to_dict())
  cfg[key] = value
  with pytest.raises(ValueError, match=match):
    builders.get_dataset_info(cfg)


def test_unknown_key_raises(data_config):
  cfg = dict(data_config.to_dict(), fodl=2)
  with pytest.raises(ValueError, match=r'config\.data\.fodl is not a key.*fold'):
    builders.get_dataset_info(cfg)


def test_data_config_declares_every_key_read():
  """DataConfig's fields are the keys the pipeline reads; an empty builder_config means unset."""
  assert [f.name for f in dataclasses.fields(dataset_info.DataConfig)] == [
      'name', 'builder_config', 'image_size', 'fold', 'data_dir', 'manual_dir', 'shuffle_buffer',
      'sample_positive_frames', 'sample_negative_frames', 'num_subjects', 'frames_per_subject']
  cfg = dataset_info.as_data_config({'name': 'bp4d', 'builder_config': ''})
  assert cfg.builder_config is None and cfg.fold == 1 and cfg.image_size is None
  full = ml_collections.ConfigDict({'data': {'name': 'bp4d', 'fold': 2}, 'model': {}})
  assert dataset_info.as_data_config(full).fold == 2


def test_bad_split_raises(data_config):
  with pytest.raises(ValueError, match="'train', 'validation', 'test'"):
    input_pipeline.create_split(data_config, 'dev', batch_size=2, train=False)


# ----------------------------------------------------------- a new user's path to real data


@pytest.fixture(scope='module')
def bp4d_lists(tmp_path_factory):
  """A fake BP4D manual dir in the ME-GraphAU list layout."""
  manual = str(tmp_path_factory.mktemp('bp4d_manual'))
  test_bp4d._write_megraphau(manual)
  return manual


def test_processes_starting_together_build_the_dataset_once(bp4d_lists, tmp_path, monkeypatch):
  """Two workers of a sweep on a fresh data_dir: one builds, the other waits and reads that build
  (both used to build at once, and the second failed renaming its build into place)."""
  cfg = {'name': 'bp4d', 'manual_dir': bp4d_lists, 'data_dir': str(tmp_path / 'tfds')}
  builds = []
  real = tfds.core.DatasetBuilder.download_and_prepare

  def slow_build(self, *args, **kwargs):
    builds.append(self.data_dir)
    time.sleep(0.5)                 # the other worker arrives while this one builds
    return real(self, *args, **kwargs)

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', slow_build)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    infos = list(pool.map(lambda _: builders.get_dataset_info(cfg), range(2)))
  assert len(builds) == 1
  assert infos[0].num_examples == infos[1].num_examples and infos[0].num_examples['train'] > 0
  np.testing.assert_array_equal(infos[0].class_counts, infos[1].class_counts)


def test_name_and_manual_dir_alone_work(bp4d_lists, tmp_path):
  """--config.data.name=bp4d --config.data.manual_dir=DIR: layout detected, image size defaulted."""
  data_dir = str(tmp_path / 'tfds')
  info = builders.get_dataset_info(
      {'name': 'bp4d', 'manual_dir': bp4d_lists, 'data_dir': data_dir})
  assert info.builder_config == 'megraphau_lists'
  assert info.image_size == 200 and info.num_landmarks == 0  # what the builder stores
  assert info.task == 'au' and info.label_names == labels.au_label_names(labels.BP4D_AUS)
  assert info.class_counts.shape == info.train_occurrence_rates.shape == (12,)
  assert info.multi_label_names == []
  assert info.num_examples['train'] > 0 and info.num_examples['test'] > 0
  # Built once, the data is found again without the manual dir or the config name.
  again = builders.get_dataset_info({'name': 'bp4d', 'data_dir': data_dir})
  assert again.builder_config == 'megraphau_lists' and again.num_examples == info.num_examples
  np.testing.assert_array_equal(again.class_counts, info.class_counts)
  # A size other than the stored one names the stored one.
  with pytest.raises(ValueError, match=r'config\.data\.image_size is 112 .* stores 200 x 200'):
    builders.get_builder({'name': 'bp4d', 'data_dir': data_dir, 'image_size': 112})


def test_missing_manual_dir_is_the_first_error(tmp_path):
  bad = {'name': 'bp4d', 'data_dir': str(tmp_path / 'tfds'), 'builder_config': 'no_such_layout',
         'image_size': 7, 'fold': 9}
  with pytest.raises(ValueError, match=r'^config\.data\.manual_dir is not set') as err:
    builders.get_dataset_info(bad)
  assert 'MANUAL_DOWNLOAD_INSTRUCTIONS' in str(err.value)
  with pytest.raises(ValueError, match=r"^config\.data\.manual_dir '.*nowhere' is not an "
                                       r'existing directory'):
    builders.get_dataset_info({**bad, 'manual_dir': str(tmp_path / 'nowhere')})
  with pytest.raises(ValueError, match=r'^config\.data\.manual_dir is not set'):
    builders.get_dataset_info({'name': 'affectnet', 'data_dir': str(tmp_path / 'tfds')})


def test_unrecognised_manual_dir_names_every_layout(tmp_path):
  manual = tmp_path / 'manual'
  (manual / 'stuff').mkdir(parents=True)
  with pytest.raises(ValueError) as err:
    builders.get_dataset_info({'name': 'bp4d', 'manual_dir': str(manual),
                                     'data_dir': str(tmp_path / 'tfds')})
  msg = str(err.value)
  assert msg.startswith('config.data.builder_config is unset and the files in manual_dir')
  for layout, files in (('official', 'AUCoding/AU_OCC/<subject>_<task>.csv'),
                        ('megraphau_lists', 'BP4D_{train,test}_img_path_fold{1,2,3}.txt'),
                        ('jaanet_lists', 'BP4D_part{1,2,3}_{path,land,biocular,AUoccur}.txt')):
    assert f"'{layout}' (expects" in msg and files in msg, layout
  assert '\n' not in msg  # one message, one line


def test_several_layouts_ask_for_a_choice(bp4d_lists, tmp_path):
  import shutil
  manual = str(tmp_path / 'manual')
  shutil.copytree(bp4d_lists, manual)
  test_bp4d._write_jaanet(manual)
  cfg = {'name': 'bp4d', 'manual_dir': manual, 'data_dir': str(tmp_path / 'tfds')}
  with pytest.raises(ValueError, match=r"several bp4d layouts \['megraphau_lists', "
                                       r"'jaanet_lists'\]; set config\.data\.builder_config"):
    builders.get_builder(cfg, prepare=False)
  b = builders.get_builder({**cfg, 'builder_config': 'jaanet_lists'}, prepare=False)
  assert b.builder_config.name == 'jaanet_lists'


@pytest.mark.parametrize('layout', ['official', 'jaanet_lists'])
def test_layout_detection_picks_the_builder_config(tmp_path, layout):
  manual = str(tmp_path / 'manual')
  {'official': test_bp4d._write_official, 'jaanet_lists': test_bp4d._write_jaanet}[layout](manual)
  b = builders.get_builder({'name': 'bp4d', 'manual_dir': manual,
                                  'data_dir': str(tmp_path / 'tfds')}, prepare=False)
  assert b.builder_config.name == layout


def test_synthetic_keys_are_rejected_for_real_datasets(bp4d_lists, tmp_path):
  with pytest.raises(ValueError, match=r'config\.data\.num_subjects applies to synthetic_faces'):
    builders.get_builder({'name': 'bp4d', 'manual_dir': bp4d_lists, 'num_subjects': 9,
                                'data_dir': str(tmp_path)}, prepare=False)


def test_old_metadata_is_refused(data_config, tmp_path):
  """Data built by an older faujax (no label metadata) is an error, not a silent 7-way head."""
  builder = builders.get_builder(data_config)
  meta = dict(builder.info.metadata)
  try:
    for key in ('label_names', 'multi_label_names'):
      del builder.info.metadata[key]
    with pytest.raises(ValueError, match=r"lacks \['label_names', 'multi_label_names'\].*older"):
      builders._label_space(builder, 1)
    builder.info.metadata.update(meta)
    builder.info.metadata['class_counts'] = {'fold1': [0] * 7}
    with pytest.raises(ValueError, match=r'class_counts \(7,\) .* not \(8,\)'):
      builders._label_space(builder, 1)
  finally:
    builder.info.metadata.update(meta)


def test_data_of_an_older_version_is_not_read(bp4d_lists, data_config, tmp_path):
  """Builds of an older builder VERSION (other label metadata) are rebuilt or refused, not read."""
  import shutil
  data_dir = str(tmp_path / 'tfds')
  cfg = {'name': 'bp4d', 'manual_dir': bp4d_lists, 'data_dir': data_dir}
  built = builders.get_builder(cfg)
  version_dir = os.fspath(built.data_dir)
  assert version_dir.endswith(str(built.version)) and str(built.version) != '1.0.0'
  shutil.move(version_dir, os.path.join(os.path.dirname(version_dir), '1.0.0'))
  with pytest.raises(ValueError, match=r'manual_dir is not set.*older faujax \(version 1\.0\.0\)'):
    builders.get_builder({'name': 'bp4d', 'data_dir': data_dir})
  rebuilt = builders.get_builder(cfg)  # with the manual dir: built again at this version
  assert os.fspath(rebuilt.data_dir) == version_dir and builders._is_prepared(rebuilt)
  # The synthetic builder renders a fresh copy.
  synthetic_cfg = ml_collections.ConfigDict(data_config.to_dict())
  synthetic_cfg.data_dir = str(tmp_path / 'synthetic')
  fresh = builders.get_builder(synthetic_cfg)
  shutil.move(os.fspath(fresh.data_dir), os.path.join(os.path.dirname(os.fspath(fresh.data_dir)),
                                                      '1.0.0'))
  again = builders.get_builder(synthetic_cfg)
  assert builders._is_prepared(again) and 'label_names' in again.info.metadata

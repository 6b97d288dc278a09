"""The ``:public_code`` recipes: the public scripts' settings, their nearest-neighbour rotation and
AffectNet's public-code split (docs/reference/model_details.md, "Reference-code parity
switches")."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest

from faujax import config_base
from faujax.data import augment

import test_affectnet


@pytest.mark.parametrize('dataset', ['bp4d', 'disfa', 'emotionet'])
def test_macg_public_code_recipe(dataset):
  paper = config_base.resolve_config(config_base.repository_config(f'macg/{dataset}.py'))
  code = config_base.resolve_config(
      config_base.repository_config(f'macg/{dataset}.py:public_code'))
  assert (paper.train.num_epochs, code.train.num_epochs) == (40, 20)
  assert not paper.unbiased_running_var and code.unbiased_running_var
  assert not paper.model.ccfg_per_au_statistics and code.model.ccfg_per_au_statistics
  assert code.model.shared_ccfg_block and code.model.axial_order == 'xy'
  assert not code.model.ccfg_trainable_lambda
  # utils.image_train / image_test: resize 256, crop 224, jitter 0.4; the schedule per step.
  assert code.augment.image_size == 224 and code.augment.crop_scale == (224 / 256, 224 / 256)
  assert code.augment.eval_crop_scale == 224 / 256 and code.augment.brightness == 0.4
  assert code.schedule.name == 'cosine' and code.schedule.warmup_epochs == 0
  assert code.optim.to_dict() == paper.optim.to_dict()


def test_emotion_gcn_public_code_recipe():
  paper = config_base.resolve_config(config_base.repository_config('emotion_gcn/affectnet.py'))
  code = config_base.resolve_config(
      config_base.repository_config('emotion_gcn/affectnet.py:public_code'))
  assert paper.augment.interpolation == 'bilinear' and code.augment.interpolation == 'nearest'
  assert paper.augment.brightness == 0.4
  assert (code.augment.brightness, code.augment.contrast, code.augment.saturation) == (0, 0, 0)
  assert code.augment.rotation_deg == 30 and code.augment.crop_scale == (1.0, 1.0)
  assert (paper.data.builder_config, code.data.builder_config) == ('7class', '7class_public_code')
  assert code.loss.ccc_normalization == 'public_code' and code.unbiased_running_var
  assert (code.model.p, code.model.keep_va_edge) == (0.5, True)
  assert code.optim.to_dict() == paper.optim.to_dict()
  assert code.schedule.to_dict() == paper.schedule.to_dict()
  assert code.train.num_epochs == paper.train.num_epochs == 10


@pytest.mark.parametrize('relative', ['me_graphau/bp4d.py:stage1', 'me_graphau/disfa.py',
                                      'me_graphau/opengraphau.py'])
def test_me_graphau_recipes_track_torch_statistics(relative):
  assert config_base.resolve_config(config_base.repository_config(relative)).unbiased_running_var


def test_unbiased_running_var_must_be_a_bool():
  config = config_base.config_schema.to_plain(config_base.get_config('macg'))
  config['unbiased_running_var'] = 'yes'  # a typed ConfigDict refuses it already; a dict does not
  with pytest.raises(config_base.config_schema.ConfigError, match='unbiased_running_var'):
    config_base.resolve_config(ml_collections.ConfigDict(config))


def test_nearest_rotation_takes_input_pixels():
  """Nearest interpolation: every rotated pixel is an input pixel or the fill 0 (torchvision's
  ``RandomRotation`` default); bilinear mixes neighbours. An identity map keeps the image."""
  rng = np.random.default_rng(0)
  image = rng.integers(1, 255, (2, 33, 33, 3), dtype=np.uint8)
  batch = {'image': image, 'landmarks': np.zeros((2, 0, 2), np.float32)}
  out = {}
  for mode in augment.INTERPOLATIONS:
    cfg = augment.AugmentConfig(image_size=33, crop_scale=(1.0, 1.0), rotation_deg=30.0,
                                brightness=0.0, contrast=0.0, saturation=0.0, mean=(0, 0, 0),
                                std=(1, 1, 1), interpolation=mode)
    out[mode] = np.asarray(augment.preprocess(jax.random.key(3), batch, cfg,
                                              train=True)['image'])
    evaluated = np.asarray(augment.preprocess(None, batch, cfg, train=False)['image'])
    np.testing.assert_allclose(evaluated * 255, image, atol=1e-3)
  for b in range(2):
    values = set(image[b].ravel().tolist()) | {0}
    for mode, most in (('nearest', 1.0), ('bilinear', 0.5)):
      levels = out[mode][b].ravel() * 255.0
      taken = (np.abs(levels - np.round(levels)) < 1e-3) & np.isin(np.round(levels), list(values))
      assert taken.mean() == 1.0 if mode == 'nearest' else taken.mean() < most, (mode, taken.mean())
  with pytest.raises(ValueError, match='interpolation'):
    augment.AugmentConfig(interpolation='bicubic')


def test_evaluation_resamples_bilinearly_whatever_the_training_interpolation():
  """The public Emotion-GCN's test transform is a bilinear ``Resize``: ``interpolation`` changes
  only the training warp."""
  image = np.random.default_rng(1).integers(0, 255, (2, 48, 48, 3), dtype=np.uint8)
  batch = {'image': image, 'landmarks': np.zeros((2, 0, 2), np.float32)}
  outs = [np.asarray(augment.preprocess(None, batch, augment.AugmentConfig(
      image_size=33, interpolation=mode), train=False)['image']) for mode in ('bilinear',
                                                                             'nearest')]
  np.testing.assert_array_equal(outs[0], outs[1])


def test_affectnet_public_code_split(tmp_path_factory):
  """``7class_public_code``: all of training.csv trains; validation (selection) = test =
  validation.csv, as the public scripts."""
  from faujax.data import builders
  root = tmp_path_factory.mktemp('affectnet_public')
  test_affectnet._write_manual(root, test_affectnet.TRAIN_ROWS, test_affectnet.VAL_ROWS)
  data_dir = tmp_path_factory.mktemp('affectnet_public_data')
  info = builders.get_dataset_info({'name': 'affectnet', 'builder_config': '7class_public_code',
                                    'data_dir': str(data_dir), 'manual_dir': str(root)})
  in_training = sum(1 for r in test_affectnet.TRAIN_ROWS if r[1] < 7)
  assert info.num_examples == {'train': in_training, 'validation': 2, 'test': 2}
  assert int(info.class_counts.sum()) == in_training
  paper = builders.get_dataset_info({'name': 'affectnet', 'builder_config': '7class',
                                     'data_dir': str(data_dir), 'manual_dir': str(root)})
  assert paper.num_examples['train'] + paper.num_examples['validation'] == in_training
  assert paper.num_examples['test'] == 2

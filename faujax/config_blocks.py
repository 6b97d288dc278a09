"""Pieces shared by the config files in ``configs/`` (configs-as-code, one definition each).

A paper's recipe lives in one config file (``configs/macg/bp4d.py``, ``configs/emotion_gcn/
affectnet.py``); other datasets and the synthetic CPU versions load it with ``load_sibling`` and
override what differs, so every difference to the paper is a visible line. The synthetic faces'
data section and their aligned-face augmentation are defined here once.
"""

from __future__ import annotations

import importlib.util
import os
import types

import ml_collections
from ml_collections import config_dict

from faujax.data import augment as augment_lib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYNTHETIC_IMAGE_SIZE = 112  # the registered synthetic_faces configs' stored size


def load_sibling(config_file: str, name: str) -> types.ModuleType:
  """Imports ``<dir of config_file>/<name>.py`` (config files are loaded by path, not package).

  Args:
    config_file: ``__file__`` of the calling config.
    name: the sibling config's file name without ``.py``.
  """
  directory = os.path.dirname(os.path.abspath(config_file))
  path = os.path.join(directory, f'{name}.py')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{config_file} extends the config {path}, which does not exist.')
  module_name = f'_faujax_config_{os.path.basename(directory)}_{name}'
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def synthetic_data(builder_config: str) -> ml_collections.ConfigDict:
  """``config.data`` for ``synthetic_faces/<builder_config>`` (bp4d | disfa | emotionet |
  expression | all), built locally on first use; ``num_subjects`` / ``frames_per_subject``
  override the registered size (90 subjects x 20 frames)."""
  data = ml_collections.ConfigDict()
  data.name = 'synthetic_faces'
  data.builder_config = builder_config
  data.image_size = SYNTHETIC_IMAGE_SIZE
  data.fold = 1
  data.data_dir = config_dict.placeholder(str)    # tfds data_dir (default ~/tensorflow_datasets)
  data.manual_dir = config_dict.placeholder(str)  # real datasets: where the user's copy lives
  data.shuffle_buffer = 4096
  data.num_subjects = config_dict.placeholder(int)
  data.frames_per_subject = config_dict.placeholder(int)
  return data


def synthetic_augment(image_size: int) -> ml_collections.ConfigDict:
  """``config.augment`` of the synthetic CPU configs: faces aligned by their landmarks on the
  device (the real builders store aligned faces; the synthetic ones are not), a mild crop,
  rotation and colour jitter, inputs scaled to [-1, 1]. ``image_size`` is the model input."""
  augment = augment_lib.default_augment_config()
  augment.image_size = image_size
  augment.align = 'five_point'
  augment.align_zoom = 0.85
  augment.crop_scale = (0.95, 1.0)
  augment.eval_crop_scale = 0.95
  augment.rotation_deg = 3.0
  return augment

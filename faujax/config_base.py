"""The one base config: every key faujax reads, with the default declared where it is read.

``get_config(model)`` assembles the sections from their declarations: ``config.data``
(``faujax.data.input_pipeline.DataConfig``), ``config.augment`` (``augment.AugmentConfig``),
``config.model`` (the model's constructor, ``faujax.models.default_config``), ``config.loss``
(``tasks.LossConfig``), ``config.optim`` / ``config.schedule`` (``optim``), ``config.train`` /
``config.eval`` (``train``), ``config.checkpoint`` (``checkpoint.CheckpointConfig``), plus
``RUN_KEYS``. Config files in ``configs/`` start from it and write only what differs (a paper's
recipe), and variants take ``get_config(arg)`` (``--config configs/macg/synthetic.py:disfa``).

``faujax.train.resolve_config`` runs once before training: it applies ``config.ablation`` (a row
of the model's ``ABLATIONS``: the config keys it sets) and checks every section, so a config
mistake stops with one line naming the key before anything runs.
"""

from __future__ import annotations

import importlib.util
import os
import types
from typing import Any

import ml_collections

from faujax import config_schema
from faujax import models
from faujax import train
from faujax.data import augment
from faujax.data import input_pipeline

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(model: str = 'baseline') -> ml_collections.ConfigDict:
  """Every key with its declared default, ``config.model`` for the model ``model``."""
  config = ml_collections.ConfigDict(dict(train.RUN_KEYS))
  for key, schema in train.SECTIONS.items():
    config[key] = config_schema.section(schema)
  config.model = models.default_config(model)
  return config


# ----------------------------------------------------------------------------- shared blocks


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


def synthetic_data(config: ml_collections.ConfigDict, builder_config: str) -> None:
  """Points ``config.data`` at ``synthetic_faces/<builder_config>`` (bp4d | disfa | emotionet |
  expression | all), built locally on first use; everything else keeps its declared default."""
  config.data = config_schema.section(input_pipeline.DataConfig)
  config.data.name = 'synthetic_faces'
  config.data.builder_config = builder_config


def synthetic_augment(config: ml_collections.ConfigDict, image_size: int) -> None:
  """``config.augment`` of the synthetic CPU configs: faces aligned by their landmarks on the
  device (the real builders store aligned faces; the synthetic ones are not), a mild crop,
  rotation and colour jitter, inputs scaled to [-1, 1]. ``image_size`` is the model input."""
  config.augment = config_schema.section(augment.AugmentConfig)
  config.augment.update({'image_size': image_size, 'align': 'five_point', 'align_zoom': 0.85,
                         'crop_scale': (0.95, 1.0), 'eval_crop_scale': 0.95,
                         'rotation_deg': 3.0})


def with_model(config: ml_collections.ConfigDict, name: str, **overrides: Any) -> None:
  """Replaces ``config.model`` by model ``name``'s declared defaults, then ``overrides``."""
  config.model = models.default_config(name)
  for key, value in overrides.items():
    if key not in config.model:
      raise config_schema.unknown_key_error(key, 'model', config.model.keys())
    config.model[key] = value

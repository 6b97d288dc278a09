"""The run's config: every key faujax reads, with the default declared where it is read.

``get_config(model)`` assembles the sections from their declarations: ``config.data``
(``faujax.data.dataset_info.DataConfig``), ``config.augment`` (``augment.AugmentConfig``),
``config.model`` (the model's constructor, ``faujax.models.default_config``), ``config.loss``
(``tasks.LossConfig``), ``config.optim`` / ``config.schedule`` (``optim``), and the run's own
sections declared here: ``config.train`` / ``config.eval`` (read by the training loop),
``config.checkpoint`` (read by the loop and ``faujax.checkpoint``) and ``RUN_KEYS``. Config files
in ``configs/`` start from it and write only what differs (a paper's recipe), and variants take
``get_config(arg)`` (``--config configs/macg/synthetic.py:disfa``). Importing this module (every
config file does) imports neither the training loop nor orbax nor tensorflow-datasets.

``resolve_config`` runs once before training: it applies ``config.ablation`` (a row of the
model's ``ABLATIONS``: the config keys it sets) and checks every section, so a config mistake
stops with one line naming the key before anything runs; ``config_sections`` turns a resolved
config into the declared dataclasses.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import types
from typing import Any, Mapping

import ml_collections

from faujax import config_schema
from faujax import models
from faujax import optim
from faujax import parallel
from faujax import stages as stages_lib
from faujax import tasks
from faujax.data import augment
from faujax.data import dataset_info


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """``config.checkpoint``: a periodic checkpoint every ``every`` steps (and at the end or on
  SIGTERM), of which the newest ``keep`` are kept; the best-by-validation one is kept beside."""
  every: int = 500
  keep: int = 2

  def __post_init__(self):
    config_schema.check(self.every >= 1, 'every', self.every, 'an int >= 1 (steps)')
    config_schema.check(self.keep >= 1, 'keep', self.keep, 'an int >= 1')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """``config.train``: global batch, length (``num_steps`` > 0 overrides ``num_epochs``) and the
  intervals (in steps) of the progress lines and the validation passes. ``stage_order`` /
  ``stages``: consecutive training stages (``faujax.stages``; their lengths replace
  ``num_epochs`` / ``num_steps``); empty = one stage that trains everything.
  ``prefetch_batches``: training batches kept on the devices ahead of the step
  (``faujax.parallel.prefetch``; 1 = copy each batch just before its step)."""
  batch_size: int = 32
  num_epochs: float = 10.0
  num_steps: int = 0
  log_every: int = 50
  eval_every: int = 500
  prefetch_batches: int = 2
  stage_order: tuple[str, ...] = ()
  stages: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    stages_lib.read_stages(self.stage_order, self.stages)
    config_schema.check(self.batch_size >= 1, 'batch_size', self.batch_size, 'an int >= 1')
    config_schema.check(self.num_epochs > 0, 'num_epochs', self.num_epochs, 'a value > 0')
    config_schema.check(self.num_steps >= 0, 'num_steps', self.num_steps,
                        'an int >= 0 (0: use num_epochs)')
    config_schema.check(self.log_every >= 1, 'log_every', self.log_every, 'an int >= 1 (steps)')
    config_schema.check(self.eval_every >= 1, 'eval_every', self.eval_every, 'an int >= 1 (steps)')
    config_schema.check(self.prefetch_batches >= 1, 'prefetch_batches', self.prefetch_batches,
           'an int >= 1 (batches on the devices ahead of the step)')


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """``config.eval``: global evaluation batch, the decision threshold of multi-label predictions,
  and the validation metric that selects the checkpoint ('' = the task's default)."""
  batch_size: int = 64
  threshold: float = 0.5
  selection_metric: str = ''

  def __post_init__(self):
    config_schema.check(self.batch_size >= 1, 'batch_size', self.batch_size, 'an int >= 1')
    config_schema.check(0.0 < self.threshold < 1.0, 'threshold', self.threshold,
                        'a value in (0, 1)')


# Top-level keys: the seed of every random draw; the parallel mode ('jit' over a device mesh, or
# 'pmap'); a row of the model's ABLATIONS ('' = none); an orbax directory of pretrained trunk
# weights written by ``python -m faujax.tools.import_weights`` ('' = random initialisation).
# 'init_from': a run (workdir or step directory) whose variables initialise the model where paths
# and shapes match (``_init_from``; '' = none).
# 'evals': evaluators run after the test evaluation besides the model's own (module paths,
# ``faujax.evaluators``).
# 'unbiased_running_var': every BatchNorm's running variance tracks PyTorch's unbiased batch
# variance n / (n - 1) sigma^2 instead of the biased one (``faujax.layers.batch_norm``; on in the
# torch-parity recipes, off by default).
RUN_KEYS: dict[str, Any] = {'seed': 0, 'parallelism': 'jit', 'ablation': '',
                            'pretrained_backbone': '', 'init_from': '', 'evals': (),
                            'unbiased_running_var': False}
# Every config section and the schema that declares its keys.
SECTIONS: dict[str, type] = {
    'data': dataset_info.DataConfig,
    'augment': augment.AugmentConfig,
    'loss': tasks.LossConfig,
    'optim': optim.OptimConfig,
    'schedule': optim.ScheduleConfig,
    'train': TrainConfig,
    'eval': EvalConfig,
    'checkpoint': CheckpointConfig,
}


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``config.ablation`` applied, after checking every key and range.

  The ablation row (``faujax.models.ablations``) sets its config keys; everything else is the
  config as given. Raises ConfigError naming the key (unknown keys name the nearest valid ones).
  """
  config = ml_collections.ConfigDict(config_schema.to_plain(config))
  known = list(RUN_KEYS) + list(SECTIONS) + ['model']
  for key in config.keys():
    if key not in known:
      raise config_schema.unknown_key_error(key, '', known)
  parallel.check_mode(config.get('parallelism', 'jit'))
  if not isinstance(config.get('unbiased_running_var', False), bool):
    raise config_schema.ConfigError(
        f'config.unbiased_running_var={config.unbiased_running_var!r}; expected True or False.')
  rows = models.ablations(config.model.name)
  if config.get('ablation', ''):
    if config.ablation not in rows:
      expected = (f'one of {tuple(rows)} or empty' if rows else
                  'empty (this model has no ablation rows)')
      raise config_schema.ConfigError(
          f'config.ablation={config.ablation!r} is not an ablation of model '
          f'{config.model.name!r}; expected {expected}.')
    for dotted, value in rows[config.ablation].items():
      section, key = dotted.split('.', 1)
      config[section][key] = value
  for key, schema in SECTIONS.items():
    config_schema.read(schema, config.get(key), key)
  return config


def config_sections(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {key: config_schema.read(schema, config.get(key), key)
          for key, schema in SECTIONS.items()}


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(model: str = 'baseline') -> ml_collections.ConfigDict:
  """Every key with its declared default, ``config.model`` for the model ``model``."""
  config = ml_collections.ConfigDict(dict(RUN_KEYS))
  for key, schema in SECTIONS.items():
    config[key] = config_schema.section(schema)
  config.model = models.default_config(model)
  return config


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """``get_config([arg])`` of a config file given as ``path[:arg]`` (the ``--config`` flag's form).

  Raises:
    ConfigError: naming the file, when it is missing, fails to import or has no ``get_config``.
  """
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise config_schema.ConfigError(f'--config {spec}: the file {path} does not exist.')
  module_name = '_faujax_config_' + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # a syntax or import error in the user's config file
    raise config_schema.ConfigError(f'--config {spec}: {path} cannot be loaded '
                                    f'({type(e).__name__}: {e}).') from None
  if not hasattr(module, 'get_config'):
    raise config_schema.ConfigError(f'--config {spec}: {path} defines no get_config().')
  return module.get_config(arg) if arg else module.get_config()


def repository_config(relative: str) -> ml_collections.ConfigDict:
  """A config of this faujax checkout's ``configs/`` (``relative``: 'macg/bp4d.py:public_code').

  Raises:
    ConfigError: the checkout has no such file (faujax installed without its configs).
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.path.join(root, 'configs', relative.partition(':')[0])
  if not os.path.isfile(path):
    raise config_schema.ConfigError(
        f'{path} is missing: this needs the configs/ folder of a faujax checkout (install faujax '
        'from a clone with pip install -e).')
  return load_config_file(os.path.join(root, 'configs', relative))


# ----------------------------------------------------------------------------- shared blocks


def config_argument(config_file: str, given: str | None, choices: Any, default: str) -> str:
  """The argument after ``:`` in ``--config <file>:<argument>``: ``given`` or ``default``, checked.

  Args:
    config_file: the config's path as users write it (``'configs/macg/bp4d.py'``).
    given: the argument, or None when the spec has none.
    choices: the accepted arguments (a tuple, or a dict's keys).
    default: what no argument means.
  """
  choices = tuple(choices)
  value = given or default
  if value not in choices:
    raise ValueError(f'{config_file} argument {value!r}; expected one of {choices} (e.g. '
                     f'--config {config_file}:{choices[-1]}).')
  return value


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
  config.data = config_schema.section(dataset_info.DataConfig)
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


def resize_crop_augment(config: ml_collections.ConfigDict, *, resize: int, crop: int) -> None:
  """``config.augment`` of the torchvision recipe "resize the face to ``resize``, crop ``crop``"
  with ImageNet normalisation (ME-GraphAU, MACG, OpenGraphAU): training crops a random
  ``crop / resize`` of the stored face, evaluation its centre, both resampled to ``crop`` px. On
  a stored face of ``resize`` px (the public code's test transform, ``faujax.faces``) the
  evaluation crop takes pixels as they are."""
  config.augment.image_size = crop
  config.augment.crop_scale = (crop / resize, crop / resize)
  config.augment.eval_crop_scale = crop / resize
  config.augment.mean = IMAGENET_MEAN
  config.augment.std = IMAGENET_STD


def colour_jitter(config: ml_collections.ConfigDict, strength: float) -> None:
  """torchvision's ``ColorJitter(strength, strength, strength)`` in ``config.augment``: brightness,
  contrast and saturation each scaled by a factor drawn from ``[1 - strength, 1 + strength]``."""
  config.augment.brightness = strength
  config.augment.contrast = strength
  config.augment.saturation = strength


def with_model(config: ml_collections.ConfigDict, name: str, **overrides: Any) -> None:
  """Replaces ``config.model`` by model ``name``'s declared defaults, then ``overrides``."""
  config.model = models.default_config(name)
  for key, value in overrides.items():
    if key not in config.model:
      raise config_schema.unknown_key_error(key, 'model', config.model.keys())
    config.model[key] = value

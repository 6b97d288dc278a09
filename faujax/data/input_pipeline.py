"""Host input pipeline: tensorflow-datasets -> tf.data (decode, shuffle, batch, shard) -> numpy batches.

The host only decodes; augmentation runs on the device (``faujax.data.augment``).

``config.data`` (declared by ``DataConfig``; pass ``config.data`` or a full config with a ``data``
field; a dict, ConfigDict or DataConfig):
  name               tfds builder: 'synthetic_faces' (default) or a real dataset registered by
                     importing faujax.data ('bp4d', 'disfa', 'emotionet', 'affectnet',
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
  num_subjects, frames_per_subject
                     synthetic only (None: the registered config's values).

The dataset is built (download_and_prepare) on first use in ``data_dir``. Label spaces come from
the builder's metadata (see ``DatasetInfo`` and ``_label_space``), never from this module.

Batches are dicts of numpy arrays with leading dim B: image uint8 (B, S, S, 3), landmarks float32
(B, P, 2), au / au_mask / au_intensity float32 (B, len(info.aus)), expression int32 (B,),
valence / arousal float32 (B,), expression_multi float32 (B, 6) (columns
``info.multi_label_names`` where annotated), subject int64 (B,), va_mask float32 (B,) (expression
builders only), valid float32 (B,) (1 = real example, 0 = padding of the last evaluation batch).
``DatasetInfo.batch_spec`` gives every key's per-example shape and dtype.

TensorFlow is imported only where a tf.data pipeline is built (``create_split``,
``load_labels``): importing it takes several seconds, and a process that only reads a dataset's
metadata (``get_dataset_info``), builds a model, benchmarks or predicts never needs it
(``tests/test_runtime.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import contextlib
import dataclasses
import fcntl
import functools
import math
import os
from typing import Any

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from faujax import config_schema
from faujax import labels
from faujax.data import splits
from faujax.data.synthetic_faces import builder as synthetic_builder

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
  batch_spec: dict[str, tuple[tuple[int, ...], Any]] = dataclasses.field(
      default_factory=dict, repr=False, compare=False)
  data_config: Any = dataclasses.field(default=None, repr=False, compare=False)

  @property
  def num_au(self) -> int:
    return len(self.aus)

  @functools.cached_property
  def train_labels(self) -> dict[str, np.ndarray]:
    return load_labels(self.data_config, 'train')


def _data_config(config: Any) -> DataConfig:
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


def _synthetic_builder(cfg: DataConfig, data_dir):
  known = {c.name: c for c in synthetic_builder.SyntheticFaces.BUILDER_CONFIGS}
  name = cfg.builder_config or synthetic_builder.SyntheticFaces.DEFAULT_CONFIG_NAME
  if name not in known:
    raise ValueError(f'config.data.builder_config {name!r} is not a config of {SYNTHETIC}; '
                     f'expected one of {sorted(known)}.')
  base = known[name]
  overrides = {}
  for key in ('image_size', 'num_subjects', 'frames_per_subject'):
    value = getattr(cfg, key)
    if value is not None and value != getattr(base, key):
      overrides[key] = value
  if 'image_size' in overrides:
    size = overrides['image_size']
    lo, hi = synthetic_builder.MIN_IMAGE_SIZE, synthetic_builder.MAX_IMAGE_SIZE
    if not lo <= size <= hi:
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


def _registered_builder_cls(name: str):
  available = sorted(tfds.list_builders(with_community_datasets=False))
  if name not in available:
    raise ValueError(f'config.data.name {name!r} is not a registered tfds builder; expected '
                     f'{SYNTHETIC!r} or another builder registered by importing faujax.data.')
  return tfds.builder_cls(name)


def _config_names(builder_cls) -> list[str]:
  return [c.name for c in (getattr(builder_cls, 'BUILDER_CONFIGS', None) or [])]


def _prepared_configs(name: str, builder_cls, data_dir) -> list[str]:
  """The configs of ``name`` already built in ``data_dir`` at the code's version."""
  out = []
  for config_name in _config_names(builder_cls) or [None]:
    if _is_prepared(tfds.builder(name, config=config_name, data_dir=data_dir)):
      out.append(config_name)
  return out


def _layout_choices(name: str, builder_cls) -> str:
  """'official (expects ...); megraphau_lists (expects ...)' for the config errors."""
  requirements = builder_cls.layout_requirements()
  return '; '.join(f'{layout!r} (expects {files})' for layout, files in requirements.items())


def _resolve_manual_dir(cfg: DataConfig, name: str, builder_cls, data_dir) -> str | None:
  """The expanded manual_dir, None when none is needed (the configured data is built).

  Checked before anything else about a real dataset: an unset or non-existent manual_dir is the
  first error a new user sees.
  """
  instructions = getattr(builder_cls, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
  if not instructions:
    return None
  where = f'see faujax.data.{builder_cls.__module__.rsplit(".", 1)[-1]}.' \
          f'{builder_cls.__name__}.MANUAL_DOWNLOAD_INSTRUCTIONS'
  if cfg.manual_dir is not None:
    manual_dir = os.path.expanduser(str(cfg.manual_dir))
    if not os.path.isdir(manual_dir):
      raise ValueError(f'config.data.manual_dir {cfg.manual_dir!r} is not an existing directory; '
                       f'expected the directory holding the downloaded {name} files ({where}).')
    return manual_dir
  prepared = _prepared_configs(name, builder_cls, data_dir)
  if cfg.builder_config and cfg.builder_config in prepared:
    return None
  if not cfg.builder_config and len(prepared) == 1:
    return None
  if not cfg.builder_config and len(prepared) > 1:
    raise ValueError(f'config.data.builder_config is unset and data_dir holds several built '
                     f'{name} configs {prepared}; set config.data.builder_config to one of them.')
  stale = _older_versions(name, builder_cls, data_dir)
  note = (f' data_dir holds {name} built by an older faujax (version {", ".join(stale)}), whose '
          'label metadata this version does not read: it is rebuilt from manual_dir.'
          if stale else '')
  raise ValueError(f'config.data.manual_dir is not set; expected the directory holding the '
                   f'downloaded {name} files (needed to build {name} in data_dir '
                   f'{data_dir or "~/tensorflow_datasets"}; {where}).{note}')


def _older_versions(name: str, builder_cls, data_dir) -> list[str]:
  """Versions of ``name`` built in ``data_dir`` other than the code's (older faujax builds)."""
  found = set()
  for config_name in _config_names(builder_cls) or [None]:
    builder = tfds.builder(name, config=config_name, data_dir=data_dir)
    parent = os.path.dirname(os.fspath(builder.data_dir))
    if os.path.isdir(parent):
      found |= {v for v in os.listdir(parent) if v != str(builder.version)
                and os.path.isfile(os.path.join(parent, v, 'dataset_info.json'))}
  return sorted(found)


def _resolve_builder_config(cfg: DataConfig, name: str, builder_cls, manual_dir, data_dir):
  """The builder config: the configured one (checked), else detected or the builder's default."""
  configs = _config_names(builder_cls)
  if not configs:
    if cfg.builder_config:
      raise ValueError(f'config.data.builder_config {cfg.builder_config!r}: {name} has no '
                       'builder configs; leave it unset.')
    return None
  if cfg.builder_config:
    if cfg.builder_config not in configs:
      raise ValueError(f'config.data.builder_config {cfg.builder_config!r} is not a config of '
                       f'{name}; expected one of {configs}.')
    return cfg.builder_config
  if manual_dir is None:  # nothing to read: the one config already built
    return _prepared_configs(name, builder_cls, data_dir)[0]
  if hasattr(builder_cls, 'detect_layouts'):
    found = builder_cls.detect_layouts(manual_dir)
    if len(found) == 1:
      logging.info('%s: config.data.builder_config unset; detected the %r layout in %s.', name,
                   found[0], manual_dir)
      return found[0]
    if not found:
      raise ValueError(f'config.data.builder_config is unset and the files in manual_dir '
                       f'{manual_dir} match no {name} layout; set config.data.builder_config to '
                       f'one of: {_layout_choices(name, builder_cls)}.')
    raise ValueError(f'config.data.builder_config is unset and manual_dir {manual_dir} holds the '
                     f'files of several {name} layouts {found}; set config.data.builder_config to '
                     'one of them.')
  default = getattr(builder_cls, 'DEFAULT_CONFIG_NAME', None) or configs[0]
  logging.info('%s: config.data.builder_config unset; using the default config %r.', name, default)
  return default


def _check_fold(cfg: DataConfig, builder) -> int:
  folds = tuple(getattr(builder, 'FOLDS', splits.FOLDS))
  if cfg.fold not in folds:
    raise ValueError(f'config.data.fold must be one of {folds} for {builder.name}; '
                     f'got {cfg.fold!r}.')
  return int(cfg.fold)


def get_builder(data_config: Any, *, prepare: bool = True) -> tfds.core.DatasetBuilder:
  """The tfds builder named by `config.data`, prepared (built) in `data_dir` unless it exists.

  Checks, in this order: name; manual_dir (real datasets that are not built yet); builder_config
  (detected when unset); image_size; fold.
  """
  cfg = _data_config(data_config)
  data_dir = os.path.expanduser(cfg.data_dir) if cfg.data_dir is not None else None
  download_config = None
  if cfg.name == SYNTHETIC:
    builder = _synthetic_builder(cfg, data_dir)
  else:
    builder_cls = _registered_builder_cls(cfg.name)
    manual_dir = _resolve_manual_dir(cfg, cfg.name, builder_cls, data_dir)
    for key in ('num_subjects', 'frames_per_subject'):
      if getattr(cfg, key) is not None:
        raise ValueError(f'config.data.{key} applies to {SYNTHETIC} only; expected None for '
                         f'{cfg.name}.')
    config_name = _resolve_builder_config(cfg, cfg.name, builder_cls, manual_dir, data_dir)
    builder = tfds.builder(cfg.name, config=config_name, data_dir=data_dir)
    if manual_dir is not None:
      download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  stored = builder.info.features['image'].shape[0]
  if cfg.image_size is not None and stored != cfg.image_size:
    raise ValueError(f'config.data.image_size is {cfg.image_size} but {builder.info.full_name} '
                     f'stores {stored} x {stored} images; set config.data.image_size = {stored} '
                     'or leave it unset.')
  _check_fold(cfg, builder)
  if prepare and not _is_prepared(builder):
    if download_config is None and getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None):
      raise ValueError(f'config.data.manual_dir is not set; expected the directory holding the '
                       f'downloaded {cfg.name} files to build {builder.info.full_name}.')
    if not _prepare_once(builder, download_config):
      return get_builder(data_config, prepare=False)  # built meanwhile: read that build's info
  return builder


def _is_prepared(builder) -> bool:
  return (builder.data_path / 'dataset_info.json').exists()


def _prepare_once(builder, download_config) -> bool:
  """Builds ``builder``'s dataset unless another process built it while this one waited.

  Processes that start together on one data_dir (the workers of a sweep, the processes of a
  multi-host job on a shared disk) would otherwise build the same dataset at once, and every one
  but the first would fail renaming its build into place. An exclusive lock file beside the
  version directory lets one build while the others wait. Returns whether this call built it.
  """
  with _build_lock(os.path.dirname(builder.data_dir)):
    if _is_prepared(builder):
      return False
    builder.download_and_prepare(download_config=download_config)
    return True


@contextlib.contextmanager
def _build_lock(directory: str) -> Iterator[None]:
  """An exclusive ``flock`` on ``directory/.faujax_build.lock`` (a no-op for remote paths)."""
  if '://' in directory:      # gs:// and the like: no file locks; tfds' own checks remain
    yield
    return
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, '.faujax_build.lock'), 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


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


def _fold_value(meta: Any, key: str, fold: int) -> Any:
  """``meta[key]``: a list (the same for every fold) or {'fold<k>': list}."""
  value = meta[key]
  if isinstance(value, Mapping):
    if f'fold{fold}' not in value:
      raise ValueError(f'dataset metadata {key!r} has no entry for fold {fold}; expected keys '
                       f'{sorted(value)}.')
    value = value[f'fold{fold}']
  return value


def _label_space(builder, fold: int) -> dict[str, Any]:
  """task, label names and training statistics from the builder's metadata, checked.

  Raises ValueError when the metadata lacks a key (data built by an older faujax: rebuild it) or
  its sizes disagree with each other or with the features.
  """
  meta = builder.info.metadata or {}
  missing = [k for k in REQUIRED_METADATA if k not in meta]
  where = f'{builder.info.full_name} in {builder.data_dir}'
  if missing:
    raise ValueError(f'The metadata of {where} lacks {missing}: it was built by an older faujax. '
                     f'Delete {builder.data_dir} and build it again.')
  task = meta['task']
  if task not in labels.TASKS:
    raise ValueError(f'{where}: metadata task {task!r}; expected one of {labels.TASKS}.')
  names = [str(n) for n in meta['label_names']]
  multi = [str(n) for n in meta['multi_label_names']]
  aus = tuple(int(a) for a in meta.get('aus', ()))
  counts = np.asarray(_fold_value(meta, 'class_counts', fold), np.int64)
  rates = np.asarray(_fold_value(meta, 'train_occurrence_rates', fold), np.float32)
  features = builder.info.features
  problems = []
  if not names:
    problems.append('label_names is empty')
  if counts.shape != (len(names),) or rates.shape != (len(names),):
    problems.append(f'class_counts {counts.shape} / train_occurrence_rates {rates.shape} are not '
                    f'({len(names)},) like label_names')
  if features['au'].shape[0] != len(aus):
    problems.append(f"the au feature has {features['au'].shape[0]} columns but aus {list(aus)}")
  if task == 'au' and names != labels.au_label_names(aus):
    problems.append(f'task au: label_names {names} are not those of aus {list(aus)}')
  if multi and features['expression_multi'].shape[0] != len(multi):
    problems.append(f"expression_multi has {features['expression_multi'].shape[0]} columns but "
                    f'multi_label_names {multi}')
  if task == 'expression_multi' and names != multi:
    problems.append(f'task expression_multi: label_names {names} != multi_label_names {multi}')
  if problems:
    raise ValueError(f'Inconsistent label metadata of {where}: ' + '; '.join(problems) + '.')
  return {'task': task, 'label_names': names, 'multi_label_names': multi, 'aus': aus,
          'class_counts': counts, 'train_occurrence_rates': rates}


def _batch_spec(builder) -> dict[str, tuple[tuple[int, ...], Any]]:
  """Per-example shape and dtype of every key of a batch (``_select`` + 'valid')."""
  features = builder.info.features
  spec = {}
  for key in FEATURE_KEYS + ('va_mask',):
    if key in features:
      f = features[key]
      spec[key] = (tuple(f.shape), np.dtype(f.np_dtype))
  spec['expression'] = ((), np.dtype(np.int32))
  spec['valid'] = ((), np.dtype(np.float32))
  return spec


def get_dataset_info(data_config: Any) -> DatasetInfo:
  """Label space, sizes and training-label statistics of the configured dataset and fold."""
  cfg = _data_config(data_config)
  builder = get_builder(cfg)
  fold = _check_fold(cfg, builder)
  space = _label_space(builder, fold)
  num_examples = {split: sum(builder.info.splits[p].num_examples
                             for p in split_parts(builder, fold, split))
                  for split in splits.LOGICAL_SPLITS}
  return DatasetInfo(
      name=builder.name,
      builder_config=builder.builder_config.name if builder.builder_config else '',
      task=space['task'],
      label_names=space['label_names'],
      num_labels=len(space['label_names']),
      aus=space['aus'],
      num_examples=num_examples,
      image_size=int(builder.info.features['image'].shape[0]),
      num_landmarks=int(builder.info.features['landmarks'].shape[0]),
      fold=fold,
      train_occurrence_rates=space['train_occurrence_rates'],
      class_counts=space['class_counts'],
      multi_label_names=space['multi_label_names'],
      batch_spec=_batch_spec(builder),
      data_config=cfg,
  )


def load_labels(data_config: Any, split: str) -> dict[str, np.ndarray]:
  """Every non-image feature of a logical split as numpy arrays (images are not decoded)."""
  cfg = _data_config(data_config)
  builder = get_builder(cfg)
  parts = split_parts(builder, _check_fold(cfg, builder), split)
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
  parts = split_parts(builder, _check_fold(cfg, builder), split)
  if not parts:
    raise ValueError(f'{builder.info.full_name} has no {split!r} split for config.data.fold='
                     f'{cfg.fold}.')
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
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sub = tfds.split_for_jax_process(split_str, process_index=process_index,
                                   process_count=process_count)
  read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
  ds = builder.as_dataset(split=sub, shuffle_files=True, read_config=read_config,
                          decoders={'image': tfds.decode.SkipDecoding()})
  ds = ds.repeat()
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

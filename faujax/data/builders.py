"""tensorflow-datasets builders: which builder a ``config.data`` names, built once, its label space.

``get_builder`` resolves ``config.data`` (``faujax.data.dataset_info.DataConfig``) to a tfds
builder: the synthetic faces (a variant per image size / subject count), or a real dataset read
from ``manual_dir`` (the layout detected from its files when ``builder_config`` is unset), and
builds it on first use in ``data_dir``, once even when several processes start together (a file
lock beside the version directory). ``get_dataset_info`` reads its label space and the fold's
training statistics from the builder's metadata (never from this module). ``register`` imports
the builder modules, which registers them with tfds (``tfds.builder('bp4d/official')`` works
after it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import contextlib
import dataclasses
import fcntl
import importlib
import os
from typing import Any

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import splits
from faujax.data.dataset_info import (DataConfig, DatasetInfo, FEATURE_KEYS, REQUIRED_METADATA,
                                      SYNTHETIC, as_data_config)
from faujax.data.synthetic_faces import builder as synthetic_builder

# The modules whose import registers faujax's tfds builders.
BUILDER_MODULES = ('faujax.data.synthetic_faces.builder', 'faujax.data.bp4d', 'faujax.data.disfa',
                   'faujax.data.emotionet', 'faujax.data.affectnet', 'faujax.data.aff_wild2',
                   'faujax.data.raf', 'faujax.data.jaffe')


def register() -> None:
  """Registers every faujax builder with tfds (imports their modules; idempotent)."""
  for name in BUILDER_MODULES:
    importlib.import_module(name)


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
  register()
  available = sorted(tfds.list_builders(with_community_datasets=False))
  if name not in available:
    raise ValueError(f'config.data.name {name!r} is not a registered tfds builder; expected '
                     f'{SYNTHETIC!r} or another builder of faujax.data.builders.BUILDER_MODULES.')
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


def check_fold(cfg: DataConfig, builder) -> int:
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
  cfg = as_data_config(data_config)
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
  check_fold(cfg, builder)
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
  cfg = as_data_config(data_config)
  builder = get_builder(cfg)
  fold = check_fold(cfg, builder)
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

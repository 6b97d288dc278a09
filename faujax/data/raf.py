"""RAF-ML and RAF-DB (basic, compound) tensorflow-datasets builders (SVML-RGCN, sec. 4.1).

RAF label order equals ``faujax.labels.BASIC_6``: surprise, fear, disgust, happy, sad,
anger (RAF-DB basic codes 1-6; code 7 = neutral).

* ``raf_ml``: 4908 images with 6-dim blended-emotion labels, official partition
  (3926 train / 982 test). Multi-labels come from ``multilabel.txt`` (0/1 rows) when
  the distribution has it, otherwise from the emotion distribution: label c is
  positive iff its normalised score s_c / sum(s) exceeds ``distribution_threshold``
  (default 1/6, the uniform level; a faujax choice, recorded in the metadata).
* ``raf_db/basic``: 7 classes mapped to ``EXPRESSIONS_7`` (RAF 1 Surprise -> 3, 2 Fear
  -> 4, 3 Disgust -> 5, 4 Happiness -> 1, 5 Sadness -> 2, 6 Anger -> 6, 7 Neutral -> 0);
  ``expression_multi`` is the one-hot BASIC_6 vector (zeros for neutral), the input of
  SVML-RGCN's visual node features (images of the 6 basic expressions).
* ``raf_db/compound``: 3954 images, 11 compound classes converted to 6-dim multi-labels
  (SVML-RGCN sec. 4.1: y^c = 1 iff the compound label covers c); codes 1-11 =
  Happily Surprised, Happily Disgusted, Sadly Fearful, Sadly Angry, Sadly Surprised,
  Sadly Disgusted, Fearfully Angry, Fearfully Surprised, Angrily Surprised, Angrily
  Disgusted, Disgustedly Surprised. Official partition 3162 train / 792 test.

All use the distributed 100 x 100 aligned images (``Image/aligned/<stem>_aligned.jpg``),
resized to ``image_size`` (default 100: stored as distributed). ``validation`` = 10%
of the official training images chosen by a stable hash of the image name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import expression_builder_base as base

# RAF-DB basic code -> EXPRESSIONS_7 index.
RAF_BASIC_TO_EXPRESSION7 = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 0}
COMPOUND_CLASSES: tuple[tuple[str, tuple[str, str]], ...] = (
    ('happily surprised', ('happy', 'surprise')),
    ('happily disgusted', ('happy', 'disgust')),
    ('sadly fearful', ('sad', 'fear')),
    ('sadly angry', ('sad', 'anger')),
    ('sadly surprised', ('sad', 'surprise')),
    ('sadly disgusted', ('sad', 'disgust')),
    ('fearfully angry', ('fear', 'anger')),
    ('fearfully surprised', ('fear', 'surprise')),
    ('angrily surprised', ('anger', 'surprise')),
    ('angrily disgusted', ('anger', 'disgust')),
    ('disgustedly surprised', ('disgust', 'surprise')),
)


def compound_multi_label(code: int) -> tuple[float, ...]:
  """6-dim BASIC_6 multi-label of a RAF-DB compound code 1-11 (SVML-RGCN sec. 4.1)."""
  if not 1 <= code <= len(COMPOUND_CLASSES):
    raise ValueError(f'RAF-DB compound code must be 1-11; got {code}.')
  members = COMPOUND_CLASSES[code - 1][1]
  return tuple(1.0 if name in members else 0.0 for name in labels.BASIC_6)


def _aligned_path(root: epath.Path, name: str) -> epath.Path:
  stem = name.rsplit('.', 1)[0]
  return root / 'Image' / 'aligned' / f'{stem}_aligned.jpg'


def _split_of_name(name: str, path, line_no: int) -> str:
  if name.startswith('train_'):
    return 'train'
  if name.startswith('test_'):
    return 'test'
  raise ValueError(f'{path}, line {line_no}: image name {name!r} must start with train_ or '
                   'test_ (the official partition).')


def _table(path: epath.Path, what: str, num_values: int) -> list[tuple[int, str, list[str]]]:
  """Rows (line number, name, value tokens) of a whitespace-separated 'name v1 .. vn' file."""
  rows = []
  for line_no, line in enumerate(base.read_text_lines(path, what), start=1):
    tokens = line.split()
    if not tokens:
      continue
    if len(tokens) != 1 + num_values:
      raise ValueError(f'{path}, line {line_no}: expected "<image name>" and {num_values} '
                       f'value(s) ({what}), got {len(tokens)} field(s).')
    rows.append((line_no, tokens[0], tokens[1:]))
  return rows


def _check_image(root: epath.Path, name: str, path, line_no: int) -> epath.Path:
  image = _aligned_path(root, name)
  if not image.exists():
    raise ValueError(f'{path}, line {line_no}: aligned image {image} does not exist; expected '
                     '<dir>/Image/aligned/<stem>_aligned.jpg.')
  return image


@dataclasses.dataclass(eq=False)
class RafMlConfig(tfds.core.BuilderConfig):
  """RAF-ML options.

  Attributes:
    distribution_threshold: a label is positive iff its normalised distribution score
      exceeds this (used only without ``multilabel.txt``).
    image_size: stored side (100 = the distributed aligned size).
    validation_fraction: fraction of training images held out as ``validation``.
  """

  distribution_threshold: float = 1.0 / 6.0
  image_size: int = 100
  validation_fraction: float = 0.1


class RafMl(base.ExpressionBuilder):
  """RAF-ML (Li and Deng 2019): multi-label blended expressions in the wild."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': "Metadata: 'label_names' (the task's labels), 'multi_label_names', "
               "'class_counts' and 'train_occurrence_rates' of the task's labels.",
  }
  BUILDER_CONFIGS = [RafMlConfig(name='default', description='Official partition.')]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  RAF-ML is released for non-commercial research by Weihong Deng's group (BUPT,
  http://www.whdeng.cn/RAF/model2.html): e-mail the signed agreement to request it.
  Unpack it so that the manual dir holds:

    <manual_dir>/distribution.txt        lines "<name> s_surprise s_fear s_disgust
                                          s_happiness s_sadness s_anger" (e.g. 0001.jpg ...)
    <manual_dir>/partition_label.txt     lines "<name> <p>", p = 0 / train or 1 / test
    <manual_dir>/multilabel.txt          optional: lines "<name> b1 .. b6" of 0/1 labels
    <manual_dir>/Image/aligned/<stem>_aligned.jpg   (e.g. 0001_aligned.jpg)

  Without multilabel.txt, labels are the distribution scores, normalised to sum 1,
  above RafMlConfig.distribution_threshold (default 1/6).
  """

  def _homepage(self) -> str:
    return 'http://www.whdeng.cn/RAF/model2.html'

  def _static_metadata(self) -> dict[str, Any]:
    return {
        'task': 'expression_multi',
        'has_expression': False,
        'has_expression_multi': True,
        'has_va': False,
        'has_landmarks': False,
        'has_subject': False,
        'image_size': self._image_size(),
        'distribution_threshold': float(self.builder_config.distribution_threshold),
        'validation_fraction': float(self.builder_config.validation_fraction),
    }

  def _read_records(self, manual_dir: epath.Path, skips: base.SkipCounter):
    del skips  # RAF-ML has no rows known to need skipping.
    dist_path = manual_dir / 'distribution.txt'
    part_path = manual_dir / 'partition_label.txt'
    scores = {}
    for line_no, name, values in _table(dist_path, 'RAF-ML emotion distribution', 6):
      s = np.array([base.parse_float(v, dist_path, line_no, 'an emotion score') for v in values])
      if (s < 0).any() or s.sum() <= 0:
        raise ValueError(f'{dist_path}, line {line_no}: expected non-negative scores with a '
                         f'positive sum, got {values}.')
      scores[name] = (line_no, s)
    multi_path = manual_dir / 'multilabel.txt'
    multi = {}
    if multi_path.exists():
      for line_no, name, values in _table(multi_path, 'RAF-ML 0/1 multi-labels', 6):
        if any(v not in ('0', '1') for v in values):
          raise ValueError(f'{multi_path}, line {line_no}: expected six 0/1 labels, got {values}.')
        multi[name] = tuple(float(v) for v in values)
    self.info.metadata['label_source'] = (
        'multilabel.txt' if multi_path.exists() else
        f'distribution.txt normalised > {self.builder_config.distribution_threshold}')
    splits = {'train': [], 'test': []}
    for line_no, name, values in _table(part_path, 'RAF-ML partition', 1):
      token = values[0].lower()
      if token not in ('0', '1', 'train', 'test'):
        raise ValueError(f'{part_path}, line {line_no}: expected partition 0/train or 1/test, '
                         f'got {values[0]!r}.')
      if name not in scores:
        raise ValueError(f'{part_path}, line {line_no}: image {name!r} has no row in {dist_path}.')
      image = _check_image(manual_dir, name, part_path, line_no)
      s = scores[name][1]
      norm = s / s.sum()
      if multi:
        if name not in multi:
          raise ValueError(f'{part_path}, line {line_no}: image {name!r} has no row in '
                           f'{multi_path}.')
        y = multi[name]
      else:
        y = tuple(float(v) for v in norm > self.builder_config.distribution_threshold)
      split = 'train' if token in ('0', 'train') else 'test'
      splits[split].append(base.ExpressionRecord(
          key=name, image_path=str(image), file_name=str(image.relative_to(manual_dir)),
          expression_multi=y, expression_scores=tuple(float(v) for v in norm)))
    train, validation = base.carve_validation(
        splits['train'], lambda r: r.key, float(self.builder_config.validation_fraction))
    return {'train': train, 'validation': validation, 'test': splits['test']}


@dataclasses.dataclass(eq=False)
class RafDbConfig(tfds.core.BuilderConfig):
  """RAF-DB options.

  Attributes:
    subset: 'basic' (7 classes) or 'compound' (11 classes -> 6-dim multi-labels).
    image_size: stored side (100 = the distributed aligned size).
    validation_fraction: fraction of training images held out as ``validation``.
  """

  subset: str = 'basic'
  image_size: int = 100
  validation_fraction: float = 0.1


class RafDb(base.ExpressionBuilder):
  """RAF-DB (Li et al. 2017): basic (7 classes) and compound (11 -> 6-dim multi-label)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': "Metadata: 'label_names' (the task's labels), 'multi_label_names', "
               "'class_counts' and 'train_occurrence_rates' of the task's labels.",
  }
  BUILDER_CONFIGS = [
      RafDbConfig(name='basic', subset='basic', description='7 basic classes.'),
      RafDbConfig(name='compound', subset='compound',
                  description='11 compound classes as 6-dim multi-labels (SVML-RGCN).'),
  ]
  DEFAULT_CONFIG_NAME = 'basic'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  RAF-DB is released for non-commercial research by Weihong Deng's group (BUPT,
  http://www.whdeng.cn/RAF/model1.html): e-mail the signed agreement to request it.
  Unpack its basic/ and compound/ folders into the manual dir as distributed:

    <manual_dir>/basic/EmoLabel/list_patition_label.txt      "train_00001.jpg 5" (codes 1-7)
    <manual_dir>/basic/Image/aligned/train_00001_aligned.jpg
    <manual_dir>/compound/EmoLabel/list_patition_label.txt   "train_0001.jpg 4" (codes 1-11)
    <manual_dir>/compound/Image/aligned/train_0001_aligned.jpg

  (the file name list_patition_label.txt is spelled as distributed). The train_/test_
  name prefix is the official partition.
  """

  def _homepage(self) -> str:
    return 'http://www.whdeng.cn/RAF/model1.html'

  def _subset(self) -> str:
    subset = self.builder_config.subset
    if subset not in ('basic', 'compound'):
      raise ValueError(f"RafDbConfig.subset must be 'basic' or 'compound'; got {subset!r}.")
    return subset

  def _static_metadata(self) -> dict[str, Any]:
    basic = self._subset() == 'basic'
    meta = {
        'task': 'expression' if basic else 'expression_multi',
        'has_expression': basic,
        'has_expression_multi': True,
        'has_va': False,
        'has_landmarks': False,
        'has_subject': False,
        'image_size': self._image_size(),
        'validation_fraction': float(self.builder_config.validation_fraction),
    }
    if basic:
      meta['class_names'] = list(labels.EXPRESSIONS_7)
      meta['raf_code_to_class'] = {str(k): v for k, v in RAF_BASIC_TO_EXPRESSION7.items()}
    else:
      meta['compound_classes'] = [name for name, _ in COMPOUND_CLASSES]
    return meta

  def _read_records(self, manual_dir: epath.Path, skips: base.SkipCounter):
    del skips  # RAF-DB has no rows known to need skipping.
    subset = self._subset()
    root = manual_dir / subset
    path = root / 'EmoLabel' / 'list_patition_label.txt'
    max_code = 7 if subset == 'basic' else len(COMPOUND_CLASSES)
    splits = {'train': [], 'test': []}
    for line_no, name, values in _table(path, f'the RAF-DB {subset} label list', 1):
      code = base.parse_int(values[0], path, line_no, f'an expression code 1-{max_code}')
      if not 1 <= code <= max_code:
        raise ValueError(f'{path}, line {line_no}: unknown RAF-DB {subset} code {code}; '
                         f'expected 1-{max_code}.')
      split = _split_of_name(name, path, line_no)
      image = _check_image(root, name, path, line_no)
      if subset == 'basic':
        multi = tuple(1.0 if i == code - 1 else 0.0 for i in range(6))  # zeros for neutral
        record = base.ExpressionRecord(
            key=name, image_path=str(image), file_name=str(image.relative_to(manual_dir)),
            expression=RAF_BASIC_TO_EXPRESSION7[code], expression_multi=multi)
      else:
        record = base.ExpressionRecord(
            key=name, image_path=str(image), file_name=str(image.relative_to(manual_dir)),
            expression_multi=compound_multi_label(code))
      splits[split].append(record)
    train, validation = base.carve_validation(
        splits['train'], lambda r: r.key, float(self.builder_config.validation_fraction))
    return {'train': train, 'validation': validation, 'test': splits['test']}

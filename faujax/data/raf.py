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

Reading rules (the text rules of ``expression_builder_base``): each non-blank line is
"<image name> <value> ..." separated by whitespace (blank lines are ignored: every
row names its image). Image names are plain file names (no whitespace, no ``/`` or
``\\``, not starting with ``.``). An image may have one row per file; two names of one
aligned image (``0001.jpg`` and ``0001.png``) count as the same image. Every image of
``distribution.txt`` / ``multilabel.txt`` needs a ``partition_label.txt`` row and vice
versa. Any other row is an ``AnnotationError`` naming file:line (both lines for a
duplicate). RAF has no rows that its convention marks unlabelled: nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def _stem(name: str) -> str:
  return name.rsplit('.', 1)[0]


def _aligned_path(root: epath.Path, name: str) -> epath.Path:
  return root / 'Image' / 'aligned' / f'{_stem(name)}_aligned.jpg'


def _split_of_name(name: str, path, line_no: int) -> str:
  if name.startswith('train_'):
    return 'train'
  if name.startswith('test_'):
    return 'test'
  raise base.AnnotationError(path, line_no, f'image name {name!r} must start with train_ or '
                             'test_ (the official partition).')


def _table(path: epath.Path, what: str,
           num_values: int) -> Iterator[tuple[int, str, list[str]]]:
  """Rows (line number, name, value tokens) of a whitespace-separated 'name v1 .. vn' file,
  in file order (a generator: the caller's checks of a row run before the next is read, so
  the first fault in the file is the one reported).

  Raises:
    ValueError: when the file does not exist.
    base.AnnotationError: for a wrong field count, a name that is not a plain file name,
      or a second row of an image (naming both lines).
  """
  first_of: dict[str, tuple[int, str]] = {}
  for line_no, line in base.read_text_lines(path, what, blank='skip'):
    tokens = line.split()
    if len(tokens) != 1 + num_values:
      hint = ' (image names cannot contain whitespace)' if len(tokens) > 1 + num_values else ''
      raise base.AnnotationError(path, line_no, f'expected "<image name>" and {num_values} '
                                 f'value(s) ({what}), got {len(tokens)} field(s){hint}.')
    name = tokens[0]
    if '/' in name or '\\' in name or name.startswith('.') or not _stem(name):
      raise base.AnnotationError(path, line_no, f'image name {name!r} must be a plain file '
                                 'name such as 0001.jpg (no path, not starting with ".").')
    first = first_of.setdefault(_stem(name), (line_no, name))
    if first[0] != line_no:
      same = '' if first[1] == name else f' (as {first[1]!r}: the same aligned image)'
      raise base.AnnotationError(path, line_no, f'image {name!r} already has a row at line '
                                 f'{first[0]}{same}; each image may have one.')
    yield line_no, name, tokens[1:]


def _check_image(root: epath.Path, name: str, path, line_no: int) -> epath.Path:
  image = _aligned_path(root, name)
  if not base.is_file(image):
    raise base.AnnotationError(path, line_no, f'aligned image {image} does not exist; expected '
                               '<dir>/Image/aligned/<stem>_aligned.jpg.')
  return image


def read_raf_ml(manual_dir: epath.Path, threshold: float,
                ) -> tuple[dict[str, list[base.ExpressionRecord]], str]:
  """Parses a RAF-ML manual dir into ({'train', 'test'}: records, label source).

  Labels come from ``multilabel.txt`` when it exists, else from the distribution
  normalised to sum 1, thresholded at ``> threshold`` (see the module docstring).

  Raises:
    ValueError: for a missing file.
    base.AnnotationError: naming file:line of a malformed, duplicated or unmatched row.
  """
  dist_path = manual_dir / 'distribution.txt'
  part_path = manual_dir / 'partition_label.txt'
  scores = {}
  for line_no, name, values in _table(dist_path, 'RAF-ML emotion distribution', 6):
    s = np.array([base.parse_float(v, dist_path, line_no, 'an emotion score') for v in values])
    total = sum(s.tolist())  # Python floats: an overflow is inf, without a warning
    if (s < 0).any() or not 0 < total < float('inf'):
      raise base.AnnotationError(dist_path, line_no, 'expected non-negative scores with a '
                                 f'positive sum, got {values}.')
    scores[name] = (line_no, s, total)
  multi_path = manual_dir / 'multilabel.txt'
  multi = {}
  has_multi = base.is_file(multi_path)
  if has_multi:
    for line_no, name, values in _table(multi_path, 'RAF-ML 0/1 multi-labels', 6):
      if any(v not in ('0', '1') for v in values):
        raise base.AnnotationError(multi_path, line_no, f'expected six 0/1 labels, got {values}.')
      multi[name] = (line_no, tuple(float(v) for v in values))
  label_source = ('multilabel.txt' if has_multi else
                  f'distribution.txt normalised > {threshold}')
  splits = {'train': [], 'test': []}
  partitioned = set()
  for line_no, name, values in _table(part_path, 'RAF-ML partition', 1):
    token = values[0].lower()
    if token not in ('0', '1', 'train', 'test'):
      raise base.AnnotationError(part_path, line_no, 'expected partition 0/train or 1/test, '
                                 f'got {values[0]!r}.')
    if name not in scores:
      raise base.AnnotationError(part_path, line_no, f'image {name!r} has no row in {dist_path}.')
    if has_multi and name not in multi:
      raise base.AnnotationError(part_path, line_no, f'image {name!r} has no row in '
                                 f'{multi_path}.')
    image = _check_image(manual_dir, name, part_path, line_no)
    partitioned.add(name)
    s, total = scores[name][1:]
    norm = s / total
    if has_multi:
      y = multi[name][1]
    else:
      y = tuple(float(v) for v in norm > threshold)
    split = 'train' if token in ('0', 'train') else 'test'
    splits[split].append(base.ExpressionRecord(
        key=name, image_path=str(image), file_name=str(image.relative_to(manual_dir)),
        expression_multi=y, expression_scores=tuple(float(v) for v in norm),
        source=(str(part_path), line_no)))
  for table_path, table in ((dist_path, scores), (multi_path, multi)):
    unmatched = [(entry[0], name) for name, entry in table.items() if name not in partitioned]
    if unmatched:
      line_no, name = min(unmatched)
      raise base.AnnotationError(
          table_path, line_no, f'image {name!r} has no row in {part_path} ({len(unmatched)} '
          'such row(s)); every labelled image needs a partition.')
  return splits, label_source


def read_raf_db(manual_dir: epath.Path, subset: str) -> dict[str, list[base.ExpressionRecord]]:
  """Parses ``<manual_dir>/<subset>/EmoLabel/list_patition_label.txt`` into {'train', 'test'}.

  Raises:
    ValueError: for a missing file or an unknown subset.
    base.AnnotationError: naming file:line of a malformed or duplicated row, an unknown code,
      a name outside the official partition or a missing aligned image.
  """
  if subset not in ('basic', 'compound'):
    raise ValueError(f"RAF-DB subset must be 'basic' or 'compound'; got {subset!r}.")
  root = manual_dir / subset
  path = root / 'EmoLabel' / 'list_patition_label.txt'
  max_code = 7 if subset == 'basic' else len(COMPOUND_CLASSES)
  splits = {'train': [], 'test': []}
  for line_no, name, values in _table(path, f'the RAF-DB {subset} label list', 1):
    code = base.parse_int(values[0], path, line_no, f'an expression code 1-{max_code}')
    if not 1 <= code <= max_code:
      raise base.AnnotationError(path, line_no, f'unknown RAF-DB {subset} code {code}; '
                                 f'expected 1-{max_code}.')
    split = _split_of_name(name, path, line_no)
    image = _check_image(root, name, path, line_no)
    common = dict(key=name, image_path=str(image), file_name=str(image.relative_to(manual_dir)),
                  source=(str(path), line_no))
    if subset == 'basic':
      multi = tuple(1.0 if i == code - 1 else 0.0 for i in range(6))  # zeros for neutral
      record = base.ExpressionRecord(
          expression=RAF_BASIC_TO_EXPRESSION7[code], expression_multi=multi, **common)
    else:
      record = base.ExpressionRecord(expression_multi=compound_multi_label(code), **common)
    splits[split].append(record)
  return splits


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
    splits, label_source = read_raf_ml(
        manual_dir, float(self.builder_config.distribution_threshold))
    self.info.metadata['label_source'] = label_source
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
    splits = read_raf_db(manual_dir, self._subset())
    train, validation = base.carve_validation(
        splits['train'], lambda r: r.key, float(self.builder_config.validation_fraction))
    return {'train': train, 'validation': validation, 'test': splits['test']}

"""Shared base of the facial-expression dataset builders (AffectNet, Aff-Wild2, RAF, JAFFE).

Every expression builder emits the same feature dictionary so that one input
pipeline serves all of them (Emotion-GCN, sec. IV-A datasets; SVML-RGCN, sec. 4.1
datasets):

  image             uint8 (S, S, 3), JPEG-encoded; the aligned face.
  landmarks         float32 (68, 2); (x, y) in the stored image's pixels (pixel
                    centres at integer coordinates, the ``faujax.geometry``
                    convention). Zeros where the
                    dataset has no 68-point landmarks (metadata ``has_landmarks``).
  expression        int64; class index in ``faujax.labels.EXPRESSIONS_7`` order
                    (``EXPRESSIONS_8`` for AffectNet's 8-class config); -1 unknown.
  expression_multi  float32 (6,); 0/1 multi-label in ``faujax.labels.BASIC_6`` order.
  expression_scores float32 (6,); the per-emotion scores the multi-label was
                    derived from (RAF-ML distribution, JAFFE mean ratings), else zeros.
  valence, arousal  float32 scalars in [-1, 1]; ``va_mask`` float32 1 / 0.
  subject           int64; subject index (-1 unknown).
  file_name         text; path of the source image relative to the manual dir.
  au, au_mask, au_intensity
                    float32 (0,); empty, so that ``faujax.data.input_pipeline``'s
                    feature selection (shared with the AU builders) applies unchanged.

Metadata (``builder.info.metadata``; ``faujax.data.input_pipeline`` reads the first four):
  * ``task``: 'expression' (single-label classes) or 'expression_multi' (multi-label).
  * ``label_names``: the task's labels in order: ``class_names`` (e.g. 8 names with contempt
    for AffectNet's 8class) for 'expression', ``multi_label_names`` for 'expression_multi'.
  * ``multi_label_names``: the columns of ``expression_multi`` (BASIC_6) where the dataset
    annotates it (``has_expression_multi``), else [].
  * ``class_counts``: training examples of each ``label_names`` entry (the class, or a
    positive multi-label); ``train_occurrence_rates``: the fraction of labelled training
    examples in which each label is positive (``faujax.statistics.occurrence_rates``; for
    'expression' the class frequencies). Both are lists (official partitions: the same for
    every fold) or ``{'fold<k>': list}`` where the training split depends on the fold (JAFFE).
  * ``class_names``, ``split_class_counts`` (per split), ``label_counts`` /
    ``split_label_counts`` (BASIC_6 positives), ``split_va_counts``, ``num_examples``,
    ``skipped`` and the builder's own keys.

Builders read their annotation files into ``ExpressionRecord`` lists first
(validating every line and counting the skips the official distributions are
known to need), compute the training-split label frequencies, store them with the
skip counts in the dataset's ``MetadataDict``, and only then encode the images.

Annotation files (the reading rules every expression builder shares):
  * Text follows ``faujax.data.text_files`` (the reader of every dataset text file):
    UTF-8 with at most one leading byte-order mark, LF or CRLF line ends; bytes that are
    not UTF-8 (named by their column), a carriage return that ends no line, control
    characters other than tab, U+FEFF inside the file and U+2028 / U+2029 are errors;
    spaces and tabs around a line are ignored; an empty file is an error. Blank lines
    at the end are ignored; elsewhere they are errors where line order has meaning
    (Aff-Wild2) and skipped where every row names its image (AffectNet, RAF, JAFFE).
  * Numbers are plain ASCII decimals (``-0.25``, ``1e-3``); ``nan``, ``inf``, values
    that overflow to infinity (``1e309``), ``1_000`` and non-ASCII digits are errors.
  * Every error about a file's content is an ``AnnotationError`` (a ValueError) whose
    message starts ``<file>, line <n>: `` and says what was expected; duplicates and
    contradictions name both places. They are raised while reading, before any
    image is encoded (``check_unique_records`` guards keys and images again).
  * Rows that the dataset's own convention marks unlabelled are counted skips
    (``SkipCounter``): stored in the metadata under ``skipped`` and printed, with
    the first few places, at the end of the build.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from faujax import labels
from faujax import statistics
from faujax.data import text_files

NUM_LANDMARKS = 68
NUM_BASIC = len(labels.BASIC_6)
_EMPTY = np.zeros((0,), np.float32)


@dataclasses.dataclass(frozen=True, slots=True)
class ExpressionRecord:
  """One example before its image is read.

  Attributes:
    key: unique example key within the dataset.
    image_path: absolute path of the source image.
    file_name: path of the image relative to the manual dir (stored as a feature).
    expression: class index or -1.
    expression_multi: (6,) 0/1 labels in BASIC_6 order or None (-> zeros).
    expression_scores: (6,) scores or None (-> zeros).
    valence: valence in [-1, 1] (0 when ``va_mask`` is 0).
    arousal: arousal in [-1, 1] (0 when ``va_mask`` is 0).
    va_mask: 1.0 where valence/arousal are annotated, else 0.0.
    subject: subject index or -1.
    landmarks: (68, 2) landmarks in source-image pixels, or None.
    box: builder-specific crop box (x, y, width, height) in source pixels, or None.
    source: (annotation file, line) the record was read from, for error messages.
  """

  key: str
  image_path: str
  file_name: str
  expression: int = -1
  expression_multi: tuple[float, ...] | None = None
  expression_scores: tuple[float, ...] | None = None
  valence: float = 0.0
  arousal: float = 0.0
  va_mask: float = 0.0
  subject: int = -1
  landmarks: np.ndarray | None = None
  box: tuple[float, float, float, float] | None = None
  source: tuple[str, int] | None = None


class AnnotationError(ValueError):
  """A malformed annotation file; the message reads '<path>, line <n>: <what was expected>'.

  Attributes:
    path: the annotation file.
    line: 1-based line number in that file.
    detail: the message without the location.
  """

  def __init__(self, path: Any, line: int, detail: str):
    self.path = str(path)
    self.line = int(line)
    self.detail = detail
    super().__init__(f'{self.path}, line {self.line}: {detail}')

  def __reduce__(self):
    return type(self), (self.path, self.line, self.detail)


def where(source: tuple[str, int] | None) -> str:
  """'<path>, line <n>' of a record source (or 'unknown location')."""
  return 'unknown location' if source is None else f'{source[0]}, line {source[1]}'


class SkipCounter:
  """Counts examples skipped for a documented reason (e.g. AffectNet code >= 8).

  Keeps the first few offending locations per reason so that the log says where.
  """

  def __init__(self, max_examples: int = 5):
    self._counts: collections.Counter[str] = collections.Counter()
    self._where: dict[str, list[str]] = collections.defaultdict(list)
    self._max_examples = max_examples

  def add(self, reason: str, where: str, n: int = 1) -> None:
    self._counts[reason] += n
    if len(self._where[reason]) < self._max_examples:
      self._where[reason].append(where)

  @property
  def counts(self) -> dict[str, int]:
    return dict(sorted(self._counts.items()))

  def summary(self, dataset: str) -> list[str]:
    """One line per reason: '<dataset>: skipped <n> example(s): <reason> (e.g. <where>).'."""
    if not self._counts:
      return [f'{dataset}: no examples skipped.']
    return [f'{dataset}: skipped {count} example(s): {reason} '
            f'(e.g. {"; ".join(self._where[reason])}).'
            for reason, count in sorted(self._counts.items())]

  def log(self, dataset: str) -> None:
    for line in self.summary(dataset):
      (logging.warning if self._counts else logging.info)('%s', line)


def stable_unit_hash(key: str) -> float:
  """A deterministic number in [0, 1) from a string (SHA-256; independent of PYTHONHASHSEED)."""
  digest = hashlib.sha256(key.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64


def carve_validation(
    records: Sequence[ExpressionRecord],
    group_of: Callable[[ExpressionRecord], str],
    fraction: float,
) -> tuple[list[ExpressionRecord], list[ExpressionRecord]]:
  """Splits official training records into (train, validation) by a stable hash of a group.

  All records of a group (an image name, a video, a subject) land on the same side;
  a group goes to validation when ``stable_unit_hash(group) < fraction``.

  Args:
    records: the official training records.
    group_of: maps a record to its group key.
    fraction: expected fraction of groups held out, in [0, 1).

  Returns:
    (train, validation) record lists, each in input order.
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'validation_fraction must be in [0, 1); got {fraction}.')
  train, validation = [], []
  for record in records:
    (validation if stable_unit_hash(group_of(record)) < fraction else train).append(record)
  return train, validation


def class_counts(records: Sequence[ExpressionRecord], num_classes: int) -> list[int]:
  """Number of records per expression class (records with expression -1 are not counted)."""
  y, mask = task_label_matrix(records, 'expression', num_classes)
  return [int(c) for c in statistics.occurrence_counts(y, mask)[0]]


def label_counts(records: Sequence[ExpressionRecord]) -> list[int]:
  """Number of positive records per BASIC_6 label (multi-label frequencies)."""
  y, mask = task_label_matrix(records, 'expression_multi', NUM_BASIC)
  return [int(c) for c in statistics.occurrence_counts(y, mask)[0]]


def task_label_matrix(records: Sequence[ExpressionRecord], task: str,
                      num_labels: int) -> tuple[np.ndarray, np.ndarray]:
  """(labels, mask), both float64 (n, num_labels), of the task's labels of ``records``.

  'expression': one-hot classes, mask 0 on the rows of records without a class (-1);
  'expression_multi': the 0/1 multi-labels, mask 0 on records without them.
  """
  y = np.zeros((len(records), num_labels), np.float64)
  known = np.zeros((len(records), 1), np.float64)
  for i, record in enumerate(records):
    if task == 'expression' and record.expression >= 0:
      y[i, record.expression] = 1.0
      known[i] = 1.0
    elif task == 'expression_multi' and record.expression_multi is not None:
      y[i] = np.asarray(record.expression_multi) > 0.5
      known[i] = 1.0
  return y, np.broadcast_to(known, y.shape)


def load_rgb(path: str | epath.Path) -> np.ndarray:
  """Reads an image file as uint8 (H, W, 3) RGB; a ValueError names the file if unreadable."""
  path = epath.Path(path)
  try:
    with path.open('rb') as f:
      image = Image.open(f)
      image.load()
  except FileNotFoundError:
    raise ValueError(f'Image file {path} does not exist.') from None
  except (OSError, Image.DecompressionBombError) as e:
    raise ValueError(f'Image file {path} could not be decoded as an image: {e}') from None
  return np.asarray(image.convert('RGB'), dtype=np.uint8)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of a uint8 (H, W, 3) image to (size, size, 3); no-op when already so."""
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def expression_features(image_size: int) -> tfds.features.FeaturesDict:
  """The shared feature dictionary (see the module docstring)."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(image_size, image_size, 3), encoding_format='jpeg'),
      'landmarks': tfds.features.Tensor(shape=(NUM_LANDMARKS, 2), dtype=np.float32),
      'expression': tfds.features.Scalar(dtype=np.int64),
      'expression_multi': tfds.features.Tensor(shape=(NUM_BASIC,), dtype=np.float32),
      'expression_scores': tfds.features.Tensor(shape=(NUM_BASIC,), dtype=np.float32),
      'valence': tfds.features.Scalar(dtype=np.float32),
      'arousal': tfds.features.Scalar(dtype=np.float32),
      'va_mask': tfds.features.Scalar(dtype=np.float32),
      'subject': tfds.features.Scalar(dtype=np.int64),
      'file_name': tfds.features.Text(),
      'au': tfds.features.Tensor(shape=(0,), dtype=np.float32),
      'au_mask': tfds.features.Tensor(shape=(0,), dtype=np.float32),
      'au_intensity': tfds.features.Tensor(shape=(0,), dtype=np.float32),
  })


class ExpressionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: subclasses implement ``_static_metadata`` and ``_read_records``.

  Subclass builder configs must have ``image_size: int`` and may have
  ``validation_fraction: float``.
  """

  @abc.abstractmethod
  def _static_metadata(self) -> dict[str, Any]:
    """Metadata known before reading files: class_names, label_names, has_* flags."""

  @abc.abstractmethod
  def _read_records(
      self, manual_dir: epath.Path, skips: SkipCounter) -> dict[str, list[ExpressionRecord]]:
    """Parses the manual dir into {split name: records}; raises ValueError on bad input."""

  def _image_size(self) -> int:
    return int(self.builder_config.image_size)

  def _label_metadata(self) -> dict[str, Any]:
    """'label_names' and 'multi_label_names' from the static metadata (see the module docstring)."""
    static = self._static_metadata()
    task = static['task']
    if task not in ('expression', 'expression_multi'):
      raise ValueError(f"{type(self).__name__}: metadata task must be 'expression' or "
                       f"'expression_multi'; got {task!r}.")
    multi = list(labels.BASIC_6) if static.get('has_expression_multi') else []
    names = list(static['class_names']) if task == 'expression' else multi
    if not names:
      raise ValueError(f'{type(self).__name__}: task {task!r} without labels (class_names / '
                       'has_expression_multi).')
    return {'label_names': names, 'multi_label_names': multi}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(type(self).__doc__ or '').strip(),
        features=expression_features(self._image_size()),
        metadata=tfds.core.MetadataDict({**self._static_metadata(), **self._label_metadata()}),
        homepage=self._homepage(),
    )

  def _homepage(self) -> str | None:
    return None

  def download_and_prepare(self, **kwargs):
    """tfds' download_and_prepare; after a build, prints the example and skip counts."""
    self._build_summary = None
    super().download_and_prepare(**kwargs)
    if self._build_summary is None:
      return  # already built: nothing was read
    skips, sizes = self._build_summary
    self._build_summary = None
    lines = [f'{self.name}: built {sum(sizes.values())} example(s) ('
             + ', '.join(f'{k} {v}' for k, v in sizes.items()) + ').', *skips.summary(self.name)]
    for line in lines:
      logging.info('%s', line)
    print('\n'.join(lines), flush=True)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    if not manual_dir.exists():
      raise ValueError(
          f'Manual dir {manual_dir} for {self.name} does not exist; see '
          f'{type(self).__name__}.MANUAL_DOWNLOAD_INSTRUCTIONS.')
    skips = SkipCounter()
    splits = self._read_records(manual_dir, skips)
    empty = [name for name, records in splits.items() if not records and name != 'validation']
    if empty:
      raise ValueError(
          f'{self.name}: no usable examples for split(s) {empty} in {manual_dir}; expected the '
          f'layout of {type(self).__name__}.MANUAL_DOWNLOAD_INSTRUCTIONS (skipped: {skips.counts}).')
    check_unique_records(splits)
    skips.log(self.name)
    self._build_summary = (skips, {name: len(records) for name, records in splits.items()})
    self.info.metadata.update(self._dynamic_metadata(splits, skips))
    # tensorflow-datasets cannot write an empty split: an empty validation carve
    # (validation_fraction 0) is left out.
    return {name: self._generate_examples(records)
            for name, records in splits.items() if records}

  def _train_split_name(self, splits: Mapping[str, Sequence[ExpressionRecord]]) -> str | None:
    return 'train' if 'train' in splits else None

  def _fold_train_splits(
      self, splits: Mapping[str, Sequence[ExpressionRecord]]) -> dict[int, list[str]] | None:
    """{fold: its training splits} where the training data depends on the fold, else None."""
    del splits
    return None

  def _training_statistics(self, records: Sequence[ExpressionRecord]) -> tuple[list, list]:
    """(class_counts, train_occurrence_rates) of the task's labels over training records."""
    meta = self._label_metadata()
    y, mask = task_label_matrix(records, self._static_metadata()['task'],
                                len(meta['label_names']))
    counts = statistics.occurrence_counts(y, mask)[0]
    rates = statistics.occurrence_rates(y, mask)
    return [int(c) for c in counts], [float(r) for r in rates]

  def _dynamic_metadata(
      self, splits: Mapping[str, Sequence[ExpressionRecord]], skips: SkipCounter) -> dict[str, Any]:
    """Split sizes, per-split class / label counts, training frequencies, skip counts."""
    meta: dict[str, Any] = {
        'skipped': skips.counts,
        'num_examples': {name: len(records) for name, records in splits.items()},
    }
    train = self._train_split_name(splits)
    static = self._static_metadata()
    if static.get('has_expression'):
      n = len(static['class_names'])
      meta['split_class_counts'] = {name: class_counts(r, n) for name, r in splits.items()}
    if static.get('has_expression_multi'):
      meta['split_label_counts'] = {name: label_counts(r) for name, r in splits.items()}
      if train is not None:
        meta['label_counts'] = meta['split_label_counts'][train]
    if static.get('has_va'):
      meta['split_va_counts'] = {
          name: int(sum(r.va_mask for r in records)) for name, records in splits.items()}
    # The task's training statistics (read by faujax.data.input_pipeline).
    by_fold = self._fold_train_splits(splits)
    if by_fold is not None:
      stats = {k: self._training_statistics([r for name in names for r in splits[name]])
               for k, names in sorted(by_fold.items())}
      meta['class_counts'] = {f'fold{k}': c for k, (c, _) in stats.items()}
      meta['train_occurrence_rates'] = {f'fold{k}': r for k, (_, r) in stats.items()}
    elif train is not None:
      meta['class_counts'], meta['train_occurrence_rates'] = self._training_statistics(
          splits[train])
    return meta

  def _load_face(self, record: ExpressionRecord) -> tuple[np.ndarray, np.ndarray]:
    """Returns (image uint8 (S, S, 3), landmarks float32 (68, 2)); default: resize only."""
    image = load_rgb(record.image_path)
    size = self._image_size()
    landmarks = np.zeros((NUM_LANDMARKS, 2), np.float32)
    if record.landmarks is not None:
      h, w = image.shape[:2]
      scale = np.array([size / w, size / h])
      landmarks = ((record.landmarks + 0.5) * scale - 0.5).astype(np.float32)
    return resize_square(image, size), landmarks

  def _generate_examples(self, records: Sequence[ExpressionRecord]) -> Iterator[tuple[str, dict]]:
    zeros6 = np.zeros((NUM_BASIC,), np.float32)
    for record in records:
      try:
        image, landmarks = self._load_face(record)
      except ValueError as e:
        if record.source is None:
          raise
        raise ValueError(f'{where(record.source)} ({record.file_name}): {e}') from None
      multi = zeros6 if record.expression_multi is None else np.asarray(
          record.expression_multi, np.float32)
      scores = zeros6 if record.expression_scores is None else np.asarray(
          record.expression_scores, np.float32)
      yield record.key, {
          'image': image,
          'landmarks': landmarks,
          'expression': record.expression,
          'expression_multi': multi,
          'expression_scores': scores,
          'valence': np.float32(record.valence),
          'arousal': np.float32(record.arousal),
          'va_mask': np.float32(record.va_mask),
          'subject': record.subject,
          'file_name': record.file_name,
          'au': _EMPTY,
          'au_mask': _EMPTY,
          'au_intensity': _EMPTY,
      }


def check_unique_records(splits: Mapping[str, Sequence[ExpressionRecord]]) -> None:
  """Raises ValueError naming both places if two records share a key in a split or an image.

  tensorflow-datasets would otherwise fail only after encoding every image ('Two
  examples share the same hashed key!'), or silently store one image twice (in two
  splits, a train / test leak). The builders detect duplicates while parsing; this
  guards the records they return.
  """
  images: dict[str, tuple[str, ExpressionRecord]] = {}
  for split, records in splits.items():
    keys: dict[str, ExpressionRecord] = {}
    for record in records:
      first = keys.setdefault(record.key, record)
      if first is not record:
        raise ValueError(f'{where(record.source)}: example key {record.key!r} of split {split!r} '
                         f'is already used by {where(first.source)}; each example needs its own.')
      first_split, first = images.setdefault(record.image_path, (split, record))
      if first is not record:
        raise ValueError(f'{where(record.source)}: image {record.file_name} ({split}) is already '
                         f'used by {where(first.source)} ({first_split}); an image may be '
                         'listed once.')


_INT = re.compile(r'[+-]?[0-9]+')
_FLOAT = re.compile(r'[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?')


def is_file(path: epath.Path) -> bool:
  """path.is_file(), False (not an exception) for names the file system cannot hold."""
  try:
    return path.is_file()
  except (OSError, ValueError):
    return False


def _annotation_error(e: text_files.TextFileError) -> ValueError:
  """A text-rule fault as an ``AnnotationError``; a missing or unreadable file stays a
  ValueError naming the file and what it should hold."""
  return e if e.line is None else AnnotationError(e.path, e.line, e.detail)


def read_text_lines(path: epath.Path, what: str, blank: str = 'end') -> list[tuple[int, str]]:
  """[(line number, text)] of an annotation file's content lines (``text_files.read_lines``;
  ``blank``: 'end' where line order has meaning, 'skip' where every row names its subject).

  Raises:
    ValueError: naming the file and ``what`` when it is missing or unreadable.
    AnnotationError: a text fault, a refused blank line or no content (file, line).
  """
  return text_files.read_lines(path, what, blank=blank, error=_annotation_error)


def read_csv_rows(path: epath.Path, what: str, blank: str = 'end') -> list[tuple[int, list[str]]]:
  """[(line number, cells)] of a csv annotation file (``text_files.read_csv_rows``); errors as
  ``read_text_lines``, and a row that is not valid csv."""
  return text_files.read_csv_rows(path, what, blank=blank, error=_annotation_error)


def parse_float(token: str, path: epath.Path | str, line_no: int, what: str) -> float:
  """A finite float from a plain ASCII decimal token, or an AnnotationError naming file, line
  and what was expected (``nan``, ``inf``, ``1e309``, ``1_0``, non-ASCII digits are errors)."""
  text = token.strip()
  if not _FLOAT.fullmatch(text):
    raise AnnotationError(path, line_no, f'expected {what} (a decimal number), got '
                          f'{token[:60]!r}.')
  value = float(text)
  if not np.isfinite(value):
    raise AnnotationError(path, line_no, f'expected {what} (a finite number), got {token!r} '
                          '(overflows to infinity).')
  return value


def parse_int(token: str, path: epath.Path | str, line_no: int, what: str) -> int:
  """int(token) of a plain ASCII integer token, or an AnnotationError naming file, line and
  what was expected (``3.0``, ``1_0`` and non-ASCII digits are errors)."""
  text = token.strip()
  if not _INT.fullmatch(text) or len(text) > 100:
    raise AnnotationError(path, line_no, f'expected {what}, got {token[:60]!r}.')
  return int(text)

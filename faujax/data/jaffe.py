"""JAFFE tensorflow-datasets builder (SVML-RGCN, sec. 4.1).

213 images of 10 Japanese female subjects with semantic ratings: the mean rating (1-5)
of each image for HAP SAD SUR ANG DIS FEA. SVML-RGCN thresholds the ratings at 3 into
6-dim multi-labels (``faujax.labels.BASIC_6`` order) and reports 5-fold
cross-validation. faujax makes the folds subject-exclusive: the 10 subjects, sorted
by code, are paired into five parts

  part1: KA KL   part2: KM KR   part3: MK NA   part4: NM TM   part5: UY YM

and fold k (1-5) tests on part k and trains on the other four (``fold_splits``).
Label c is positive iff rating_c >= ``threshold`` (default 3). Images are stored
whole (256 x 256 grey converted to RGB; JAFFE ships no landmarks).

Reading rules (``read_ratings``; the text rules of ``expression_builder_base``): the
first non-blank line is the header, naming each column once; every later non-blank
line is one row (blank lines are ignored: each row names its picture) with as many
whitespace-separated fields as the header, six ratings in [1, 5] and a picture id of
one of the ten subjects, each picture rated once. Anything else is an
``AnnotationError`` naming file:line. Counted skips (printed after the build): rated
pictures without an image and images without a rating.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from etils import epath
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import expression_builder_base as base

SUBJECTS: tuple[str, ...] = ('KA', 'KL', 'KM', 'KR', 'MK', 'NA', 'NM', 'TM', 'UY', 'YM')
NUM_FOLDS = 5
FOLDS: tuple[int, ...] = tuple(range(1, NUM_FOLDS + 1))
PARTS: dict[str, tuple[str, ...]] = {
    f'part{k + 1}': SUBJECTS[2 * k:2 * k + 2] for k in range(NUM_FOLDS)}
# Ratings column -> BASIC_6 name.
RATING_COLUMNS = {'SUR': 'surprise', 'FEA': 'fear', 'DIS': 'disgust', 'HAP': 'happy',
                  'SAD': 'sad', 'ANG': 'anger'}
_IMAGE_NAME = re.compile(r'([A-Z]{2})\.([A-Z]{2}[0-9]+)\.([0-9]+)\.tiff?')
_PIC_ID = re.compile(r'([A-Z]{2})-([A-Z]{2}[0-9]+)')


def fold_splits(fold: int) -> dict[str, str]:
  """tfds split strings of fold k (1-5): {'train': 'part..+part..', 'test': 'part<k>'}."""
  if not 1 <= fold <= NUM_FOLDS:
    raise ValueError(f'fold must be 1-{NUM_FOLDS}; got {fold}.')
  train = [p for p in PARTS if p != f'part{fold}']
  return {'train': '+'.join(train), 'test': f'part{fold}'}


def fold_label_counts(metadata: dict[str, Any], fold: int) -> list[int]:
  """BASIC_6 positive counts of fold k's training parts, from the stored metadata."""
  train = fold_splits(fold)['train'].split('+')
  per_part = metadata['split_label_counts']
  return [sum(per_part[p][i] for p in train) for i in range(len(labels.BASIC_6))]


def read_ratings(path: epath.Path) -> dict[str, tuple[int, tuple[float, ...]]]:
  """Parses the JAFFE semantic ratings table -> {pic id 'KA-AN1': (line, BASIC_6 ratings)}.

  The header row names the columns (``N HAP SAD SUR ANG DIS FEA PIC``, the first may be
  ``#``); each data row holds an index, six mean ratings in 1-5 and the picture id
  (see the module docstring for the rules).

  Raises:
    ValueError: when the file does not exist.
    base.AnnotationError: naming file:line of a bad header or row, an unknown subject, a
      rating outside [1, 5] or a picture rated twice (both lines).
  """
  (header_line, header_text), *rows = base.read_text_lines(
      path, 'a header N HAP SAD SUR ANG DIS FEA PIC, then one row per picture', blank='skip')
  header = _header_tokens(header_text)
  missing = [name for name in [*RATING_COLUMNS, 'PIC'] if name not in header]
  if missing:
    raise base.AnnotationError(path, header_line, 'expected a header with columns '
                               f'HAP SAD SUR ANG DIS FEA PIC, got {header_text[:80]!r}.')
  repeated = sorted({name for name in header if header.count(name) > 1})
  if repeated:
    raise base.AnnotationError(path, header_line, f'header repeats column(s) {repeated}.')
  cols = {name: header.index(name) for name in [*RATING_COLUMNS, 'PIC']}
  out = {}
  for line_no, line in rows:
    tokens = line.split()
    if len(tokens) != len(header):
      raise base.AnnotationError(path, line_no, f'expected {len(header)} fields '
                                 f'({" ".join(header)}), got {len(tokens)}.')
    pic = tokens[cols['PIC']]
    if not _PIC_ID.fullmatch(pic):
      raise base.AnnotationError(path, line_no,
                                 f'expected a picture id like KA-AN1, got {pic[:40]!r}.')
    if pic[:2] not in SUBJECTS:
      raise base.AnnotationError(path, line_no, f'unknown JAFFE subject {pic[:2]!r} in {pic}; '
                                 f'expected one of {" ".join(SUBJECTS)}.')
    by_name = {}
    for col, name in RATING_COLUMNS.items():
      value = base.parse_float(tokens[cols[col]], path, line_no, f'a {col} rating')
      if not 1.0 <= value <= 5.0:
        raise base.AnnotationError(path, line_no, f'{col} rating must be in [1, 5], got {value}.')
      by_name[name] = value
    if pic in out:
      raise base.AnnotationError(path, line_no, f'picture {pic} rated twice (first at line '
                                 f'{out[pic][0]}).')
    out[pic] = (line_no, tuple(by_name[name] for name in labels.BASIC_6))
  return out


def _header_tokens(line: str) -> list[str]:
  return line.replace('\ufeff', ' ').replace('#', ' # ').split()


@dataclasses.dataclass(eq=False)
class JaffeConfig(tfds.core.BuilderConfig):
  """JAFFE options.

  Attributes:
    threshold: a label is positive iff its mean rating >= threshold (3 in SVML-RGCN).
    image_size: stored side (256 = as distributed).
  """

  threshold: float = 3.0
  image_size: int = 256


class Jaffe(base.ExpressionBuilder):
  """JAFFE (Lyons et al. 1998): rated posed expressions as 6-dim multi-labels, 5 folds."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': "Metadata: 'label_names' (the task's labels), 'multi_label_names', "
               "'class_counts' and 'train_occurrence_rates' of the task's labels.",
  }
  BUILDER_CONFIGS = [JaffeConfig(name='threshold3', description='Ratings >= 3 (SVML-RGCN).')]
  FOLDS = FOLDS  # config.data.fold: 1-5 (faujax.data.input_pipeline).
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  JAFFE is distributed by Michael Lyons (https://zenodo.org/record/3451524, request
  access for non-commercial research). Unpack it so that

    <manual_dir>/jaffe/<SUBJECT>.<EXPR><n>.<index>.tiff     (e.g. KA.AN1.39.tiff; .tif too)
    <manual_dir>/jaffe/<ratings file>                        (any name)

  where the ratings file is the semantic-ratings text table of the distribution, whose
  header row reads "N HAP SAD SUR ANG DIS FEA PIC" (or "# HAP ...") and whose rows end
  with the picture id (KA-AN1 for KA.AN1.39.tiff). It is found by its header.
  """

  def _homepage(self) -> str:
    return 'https://zenodo.org/record/3451524'

  def _static_metadata(self) -> dict[str, Any]:
    return {
        'task': 'expression_multi',
        'has_expression': False,
        'has_expression_multi': True,
        'has_va': False,
        'has_landmarks': False,
        'has_subject': True,
        'subjects': list(SUBJECTS),
        'parts': {p: list(s) for p, s in PARTS.items()},
        'folds': {str(k): fold_splits(k) for k in range(1, NUM_FOLDS + 1)},
        'threshold': float(self.builder_config.threshold),
        'image_size': self._image_size(),
    }

  @staticmethod
  def fold_splits(fold: int) -> dict[str, str]:
    """The tfds splits of fold k's logical splits (the module's ``fold_splits``), read by
    ``faujax.data.builders.split_parts``."""
    return fold_splits(fold)

  def _train_split_name(self, splits) -> None:
    return None  # Folds: use fold_label_counts(metadata, k).

  def _fold_train_splits(self, splits) -> dict[int, list[str]]:
    """Fold k trains on the four other parts (``fold_splits``)."""
    del splits
    return {k: fold_splits(k)['train'].split('+') for k in FOLDS}

  def _read_records(self, manual_dir: epath.Path, skips: base.SkipCounter):
    folder = manual_dir / 'jaffe'
    if not folder.is_dir():
      raise ValueError(f'Expected the JAFFE images and ratings table in {folder}/.')
    files = sorted(folder.iterdir())
    tables = []
    images = {}
    for f in files:
      m = _IMAGE_NAME.fullmatch(f.name)
      if m:
        pic = f'{m.group(1)}-{m.group(2)}'
        if pic in images:
          raise ValueError(f'{folder}: images {images[pic].name} and {f.name} are both {pic}.')
        images[pic] = f
      elif f.is_file() and f.suffix.lower() not in ('.tif', '.tiff'):
        # Detection only: read_ratings then reads the table strictly.
        head = f.read_bytes()[:4096].decode('utf-8', errors='replace').split('\n')
        first = next((line for line in head if line.strip()), '')
        if all(col in _header_tokens(first) for col in [*RATING_COLUMNS, 'PIC']):
          tables.append(f)
      elif f.suffix.lower() in ('.tif', '.tiff'):
        raise ValueError(f'{f}: expected a JAFFE image name <SUBJECT>.<EXPR><n>.<index>.tiff.')
    if len(tables) != 1:
      raise ValueError(
          f'{folder}: expected exactly one ratings table (header "N HAP SAD SUR ANG DIS FEA '
          f'PIC"), found {[t.name for t in tables]}.')
    ratings = read_ratings(tables[0])
    threshold = float(self.builder_config.threshold)
    splits = {p: [] for p in PARTS}
    part_of = {s: p for p, subjects in PARTS.items() for s in subjects}
    for pic, (line_no, scores) in ratings.items():
      if pic not in images:
        skips.add('rated picture without an image', f'{tables[0].name}:{line_no} {pic}')
        continue
      subject = pic[:2]  # one of SUBJECTS (read_ratings)
      image = images[pic]
      splits[part_of[subject]].append(base.ExpressionRecord(
          key=pic, image_path=str(image), file_name=f'jaffe/{image.name}',
          expression_multi=tuple(1.0 if s >= threshold else 0.0 for s in scores),
          expression_scores=scores, subject=SUBJECTS.index(subject),
          source=(str(tables[0]), line_no)))
    for pic in sorted(set(images) - set(ratings)):
      skips.add('image without a rating', images[pic].name)
    return splits

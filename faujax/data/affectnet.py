"""AffectNet tensorflow-datasets builder (Emotion-GCN, sec. IV-A.1 and IV-B preprocessing).

Reads the official ``training.csv`` / ``validation.csv`` annotation files as
distributed, aligns every face as Emotion-GCN does (rotate the image about the eye
midpoint so the eyes are level, eye centres = mean of 68-point indices 36-41 and
42-47; crop the annotated face box; resize to 227 x 227) and stores the shared
expression features of ``expression_builder_base``.

Protocol:
  * ``7class`` (default): codes 0-6 (neutral ... anger, in ``faujax.labels.EXPRESSIONS_7``
    order, which equals AffectNet's code order); code 7 (contempt) and codes 8-10
    (none / uncertain / non-face) are counted skips.
  * ``8class``: codes 0-7 (``EXPRESSIONS_8``); codes 8-10 are counted skips.
  * valence / arousal in [-1, 1]; -2 means not annotated -> ``va_mask`` 0.
  * splits: ``train`` = training.csv minus ``validation``; ``validation`` = 10% of
    training.csv chosen by a stable hash of the image path (for checkpoint
    selection); ``test`` = the official validation.csv (500 images per class).
  * ``7class_public_code``: the public Emotion-GCN code's split
    (``pickle_annotations_affectnet.py`` lines 31-56: 'train' = all of training.csv,
    'val' = validation.csv; ``main.py`` lines 143-146 and 269-279 train on the first and
    keep the checkpoint of the best accuracy on the second): ``train`` = all of training.csv
    (nothing held out) and the logical ``validation`` split is the ``test`` split
    (``fold_splits``), so checkpoints are selected on AffectNet's test set as the code does.

Reading rules (``read_affectnet_csv``; the text rules of ``faujax.data.text_files``):
  * the first non-blank line is the header; each later line is one csv row (a quoted
    field may not span lines); blank lines and rows of empty cells are ignored (every
    row names its image, so nothing shifts). A row with a different number of fields than the header is an error.
  * ``subDirectory_filePath`` is a relative path below ``Manually_Annotated_Images/``
    (surrounding spaces removed; spaces inside are part of the name). Absolute paths,
    ``..`` components and backslashes are errors. ``a/./x.jpg`` and ``a//x.jpg`` name
    ``a/x.jpg``.
  * an image may be listed once over both csv files, whatever its code: a second row
    (also one with a skipped code, or in the other file) is an error naming both lines.
  * codes outside 0-10, valence / arousal outside [-1, 1] other than the -2 pair,
    a -2 paired with an annotated value, and non-finite numbers are errors. Codes
    8-10 (and 7 in the 7-class protocol) are counted skips, printed after the build.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import expression_builder_base as base
from faujax.geometry import alignment
from faujax.geometry import stored_faces

CSV_COLUMNS = ('subDirectory_filePath', 'face_x', 'face_y', 'face_width', 'face_height',
               'facial_landmarks', 'expression', 'valence', 'arousal')
IMAGE_DIR = 'Manually_Annotated_Images'
# Codes 8, 9, 10: None, Uncertain, Non-Face.
MAX_CODE = 10
VA_NOT_ANNOTATED = -2.0


@dataclasses.dataclass(eq=False)
class AffectNetConfig(tfds.core.BuilderConfig):
  """AffectNet protocol options.

  Attributes:
    num_classes: 7 (contempt dropped, Emotion-GCN) or 8 (contempt kept).
    image_size: side of the aligned face (227 in Emotion-GCN).
    validation_fraction: fraction of training.csv held out as ``validation``.
    select_on_test: the logical ``validation`` split (checkpoint selection) reads the
      official validation.csv, i.e. the ``test`` split (the public code's selection).
  """

  num_classes: int = 7
  image_size: int = 227
  validation_fraction: float = 0.1
  select_on_test: bool = False


class Affectnet(base.ExpressionBuilder):
  """AffectNet (Mollahosseini et al. 2017): 7/8 expressions + valence/arousal."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': "Metadata: 'label_names' (the task's labels), 'multi_label_names', "
               "'class_counts' and 'train_occurrence_rates' of the task's labels.",
  }
  BUILDER_CONFIGS = [
      AffectNetConfig(name='7class', description='7 classes (contempt dropped), Emotion-GCN.'),
      AffectNetConfig(name='8class', num_classes=8, description='8 classes incl. contempt.'),
      AffectNetConfig(name='7class_public_code', validation_fraction=0.0, select_on_test=True,
                      description='7 classes; the public Emotion-GCN code\'s split: all of '
                      'training.csv trains, validation.csv selects and tests.'),
  ]
  DEFAULT_CONFIG_NAME = '7class'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  AffectNet is distributed by its authors under a research licence: request it from
  Mohammad Mahoor's lab (http://mohammadmahoor.com/affectnet/, form signed by a faculty
  member). From the "Manually annotated" part, place in the manual dir:

    <manual_dir>/training.csv
    <manual_dir>/validation.csv
    <manual_dir>/Manually_Annotated_Images/<subDirectory_filePath>   (e.g. 689/abc.jpg)

  i.e. unpack Manually_Annotated_Images.tar (or the per-folder archives) so that every
  csv row's subDirectory_filePath resolves below Manually_Annotated_Images/. The csv files
  are read as distributed (header row with columns subDirectory_filePath, face_x, face_y,
  face_width, face_height, facial_landmarks, expression, valence, arousal).
  """

  def _homepage(self) -> str:
    return 'http://mohammadmahoor.com/affectnet/'

  def _static_metadata(self) -> dict[str, Any]:
    n = int(self.builder_config.num_classes)
    if n not in (7, 8):
      raise ValueError(f'AffectNetConfig.num_classes must be 7 or 8; got {n}.')
    names = labels.EXPRESSIONS_7 if n == 7 else labels.EXPRESSIONS_8
    return {
        'task': 'expression',
        'class_names': list(names),
        'has_expression': True,
        'has_expression_multi': False,
        'has_va': True,
        'has_landmarks': True,
        'has_subject': False,
        'image_size': self._image_size(),
        'alignment': 'Emotion-GCN eye-level rotation about the eye midpoint, face-box crop',
        'test_split_source': 'validation.csv',
        'validation_fraction': float(self.builder_config.validation_fraction),
        'select_on_test': bool(self.builder_config.select_on_test),
    }

  def fold_splits(self, fold: int) -> dict[str, str]:
    """The physical split of each logical split (``faujax.data.builders.split_parts``; AffectNet
    has one fold): 'train', 'test', and 'validation' = the held-out carve when there is one, the
    'test' split with ``select_on_test``."""
    del fold
    out = {'train': 'train', 'test': 'test'}
    if self.builder_config.select_on_test:
      out['validation'] = 'test'
    elif 'validation' in self.info.splits:
      out['validation'] = 'validation'
    return out

  def _read_records(self, manual_dir: epath.Path, skips: base.SkipCounter):
    num_classes = int(self.builder_config.num_classes)
    seen: dict[str, tuple[str, int]] = {}
    train = read_affectnet_csv(manual_dir, 'training.csv', num_classes, skips, seen)
    test = read_affectnet_csv(manual_dir, 'validation.csv', num_classes, skips, seen)
    train, validation = base.carve_validation(
        train, lambda r: r.file_name, float(self.builder_config.validation_fraction))
    return {'train': train, 'validation': validation, 'test': test}

  def _load_face(self, record: base.ExpressionRecord) -> tuple[np.ndarray, np.ndarray]:
    # A ValueError (unreadable image, degenerate face) is reported with the csv file:line
    # by ExpressionBuilder._generate_examples.
    image = base.load_rgb(record.image_path)
    return stored_faces.align_emotion_gcn(image, record.landmarks, record.box,
                                         self._image_size())


def image_relative_path(field: str, path: epath.Path | str, line_no: int) -> str:
  """The normalised relative image path of a ``subDirectory_filePath`` field.

  Raises:
    AnnotationError: for an empty, absolute, backslashed or ``..`` path (outside the root).
  """
  rel = field.strip()
  if not rel:
    raise base.AnnotationError(path, line_no, 'empty subDirectory_filePath; expected a path '
                               f'such as 689/abc.jpg below {IMAGE_DIR}/.')
  if rel.startswith('/') or '\\' in rel or '..' in rel.split('/'):
    raise base.AnnotationError(
        path, line_no, f'subDirectory_filePath {rel!r} points outside {IMAGE_DIR}/; expected '
        'a relative path such as 689/abc.jpg (no leading /, no .., no backslash).')
  rel = posixpath.normpath(rel)
  if rel == '.':
    raise base.AnnotationError(path, line_no, f'subDirectory_filePath {field!r} names no image.')
  return rel


def _check_face_geometry(landmarks: np.ndarray, box: tuple[float, ...],
                         path: epath.Path, line_no: int) -> None:
  """While reading, the checks ``stored_faces.emotion_gcn_matrix`` makes when the image is encoded
  (float32, as there): finite landmarks and box, eye centres at least
  ``alignment.MIN_EYE_DISTANCE`` apart."""
  with np.errstate(over='ignore', invalid='ignore'):
    pts = np.asarray(landmarks, np.float32)
    x0, y0, w, h = np.asarray(box, np.float32)
    ok_box = bool(np.isfinite([x0, y0, w, h, x0 + w, y0 + h]).all())
    d = pts[42:48].mean(0) - pts[36:42].mean(0)
    dist = np.sqrt(np.sum(d * d))
  if not np.isfinite(pts).all() or not ok_box:
    raise base.AnnotationError(path, line_no, 'landmark or face box values too large for '
                               'float32; expected pixel coordinates.')
  if not dist > alignment.MIN_EYE_DISTANCE:
    raise base.AnnotationError(
        path, line_no, f'degenerate face: eye centres (mean of landmarks 36-41, 42-47) are '
        f'{float(dist):.3g} px apart (at least {alignment.MIN_EYE_DISTANCE} needed to align).')


def read_affectnet_csv(
    manual_dir: epath.Path, csv_name: str, num_classes: int, skips: base.SkipCounter,
    seen: dict[str, tuple[str, int]] | None = None,
) -> list[base.ExpressionRecord]:
  """Parses one official AffectNet csv into records (see the module docstring for the rules).

  Args:
    manual_dir: directory with the csv and ``Manually_Annotated_Images/``.
    csv_name: 'training.csv' or 'validation.csv'.
    num_classes: 7 or 8.
    skips: receives the counted skips (codes >= num_classes).
    seen: normalised image path -> (file, line) of the rows read so far (updated); pass
      the same dict for both csv files so that an image listed in both is an error.

  Returns:
    Records with expression, valence/arousal/va_mask, landmarks (68, 2) and box.

  Raises:
    ValueError: when the csv does not exist.
    base.AnnotationError: naming the file and line of a malformed row, an unknown
      expression code, an out-of-range valence/arousal, a duplicated image, a path outside
      the image root, or an image that does not exist.
  """
  path = manual_dir / csv_name
  (header_line, header), *rows = base.read_csv_rows(
      path, f'a header row {",".join(CSV_COLUMNS)}, then one row per image', blank='skip')
  header = [h.strip() for h in header]
  missing = [c for c in CSV_COLUMNS if c not in header]
  if missing:
    raise base.AnnotationError(
        path, header_line, f'header lacks column(s) {missing}; expected {",".join(CSV_COLUMNS)}.')
  repeated = sorted({c for c in CSV_COLUMNS if header.count(c) > 1})
  if repeated:
    raise base.AnnotationError(path, header_line, f'header repeats column(s) {repeated}.')
  col = {name: header.index(name) for name in CSV_COLUMNS}
  image_root = manual_dir / IMAGE_DIR
  seen = {} if seen is None else seen
  records = []
  for line_no, row in rows:
    if len(row) != len(header):
      raise base.AnnotationError(
          path, line_no, f'expected {len(header)} comma-separated fields '
          f'({",".join(header)}), got {len(row)}.')
    rel = image_relative_path(row[col['subDirectory_filePath']], path, line_no)
    first = seen.setdefault(rel, (str(path), line_no))
    if first != (str(path), line_no):
      raise base.AnnotationError(
          path, line_no, f'image {rel} is already listed at {first[0]}, line {first[1]}; each '
          'image may have one row (over training.csv and validation.csv).')
    code = base.parse_int(row[col['expression']], path, line_no, 'an integer expression code 0-10')
    if not 0 <= code <= MAX_CODE:
      raise base.AnnotationError(
          path, line_no, f'unknown AffectNet expression code {code}; expected 0-10 '
          '(0-7 emotions, 8 none, 9 uncertain, 10 non-face).')
    if code >= 8:
      skips.add('expression code >= 8 (none / uncertain / non-face)', f'{path.name}:{line_no}')
      continue
    if code >= num_classes:
      skips.add('expression code 7 (contempt) outside the 7-class protocol',
                f'{path.name}:{line_no}')
      continue
    box = tuple(
        base.parse_float(row[col[k]], path, line_no, f'a number in column {k}')
        for k in ('face_x', 'face_y', 'face_width', 'face_height'))
    if box[2] <= 0 or box[3] <= 0:
      raise base.AnnotationError(path, line_no, 'expected a positive face_width and '
                                 f'face_height, got {box[2]} x {box[3]}.')
    tokens = row[col['facial_landmarks']].strip().split(';')
    if tokens and not tokens[-1].strip():
      tokens.pop()  # a trailing ';'
    if len(tokens) != 2 * base.NUM_LANDMARKS:
      raise base.AnnotationError(
          path, line_no, f'facial_landmarks must hold {2 * base.NUM_LANDMARKS} '
          f'numbers "x;y;..." (68 points), got {len(tokens)}.')
    landmarks = np.array(
        [base.parse_float(t, path, line_no, 'a landmark coordinate') for t in tokens],
        np.float64).reshape(base.NUM_LANDMARKS, 2)
    _check_face_geometry(landmarks, box, path, line_no)
    landmarks = landmarks.astype(np.float32)
    valence = base.parse_float(row[col['valence']], path, line_no, 'a valence value')
    arousal = base.parse_float(row[col['arousal']], path, line_no, 'an arousal value')
    va_mask = 1.0
    if valence == VA_NOT_ANNOTATED and arousal == VA_NOT_ANNOTATED:
      valence, arousal, va_mask = 0.0, 0.0, 0.0
    elif not (-1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0):
      raise base.AnnotationError(
          path, line_no, 'valence/arousal must be in [-1, 1], or both -2 (not annotated); '
          f'got {valence}, {arousal}.')
    image_path = image_root / rel
    if not base.is_file(image_path):
      raise base.AnnotationError(
          path, line_no, f'image {image_path} does not exist; expected the images '
          f'unpacked under {image_root}/<subDirectory_filePath>.')
    records.append(base.ExpressionRecord(
        key=f'{csv_name}:{rel}', image_path=str(image_path), file_name=f'{IMAGE_DIR}/{rel}',
        expression=code, valence=valence, arousal=arousal, va_mask=va_mask,
        landmarks=landmarks, box=box, source=(str(path), line_no)))
  return records

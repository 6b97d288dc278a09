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
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

from etils import epath
import chex
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from faujax import labels
from faujax.data import expression_builder_base as base
from faujax.geometry import alignment

CSV_COLUMNS = ('subDirectory_filePath', 'face_x', 'face_y', 'face_width', 'face_height',
               'facial_landmarks', 'expression', 'valence', 'arousal')
IMAGE_DIR = 'Manually_Annotated_Images'
# Codes 8, 9, 10: None, Uncertain, Non-Face.
MAX_CODE = 10
VA_NOT_ANNOTATED = -2.0


def alignment_matrix(
    landmarks: np.ndarray,
    box: tuple[float, float, float, float],
    size: int,
) -> np.ndarray:
  """The Emotion-GCN alignment as one (2, 3) affine map (Emotion-GCN sec. IV-B).

  Rotation about the eye midpoint so that the eyes (mean of 68-point 36-41 and 42-47)
  are level, then the face box crop resized to (size, size): computed by
  ``faujax.geometry.alignment.emotiongcn_transform``. Pixel-index coordinates (pixel
  centres at integers), the faujax geometry convention.

  Args:
    landmarks: (68, 2) float (x, y) in source-image pixels.
    box: AffectNet face box (face_x, face_y, face_width, face_height) in source pixels.
    size: output side length.

  Returns:
    float64 (2, 3) matrix mapping source [x, y, 1] to aligned-image pixels.

  Raises:
    ValueError: for a degenerate face (coincident eye centres, empty box, non-finite).
  """
  chex.assert_shape(landmarks, (base.NUM_LANDMARKS, 2))
  x0, y0, w, h = (float(v) for v in box)
  matrix, ok = alignment.emotiongcn_transform(
      np.asarray(landmarks, np.float32), np.array([x0, y0, x0 + w, y0 + h], np.float32), size)
  if not bool(ok):
    raise ValueError(f'Cannot align face: coincident eye centres or an empty box {box}.')
  return np.asarray(matrix, np.float64)


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    box: tuple[float, float, float, float],
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Eye-level rotation, face-box crop and resize (Emotion-GCN sec. IV-B).

  The matrix comes from ``alignment_matrix``; the warp is PIL's bilinear affine
  resampling (C speed for full-resolution AffectNet images). Pixels outside the
  source image are black.

  Args:
    image: uint8 (H, W, 3) source image.
    landmarks: (68, 2) float (x, y) in source pixels.
    box: (face_x, face_y, face_width, face_height) in source pixels.
    size: output side length (227 for Emotion-GCN).

  Returns:
    (aligned uint8 (size, size, 3), landmarks float32 (68, 2) in aligned pixels).
  """
  chex.assert_rank(image, 3)
  chex.assert_type(image, np.uint8)
  forward = alignment_matrix(landmarks, box, size)
  lin, t = forward[:, :2], forward[:, 2]
  # PIL samples at continuous coordinates (pixel centres at +0.5): shift the map.
  t_cont = t + 0.5 - lin @ np.array([0.5, 0.5])
  inv_lin = np.linalg.inv(lin)
  inverse = np.concatenate([inv_lin, (-inv_lin @ t_cont)[:, None]], axis=1)
  aligned = Image.fromarray(image).transform(
      (size, size), Image.Transform.AFFINE, data=tuple(inverse.reshape(-1)),
      resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
  points = landmarks @ lin.T + t
  return np.asarray(aligned, np.uint8), points.astype(np.float32)


@dataclasses.dataclass(eq=False)
class AffectNetConfig(tfds.core.BuilderConfig):
  """AffectNet protocol options.

  Attributes:
    num_classes: 7 (contempt dropped, Emotion-GCN) or 8 (contempt kept).
    image_size: side of the aligned face (227 in Emotion-GCN).
    validation_fraction: fraction of training.csv held out as ``validation``.
  """

  num_classes: int = 7
  image_size: int = 227
  validation_fraction: float = 0.1


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
    }

  def _read_records(self, manual_dir: epath.Path, skips: base.SkipCounter):
    num_classes = int(self.builder_config.num_classes)
    train = read_affectnet_csv(manual_dir, 'training.csv', num_classes, skips)
    test = read_affectnet_csv(manual_dir, 'validation.csv', num_classes, skips)
    train, validation = base.carve_validation(
        train, lambda r: r.file_name, float(self.builder_config.validation_fraction))
    return {'train': train, 'validation': validation, 'test': test}

  def _load_face(self, record: base.ExpressionRecord) -> tuple[np.ndarray, np.ndarray]:
    image = base.load_rgb(record.image_path)
    try:
      return align_face(image, record.landmarks, record.box, self._image_size())
    except ValueError as e:
      raise ValueError(f'{record.file_name} ({record.key}): {e}') from None


def read_affectnet_csv(
    manual_dir: epath.Path, csv_name: str, num_classes: int, skips: base.SkipCounter,
) -> list[base.ExpressionRecord]:
  """Parses one official AffectNet csv into records (see the module docstring for the rules).

  Args:
    manual_dir: directory with the csv and ``Manually_Annotated_Images/``.
    csv_name: 'training.csv' or 'validation.csv'.
    num_classes: 7 or 8.
    skips: receives the counted skips (codes >= num_classes).

  Returns:
    Records with expression, valence/arousal/va_mask, landmarks (68, 2) and box.

  Raises:
    ValueError: naming the file and line of a malformed row, an unknown expression
      code, an out-of-range valence/arousal, or an image that does not exist.
  """
  path = manual_dir / csv_name
  lines = base.read_text_lines(path, f'the official AffectNet {csv_name}')
  reader = csv.reader(io.StringIO('\n'.join(lines)))
  try:
    header = [h.strip() for h in next(reader)]
  except StopIteration:
    raise ValueError(f'{path} is empty; expected a header row {",".join(CSV_COLUMNS)}.') from None
  missing = [c for c in CSV_COLUMNS if c not in header]
  if missing:
    raise ValueError(
        f'{path}, line 1: header lacks column(s) {missing}; expected {",".join(CSV_COLUMNS)}.')
  col = {name: header.index(name) for name in CSV_COLUMNS}
  image_root = manual_dir / IMAGE_DIR
  records = []
  for line_no, row in enumerate(reader, start=2):
    if not row or all(not v.strip() for v in row):
      continue
    if len(row) != len(header):
      raise ValueError(
          f'{path}, line {line_no}: expected {len(header)} comma-separated fields '
          f'({",".join(header)}), got {len(row)}.')
    code = base.parse_int(row[col['expression']], path, line_no, 'an integer expression code 0-10')
    if not 0 <= code <= MAX_CODE:
      raise ValueError(
          f'{path}, line {line_no}: unknown AffectNet expression code {code}; expected 0-10 '
          '(0-7 emotions, 8 none, 9 uncertain, 10 non-face).')
    rel = row[col['subDirectory_filePath']].strip()
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
      raise ValueError(f'{path}, line {line_no}: expected a positive face_width and '
                       f'face_height, got {box[2]} x {box[3]}.')
    tokens = [t for t in row[col['facial_landmarks']].strip().split(';') if t.strip()]
    if len(tokens) != 2 * base.NUM_LANDMARKS:
      raise ValueError(
          f'{path}, line {line_no}: facial_landmarks must hold {2 * base.NUM_LANDMARKS} '
          f'numbers "x;y;..." (68 points), got {len(tokens)}.')
    landmarks = np.array(
        [base.parse_float(t, path, line_no, 'a landmark coordinate') for t in tokens],
        np.float32).reshape(base.NUM_LANDMARKS, 2)
    valence = base.parse_float(row[col['valence']], path, line_no, 'a valence value')
    arousal = base.parse_float(row[col['arousal']], path, line_no, 'an arousal value')
    va_mask = 1.0
    if valence == VA_NOT_ANNOTATED or arousal == VA_NOT_ANNOTATED:
      valence, arousal, va_mask = 0.0, 0.0, 0.0
    elif not (-1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0):
      raise ValueError(
          f'{path}, line {line_no}: valence/arousal must be in [-1, 1] or -2 (not annotated); '
          f'got {valence}, {arousal}.')
    image_path = image_root / rel
    if not rel or not image_path.exists():
      raise ValueError(
          f'{path}, line {line_no}: image {image_path} does not exist; expected the images '
          f'unpacked under {image_root}/<subDirectory_filePath>.')
    records.append(base.ExpressionRecord(
        key=f'{csv_name}:{rel}', image_path=str(image_path), file_name=f'{IMAGE_DIR}/{rel}',
        expression=code, valence=valence, arousal=arousal, va_mask=va_mask,
        landmarks=landmarks, box=box))
  return records

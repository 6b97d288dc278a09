"""Shared base of the AU dataset builders (BP4D, DISFA, EmotioNet): features, folds, skips.

Every AU builder produces the same example features:

  image            uint8 (200, 200, 3) JPEG: the face aligned with faujax.geometry.alignment
                   (JAA-Net similarity alignment, box enlargement 2.9,
                   docs/reference/face_geometry.md, "JAA-Net alignment"); layouts without landmarks store the image centre-cropped to a
                   square and resized.
  landmarks        float32 (P, 2) (x, y) in the stored image's pixels; P is the config's native
                   scheme (metadata 'num_landmarks': 49, 66, or 0 when the layout has none).
  au               float32 (N,) occurrence 0/1 in the dataset's AU order (faujax.labels).
  au_mask          float32 (N,) 1 where the label is known, 0 where unknown (BP4D's 9,
                   EmotioNet's 999).
  au_intensity     float32 (N,) 0-5 intensity where the layout has it (DISFA official), else -1.
  subject          int64 index into metadata 'subject_names' (-1: no subject ids).
  subject_name     string ('F001', 'SN003'; for EmotioNet the image file name).
  image_path       string: the image path relative to the image root (the example key).
  expression       int64 -1 (AU datasets carry no expression label).
  expression_multi float32 (6,) zeros.
  valence, arousal float32 0.0.

Splits. The subjects are divided into 3 subject-exclusive parts. Physical splits ``part<k>``
hold the training subjects of part k and ``part<k>_val`` a few held-out subjects of part k (the
last ``NUM_VALIDATION_SUBJECTS`` of the part's sorted present subjects; for datasets without
subjects a stable hash of the file name, see ``hash_validation_names``). Fold f tests on part
t = ``TEST_PART_OF_FOLD[f]`` (all of it: ``part<t> + part<t>_val``), trains on the other parts'
``part<k>`` and selects checkpoints on their ``part<k>_val``, never on the test fold.
``faujax.data.splits.resolve_split`` maps the logical 'train' / 'validation' / 'test' names.

Metadata (``builder.info.metadata``, a tfds MetadataDict stored as JSON next to the data):
  'task' ('au'), 'label_names' (['AU1', ...] in ``AUS`` order), 'multi_label_names' ([]: no
  multi-label expressions), 'dataset', 'layout', 'aus', 'num_landmarks', 'landmark_scheme',
  'image_size', 'subject_names', 'num_examples', 'test_part_of_fold' {'1': 3, ...},
  'parts' {'part1': {'train_subjects', 'validation_subjects', 'num_train', 'num_validation'}},
  'train_occurrence_rates' {'fold1': [N floats]}: positives / known labels over the fold's
      training examples (validation subjects excluded), 0.0 where no label is known
      (``faujax.statistics.occurrence_rates``),
  'class_counts' {'fold1': [N ints]}: the positive (known) training labels of each AU,
  'train_label_counts' {'fold1': {'positive': [...], 'known': [...]}},
  'skipped' {reason: count}: documented, counted skips of the official layouts (frames, except
      DISFA's 'missing_au_label', which counts (frame, AU) labels masked because the frame is
      absent from that AU's file); the list layouts skip nothing but 'degenerate_landmarks'.
      The counts are logged (absl WARNING) at the end of ``download_and_prepare``.

Input errors are ``AUDataError`` / ``au_lists.ListFormatError`` (both ``ValueError``) naming the
file and line (the text rules: ``faujax.data.au_lists``); nothing a layout lists is dropped
without either an error or a counted skip.

Layout detection: ``detect_layouts(manual_dir)`` names the configs whose files are present and
``layout_requirements()`` what each expects (``faujax.data.input_pipeline`` picks the config from
them when ``config.data.builder_config`` is unset).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from faujax import labels
from faujax import statistics
from faujax.data import au_lists
from faujax.geometry import stored_faces

IMAGE_SIZE = 200
NUM_PARTS = 3
# EmotioNet-style hash partition: 1 in VALIDATION_HASH_MODULUS examples of a part is held out.
VALIDATION_HASH_MODULUS = 10


class AUDataError(ValueError):
  """Bad input for an AU builder; the message names the file, the line and what was expected."""


@dataclasses.dataclass
class FrameRecord:
  """One example before its image is read.

  Attributes:
    key: unique example key: the image path relative to the image root.
    image_path: absolute path of the image file.
    subject_name: subject id ('' when the dataset has none).
    au: float32 (N,) occurrence.
    au_mask: float32 (N,) known-label mask.
    au_intensity: float32 (N,) intensity or -1.
    landmarks: float32 (P, 2) in the image file's pixels, or None.
    source: where the record came from ('file:line'), for error messages.
    part: 1..3 when the layout fixes it (list layouts), 0 to assign from the protocol.
    validation: whether the record is held out for validation.
  """
  key: str
  image_path: str
  subject_name: str
  au: np.ndarray
  au_mask: np.ndarray
  au_intensity: np.ndarray
  landmarks: np.ndarray | None
  source: str
  part: int = 0
  validation: bool = False


class AUBuilderConfig(tfds.core.BuilderConfig):
  """A manual-dir layout (official / megraphau_lists / jaanet_lists) and its landmark scheme."""

  def __init__(self, *, layout: str, num_landmarks: int, **kwargs):
    if layout not in au_lists.LAYOUTS:
      raise ValueError(f'layout: expected one of {au_lists.LAYOUTS}, got {layout!r}.')
    super().__init__(name=layout, **kwargs)
    self.layout = layout
    self.num_landmarks = num_landmarks


def stable_hash(name: str) -> int:
  """A process-independent integer hash of a string (SHA-1)."""
  return int(hashlib.sha1(name.encode('utf-8')).hexdigest()[:15], 16)


def part_by_hash(name: str) -> int:
  """Deterministic 3-way partition: part 1 + (sha1(name) mod 3)."""
  return 1 + stable_hash(name) % NUM_PARTS


def validation_by_hash(name: str) -> bool:
  """Held out for validation within a hash partition: (sha1(name) // 3) mod 10 == 0 (about 10 %).

  A part where no name qualifies (only in tiny test sets) holds out its smallest-hash name instead.
  """
  return (stable_hash(name) // NUM_PARTS) % VALIDATION_HASH_MODULUS == 0


def hash_validation_names(names: Sequence[str]) -> set[str]:
  """Held-out names of one hash part: ``validation_by_hash``, else the smallest-hash name."""
  val = {n for n in names if validation_by_hash(n)}
  if not val and len(names) > 1:
    val = {min(names, key=stable_hash)}
  return val


def au_features(num_aus: int, num_landmarks: int,
                image_size: int = IMAGE_SIZE) -> tfds.features.FeaturesDict:
  """The feature dict shared by all AU builders (see the module docstring)."""
  f32 = np.float32
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(image_size, image_size, 3), encoding_format='jpeg'),
      'landmarks': tfds.features.Tensor(shape=(num_landmarks, 2), dtype=f32),
      'au': tfds.features.Tensor(shape=(num_aus,), dtype=f32),
      'au_mask': tfds.features.Tensor(shape=(num_aus,), dtype=f32),
      'au_intensity': tfds.features.Tensor(shape=(num_aus,), dtype=f32),
      'subject': tfds.features.Scalar(dtype=np.int64),
      'subject_name': tfds.features.Text(),
      'image_path': tfds.features.Text(),
      'expression': tfds.features.Scalar(dtype=np.int64),
      'expression_multi': tfds.features.Tensor(shape=(6,), dtype=f32),
      'valence': tfds.features.Scalar(dtype=f32),
      'arousal': tfds.features.Scalar(dtype=f32),
  })





def read_image(path: str, source: str) -> np.ndarray:
  """Decodes an image file to uint8 (H, W, 3); errors name the file and the record's source."""
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except FileNotFoundError:
    raise AUDataError(f'{source}: image file {path} does not exist.') from None
  except OSError as e:
    raise AUDataError(f'{source}: cannot decode image file {path}: {e}') from None


class AUDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the AU builders; subclasses set the class constants and ``_official_records``."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {
      '1.0.0': 'First release.',
      '1.1.0': "Metadata: 'label_names', 'multi_label_names'; 'class_counts' = positive AU "
               "counts; rates 0.0 (not NaN) where no label is known.",
  }

  DS_NAME: ClassVar[str] = ''  # File-name prefix of the list layouts ('BP4D').
  AUS: ClassVar[tuple[int, ...]] = ()
  # Protocol subjects of each part, or None for datasets without subject ids (hash partition).
  PROTOCOL_PARTS: ClassVar[dict[int, tuple[str, ...]] | None] = None
  TEST_PART_OF_FOLD: ClassVar[dict[int, int]] = {1: 1, 2: 2, 3: 3}
  NUM_VALIDATION_SUBJECTS: ClassVar[int] = 1
  DESCRIPTION: ClassVar[str] = ''
  HOMEPAGE: ClassVar[str] = ''
  CITATION: ClassVar[str] = ''
  # What the official layout expects in the manual dir (one line, for layout errors).
  OFFICIAL_FILES: ClassVar[str] = ''

  # ----------------------------------------------------------------- info
  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=au_features(len(self.AUS), self.builder_config.num_landmarks),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        metadata=tfds.core.MetadataDict(),
    )

  @classmethod
  def subject_names(cls) -> list[str]:
    """All protocol subjects, sorted; the 'subject' feature indexes this list."""
    if cls.PROTOCOL_PARTS is None:
      return []
    return sorted(s for part in cls.PROTOCOL_PARTS.values() for s in part)

  @classmethod
  def protocol_part_of_subject(cls, subject: str) -> int | None:
    for k, subjects in (cls.PROTOCOL_PARTS or {}).items():
      if subject in subjects:
        return k
    return None

  # ------------------------------------------------------- layout detection
  @classmethod
  def layouts(cls) -> tuple[str, ...]:
    """The layouts (= config names) this builder offers."""
    return tuple(c.layout for c in cls.BUILDER_CONFIGS)

  @classmethod
  def official_layout_present(cls, manual_dir: str) -> bool:
    """Whether the official layout's distinctive files are in ``manual_dir`` (subclasses)."""
    del manual_dir
    return False

  @classmethod
  def detect_layouts(cls, manual_dir: str) -> list[str]:
    """The layouts of this builder whose files are present in ``manual_dir`` (config names).

    official: the dataset's own label directory (``official_layout_present``); the list layouts:
    their fold-1 / part-1 list files in ``<manual_dir>/list`` or ``<manual_dir>``.
    """
    found = []
    if au_lists.LAYOUT_OFFICIAL in cls.layouts() and cls.official_layout_present(manual_dir):
      found.append(au_lists.LAYOUT_OFFICIAL)
    found += [layout for layout in au_lists.detect_layouts(manual_dir, cls.DS_NAME)
              if layout in cls.layouts()]
    return found

  @classmethod
  def layout_requirements(cls) -> dict[str, str]:
    """{layout: the files it expects in the manual dir}, one line each."""
    ds = cls.DS_NAME
    out = {
        au_lists.LAYOUT_OFFICIAL: cls.OFFICIAL_FILES,
        au_lists.LAYOUT_MEGRAPHAU: (f'list/{ds}_{{train,test}}_img_path_fold{{1,2,3}}.txt and '
                                    f'list/{ds}_{{train,test}}_label_fold{{1,2,3}}.txt (or in the '
                                    'manual dir itself), images under img/'),
        au_lists.LAYOUT_JAANET: (f'list/{ds}_part{{1,2,3}}_{{path,land,biocular,AUoccur}}.txt '
                                 '(or in the manual dir itself), images under imgs/ or img/'),
    }
    return {layout: out[layout] for layout in cls.layouts()}

  # ---------------------------------------------------------- record sources
  def _official_records(self, manual_dir: str, skipped: collections.Counter) -> list[FrameRecord]:
    raise AUDataError(f'{type(self).__name__} has no official-layout reader; use the '
                      f'{au_lists.LAYOUT_MEGRAPHAU!r} or {au_lists.LAYOUT_JAANET!r} config.')

  def _layout_hint(self, manual_dir: str) -> str:
    """' Found list files of ...: use the config <name>/<layout>.' when list files are present."""
    found = [layout for layout in self.detect_layouts(manual_dir)
             if layout != au_lists.LAYOUT_OFFICIAL]
    if not found:
      return ''
    return f' Found list files of the {found} layout: use the config {self.name}/{found[0]}.'

  def _expected_files_message(self, manual_dir: str) -> str:
    """What each layout expects in the manual dir (for layout errors)."""
    expected = '; '.join(f'{self.name}/{layout}: {files}'
                         for layout, files in self.layout_requirements().items())
    return f'Manual dir {manual_dir}: expected {expected}. See MANUAL_DOWNLOAD_INSTRUCTIONS.'

  def _image_root(self, manual_dir: str, candidates: Sequence[str]) -> str:
    for c in candidates:
      d = os.path.join(manual_dir, c)
      if os.path.isdir(d):
        return d
    raise AUDataError(f'Manual dir {manual_dir}: no image directory; expected one of '
                      f'{[os.path.join(manual_dir, c) for c in candidates]}.')

  def _list_dir(self, manual_dir: str, names: Sequence[str], layout: str) -> str:
    d = au_lists.find_list_dir(manual_dir, names)
    if d is None:
      missing = [
          n for n in names
          if not any(os.path.isfile(os.path.join(manual_dir, s, n)) for s in au_lists.LIST_SUBDIRS)
      ]
      raise AUDataError(f'Manual dir {manual_dir}: layout {layout!r} needs {missing} in '
                        f'{os.path.join(manual_dir, "list")} or {manual_dir}. ' +
                        self._expected_files_message(manual_dir))
    return d

  def _check_list_entry(self, e: au_lists.ListEntry, root: str) -> str:
    path = os.path.join(root, e.path)
    if not os.path.isfile(path):
      raise AUDataError(f'{e.source}: image {e.path} not found at {path}; expected the image root '
                        f'{root} to hold every listed path.')
    return path

  def _entry_record(self, e: au_lists.ListEntry, root: str, part: int) -> FrameRecord:
    n = len(self.AUS)
    subject = au_lists.subject_of_path(e.path) if self.PROTOCOL_PARTS is not None else e.path
    return FrameRecord(key=e.path, image_path=self._check_list_entry(e, root), subject_name=subject,
                       au=e.au, au_mask=e.au_mask, au_intensity=np.full((n,), -1.0, np.float32),
                       landmarks=e.landmarks, source=e.source, part=part)

  def _megraphau_records(self, manual_dir: str) -> list[FrameRecord]:
    """Every entry of the six lists is used: fold k's test list is part TEST_PART_OF_FOLD[k].

    Each fold is read and checked for training / test overlap (subjects, or images for datasets
    without subjects); then the lists are joined by image (labels must agree between lists),
    the listed parts are checked against the protocol, and every image must sit in one test list
    and in the training lists of the other folds (``au_lists.check_megraphau_membership``).
    """
    names = [n for k in (1, 2, 3) for n in au_lists.megraphau_file_names(self.DS_NAME, k).values()]
    list_dir = self._list_dir(manual_dir, names, au_lists.LAYOUT_MEGRAPHAU)
    root = self._image_root(manual_dir, ('img', 'imgs'))
    folds = {}
    for k in sorted(self.TEST_PART_OF_FOLD):
      lists = au_lists.read_megraphau_folds(list_dir, self.DS_NAME, len(self.AUS), (k,))[k]
      test_keys = {e.path: e for e in lists['test']}
      test_subjects = {au_lists.subject_of_path(p): e for p, e in test_keys.items()}
      for e in lists['train']:
        if self.PROTOCOL_PARTS is None:
          other = test_keys.get(e.path)
        else:
          other = test_subjects.get(au_lists.subject_of_path(e.path))
        if other is not None:
          raise AUDataError(
              f'{e.source}: training entry {e.path} of fold {k} shares its '
              f'{"image" if self.PROTOCOL_PARTS is None else "subject"} with the fold\'s test '
              f'list ({other.source}: {other.path}); expected subject-exclusive folds.')
      folds[k] = lists
    images = au_lists.merge_megraphau_folds(folds)
    records = [
        self._entry_record(img.entry, root, self.TEST_PART_OF_FOLD[img.test_fold])
        for img in images.values() if img.test_fold is not None
    ]
    if self.PROTOCOL_PARTS is not None:
      for r in records:
        self._check_protocol(r)
    au_lists.check_megraphau_membership(
        images, self.TEST_PART_OF_FOLD, {
            k: os.path.join(list_dir,
                            au_lists.megraphau_file_names(self.DS_NAME, k)['train_paths'])
            for k in self.TEST_PART_OF_FOLD
        })
    return records

  def _jaanet_records(self, manual_dir: str) -> list[FrameRecord]:
    """Prefix <DS>_part<k> is part k; landmarks (49) are in the listed image's pixels."""
    prefixes = {k: f'{self.DS_NAME}_part{k}' for k in (1, 2, 3)}
    names = [n for p in prefixes.values() for n in au_lists.jaanet_file_names(p).values()]
    list_dir = self._list_dir(manual_dir, names, au_lists.LAYOUT_JAANET)
    root = self._image_root(manual_dir, ('imgs', 'img'))
    records = []
    for k, prefix in prefixes.items():
      for e in au_lists.read_jaanet_set(list_dir, prefix, len(self.AUS)):
        records.append(self._entry_record(e, root, k))
    return records

  # -------------------------------------------------------------- partition
  def _check_protocol(self, r: FrameRecord) -> int:
    """The protocol part of a record's subject; errors when it is outside or listed elsewhere."""
    expected = self.protocol_part_of_subject(r.subject_name)
    if expected is None:
      raise AUDataError(
          f'{r.source}: subject {r.subject_name!r} is outside the {self.name} protocol; '
          f'expected one of {self.subject_names()}.')
    if r.part not in (0, expected):
      raise AUDataError(
          f'{r.source}: subject {r.subject_name!r} is listed in part {r.part} but the protocol '
          f'puts it in part {expected} (part {expected}: '
          f'{list(self.PROTOCOL_PARTS[expected])}).')
    return expected

  def _assign_parts(self, records: list[FrameRecord]) -> None:
    """Checks list parts against the protocol, fills protocol / hash parts, marks validation."""
    seen: dict[str, str] = {}
    for r in records:
      if r.key in seen:
        raise AUDataError(f'{r.source}: image {r.key} is listed twice (first at {seen[r.key]}); '
                          'expected each image once across the parts.')
      seen[r.key] = r.source
      if self.PROTOCOL_PARTS is None:
        if r.part == 0:
          r.part = part_by_hash(r.subject_name)
        continue
      r.part = self._check_protocol(r)
    for k in range(1, NUM_PARTS + 1):
      part = [r for r in records if r.part == k]
      subjects = sorted({r.subject_name for r in part})
      if len(subjects) < 2:
        raise AUDataError(
            f'{self.name}/{self.builder_config.layout}: part {k} holds {len(subjects)} '
            f'{"subject" if self.PROTOCOL_PARTS is not None else "image"}(s) {subjects[:3]}; '
            'expected at least 2 per part (training and held-out validation data; tfds splits '
            'may not be empty).')
      if self.PROTOCOL_PARTS is None:
        val = hash_validation_names(subjects)
        for r in part:
          r.validation = r.subject_name in val
        continue
      n_val = min(self.NUM_VALIDATION_SUBJECTS, len(subjects) - 1)
      val = set(subjects[len(subjects) - n_val:])
      for r in part:
        r.validation = r.subject_name in val

  # ----------------------------------------------------------------- metadata
  def _fold_metadata(self, records: list[FrameRecord]) -> dict[str, Any]:
    rates, counts, positives = {}, {}, {}
    for fold, test_part in sorted(self.TEST_PART_OF_FOLD.items()):
      train = [r for r in records if r.part != test_part and not r.validation]
      n = len(self.AUS)
      au = np.stack([r.au for r in train]) if train else np.zeros((0, n), np.float32)
      mask = np.stack([r.au_mask for r in train]) if train else np.zeros((0, n), np.float32)
      pos, known = statistics.occurrence_counts(au, mask)
      rates[f'fold{fold}'] = [float(x) for x in statistics.occurrence_rates(au, mask)]
      counts[f'fold{fold}'] = {'positive': [int(x) for x in pos], 'known': [int(x) for x in known]}
      positives[f'fold{fold}'] = [int(x) for x in pos]
    parts = {}
    for k in range(1, NUM_PARTS + 1):
      recs = [r for r in records if r.part == k]
      has_subjects = self.PROTOCOL_PARTS is not None
      train_subjects = {r.subject_name for r in recs if not r.validation}
      val_subjects = {r.subject_name for r in recs if r.validation}
      parts[f'part{k}'] = {
          'train_subjects': sorted(train_subjects) if has_subjects else [],
          'validation_subjects': sorted(val_subjects) if has_subjects else [],
          'num_train': sum(not r.validation for r in recs),
          'num_validation': sum(r.validation for r in recs),
      }
    return {
        'train_occurrence_rates': rates,
        'class_counts': positives,
        'train_label_counts': counts,
        'parts': parts,
    }

  # ------------------------------------------------------------------ splits
  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    if not os.path.isdir(manual_dir):
      raise AUDataError(f'Manual dir {manual_dir} does not exist. ' +
                        self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    layout = self.builder_config.layout
    skipped: collections.Counter = collections.Counter()
    if layout == au_lists.LAYOUT_OFFICIAL:
      records = self._official_records(manual_dir, skipped)
    elif layout == au_lists.LAYOUT_MEGRAPHAU:
      records = self._megraphau_records(manual_dir)
    else:
      records = self._jaanet_records(manual_dir)
    with_lm = [r for r in records if r.landmarks is not None]
    if with_lm:
      ok = stored_faces.alignable(np.stack([r.landmarks for r in with_lm]))
      bad = {id(r) for r, good in zip(with_lm, ok) if not good}
      if bad:
        skipped['degenerate_landmarks'] += len(bad)
        records = [r for r in records if id(r) not in bad]
    if not records:
      raise AUDataError(f'Manual dir {manual_dir}: layout {layout!r} yielded no examples '
                        f'(skipped: {dict(skipped)}).')
    self._assign_parts(records)
    meta = self.info.metadata
    meta.update({
        'task': 'au',
        'label_names': labels.au_label_names(self.AUS),
        'multi_label_names': [],
        'dataset': self.name,
        'layout': layout,
        'aus': list(self.AUS),
        'num_landmarks': self.builder_config.num_landmarks,
        'landmark_scheme': (f'{self.builder_config.num_landmarks}-point'
                            if self.builder_config.num_landmarks else 'none'),
        'image_size': IMAGE_SIZE,
        'subject_names': self.subject_names(),
        'test_part_of_fold': {str(k): v for k, v in self.TEST_PART_OF_FOLD.items()},
        'skipped': {k: int(v) for k, v in sorted(skipped.items())},
        'num_examples': len(records),
    })
    meta.update(self._fold_metadata(records))
    logging.info('%s/%s: %d examples; %s.', self.name, layout, len(records),
                 skip_summary(skipped))
    splits = {}
    for k in range(1, NUM_PARTS + 1):
      splits[f'part{k}'] = self._generate_examples(
          [r for r in records if r.part == k and not r.validation])
      splits[f'part{k}_val'] = self._generate_examples(
          [r for r in records if r.part == k and r.validation])
    return splits

  def _download_and_prepare(self, dl_manager, download_config):  # pytype: disable=signature-mismatch
    super()._download_and_prepare(dl_manager, download_config)
    skipped = dict(self.info.metadata.get('skipped', {}))
    log = logging.warning if skipped else logging.info
    log('%s/%s built: %d examples; %s (metadata "skipped").', self.name,
        self.builder_config.layout, self.info.metadata.get('num_examples', 0),
        skip_summary(skipped))

  def _generate_examples(self, records: list[FrameRecord]) -> Iterator[tuple[str, dict[str, Any]]]:
    names = self.subject_names()
    index = {s: i for i, s in enumerate(names)}
    p = self.builder_config.num_landmarks
    for r in records:
      image = read_image(r.image_path, r.source)
      if r.landmarks is None:
        face = stored_faces.centre_crop_resize(image, IMAGE_SIZE)
        lm = np.zeros((0, 2), np.float32)
      elif (self.builder_config.layout == au_lists.LAYOUT_JAANET
            and image.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE)):
        # JAA-Net's preprocessing output: already aligned, landmarks in its pixels.
        face, lm = image, np.asarray(r.landmarks, np.float32)
      else:
        face, lm = stored_faces.align_jaanet(image, r.landmarks, IMAGE_SIZE)
      if lm.shape != (p, 2):
        raise AUDataError(f'{r.source}: expected {p} landmarks, got array of shape {lm.shape}.')
      yield r.key, {
          'image': face,
          'landmarks': lm.astype(np.float32),
          'au': r.au.astype(np.float32),
          'au_mask': r.au_mask.astype(np.float32),
          'au_intensity': r.au_intensity.astype(np.float32),
          'subject': index.get(r.subject_name, -1),
          'subject_name': r.subject_name,
          'image_path': r.key,
          'expression': -1,
          'expression_multi': np.zeros((6,), np.float32),
          'valence': 0.0,
          'arousal': 0.0,
      }


IMAGE_EXTENSIONS: tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp')
_DIGITS = re.compile(r'[0-9]{1,15}', re.ASCII)


def skip_summary(skipped: dict[str, int]) -> str:
  """'skipped: missing_frame 3, ...' or 'nothing skipped'."""
  if not skipped:
    return 'nothing skipped'
  return 'skipped: ' + ', '.join(f'{k} {int(v)}' for k, v in sorted(skipped.items()))


def numbered_files(directory: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> dict[int, str]:
  """{frame number: path} for files named ``<ASCII digits><ext>`` (any zero padding).

  Returns an empty dict when the directory does not exist.

  Raises:
    AUDataError: two files with the same number ('0011.jpg' and '11.png'), naming both.
  """
  out: dict[int, str] = {}
  if not os.path.isdir(directory):
    return out
  for name in sorted(os.listdir(directory)):
    stem, ext = os.path.splitext(name)
    if ext.lower() in extensions and _DIGITS.fullmatch(stem):
      path = os.path.join(directory, name)
      n = int(stem)
      if n in out:
        raise AUDataError(f'{path}: frame {n} has a second file (first {out[n]}); expected one '
                          'file per frame number.')
      out[n] = path
  return out

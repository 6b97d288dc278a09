"""EmotioNet AU dataset builder (tfds ``emotionet``): manually annotated images, 12 AUs, 3 folds.

Protocol (docs/reference/datasets.md, "EmotioNet"; MACG): AUs 1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26,
43 (``faujax.labels.EMOTIONET_AUS``), 3 folds. EmotioNet has no subject ids, so faujax defines
the partition: image ``name`` (the file name of its URL) goes to part ``1 + sha1(name) mod 3``
(``au_builder_base.part_by_hash``) and, within its part, to ``part<k>_val`` when
``(sha1(name) // 3) mod 10 == 0`` (about 10 %; ``hash_validation_names``). Fold k tests on part
k. Each image is its own "subject" (``subject_name`` = file name, ``subject`` = -1), so the
folds are image-exclusive.

Configs (= layouts of the manual dir, see ``MANUAL_DOWNLOAD_INSTRUCTIONS``):
  ``official``         annotation csv files in ``annotations/`` (challenge style: first column
                       the image URL or file name, then AU columns headed ``AU1`` / ``AU 1`` /
                       ``1``, values 0 / 1 / 999 with 999 = unknown -> ``au_mask`` 0; other
                       columns are ignored), images in ``images/<file name of the URL>``.
                       EmotioNet is distributed as URLs, many of which no longer resolve: listed
                       images that are absent are skipped and counted ('missing_image'), as are
                       rows with every AU unknown ('all_labels_unknown'); the counts are logged
                       at the end of the build. An image annotated twice, a blank row inside a
                       csv and the faults of ``read_annotation_csv`` are errors naming
                       file:line. Images are
                       centre-cropped to a square and resized to 200 (no landmarks: P = 0).
  ``megraphau_lists``  MACG-style fold lists ``EmotioNet_{train,test}_img_path_fold<k>.txt`` +
                       ``EmotioNet_{train,test}_label_fold<k>.txt`` (12 columns; 999 / 9 / -1
                       unknown); fold k's test list is part k; images under ``img/``.
"""

from __future__ import annotations

import os
import re
import urllib.parse

import numpy as np

from faujax import labels
from faujax.data import au_builder_base as base
from faujax.data import au_lists

ANNOTATION_DIR = 'annotations'
IMAGE_DIR = 'images'
UNKNOWN = 999.0
_AU_HEADER = re.compile(r'^(?:au)?\s*([0-9]{1,3})$', re.IGNORECASE | re.ASCII)
_CODES = (0.0, 1.0, UNKNOWN)


def image_name(url_or_name: str) -> str:
  """The file name of an EmotioNet URL or path ('http://x/a%20b.jpg?x=1' -> 'a b.jpg').

  A value with '://' is a URL: the last component of its path, percent-decoded (query and
  fragment dropped). Anything else is a file name or path taken as written: its last component.

  Raises:
    ValueError (au_lists.ListFormatError, without a location): a URL that cannot be parsed, a
      percent-encoding that is not UTF-8, or a name that is not a plain file name ('', '.',
      '..', or holding '/', '\\' or control characters after decoding).
  """
  text = url_or_name.strip()
  try:
    if '://' in text:  # a URL: its path's last component, percent-decoded.
      path = urllib.parse.urlsplit(text).path
      name = urllib.parse.unquote(path.rstrip('/').rsplit('/', 1)[-1], errors='strict')
    else:  # a file name or relative path, taken as written.
      name = text.rstrip('/').rsplit('/', 1)[-1]
  except ValueError as e:  # includes UnicodeDecodeError from a bad percent-encoding.
    raise au_lists.ListFormatError(
        f'cannot read an image file name from {text!r} ({e}); expected a URL or file name.'
    ) from None
  if (name in ('', '.', '..') or '/' in name or '\\' in name or
      any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in name)):
    raise au_lists.ListFormatError(
        f'image file name {name!r} (from {text!r}) is not a plain file name; expected the last '
        'path component of the URL to name a file in images/.')
  return name


def read_annotation_csv(
    path: str,
    aus: tuple[int, ...] = labels.EMOTIONET_AUS) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
  """Reads one EmotioNet annotation csv.

  Returns:
    [(image file name, au float32 (N,), au_mask float32 (N,), line)], 999 -> au 0, mask 0.

  Raises:
    ValueError (au_lists.ListFormatError): missing AU columns or an AU heading two columns, rows
      with the wrong number of columns, values other than 0 / 1 / 999 (including 'nan', '1e309'),
      an image name that is not a plain file name (see ``image_name``), blank rows inside the
      file, malformed csv quoting, non-UTF-8 bytes; the message names the file and the line.
      (Images annotated twice are detected by the builder across all csv files.)
  """
  rows = au_lists.read_csv_rows(path, 'a header "URL,AU1,AU2,..." then one row per image')
  header_line = rows[0][0]
  header = [h.strip() for h in rows[0][1]]
  cols: dict[int, int] = {}
  for j, h in enumerate(header[1:], start=1):
    m = _AU_HEADER.match(h)
    if m:
      au = int(m.group(1))
      if au in cols:
        raise au_lists.ListFormatError(
            f'{path}:{header_line}: AU {au} heads columns {cols[au] + 1} ({header[cols[au]]!r}) '
            f'and {j + 1} ({h!r}); expected each AU once.')
      cols[au] = j
  missing = [a for a in aus if a not in cols]
  if missing:
    raise au_lists.ListFormatError(
        f'{path}:{header_line}: no column for AU {missing}; expected a header "URL,AU1,AU2,..." '
        f'with columns for {list(aus)}.')
  idx = [cols[a] for a in aus]
  out = []
  for i, row in rows[1:]:
    where = f'{path}:{i}'
    if len(row) != len(header):
      raise au_lists.ListFormatError(
          f'{where}: {len(row)} columns; expected {len(header)} as in the header.')
    values = np.array([
        au_lists.parse_number(row[j], where, f'0, 1 or 999 in the AU columns (column {j + 1})')
        for j in idx
    ], np.float64)
    bad = ~np.isin(values, _CODES)
    if bad.any():
      raise au_lists.ListFormatError(
          f'{where}: AU{aus[int(np.argmax(bad))]} is {values[bad][0]:g}; expected 0, 1 or '
          '999 (unknown).')
    if not row[0].strip():
      raise au_lists.ListFormatError(
          f'{where}: empty image URL / file name in the first column.')
    try:
      name = image_name(row[0])
    except ValueError as e:
      raise au_lists.ListFormatError(f'{where}: {e}') from None
    unknown = values == UNKNOWN
    out.append((name, np.where(unknown, 0.0,
                               values).astype(np.float32), (~unknown).astype(np.float32), i))
  return out


class Emotionet(base.AUDatasetBuilder):
  """EmotioNet manually annotated AUs, 12 AUs, 3 image-exclusive folds (hash partition)."""

  DS_NAME = 'EmotioNet'
  AUS = labels.EMOTIONET_AUS
  PROTOCOL_PARTS = None
  TEST_PART_OF_FOLD = {1: 1, 2: 2, 3: 3}
  DESCRIPTION = ('EmotioNet manually annotated AU images, 12 AUs, 3 folds by a stable hash of '
                 'the file name.')
  HOMEPAGE = 'https://cbcsl.ece.ohio-state.edu/EmotionNetChallenge/'
  CITATION = (
      'Benitez-Quiroz et al., EmotioNet: An accurate, real-time algorithm for the automatic '
      'annotation of a million facial expressions in the wild, CVPR 2016.')
  BUILDER_CONFIGS = [
      base.AUBuilderConfig(layout=au_lists.LAYOUT_OFFICIAL, num_landmarks=0,
                           description='Annotation csv + downloaded images (no landmarks).'),
      base.AUBuilderConfig(layout=au_lists.LAYOUT_MEGRAPHAU, num_landmarks=0,
                           description='MACG-style fold lists (no landmarks).'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  EmotioNet is released for research use by the Ohio State University CBCSL: request access (the
  EmotioNet challenge database agreement) at
  https://cbcsl.ece.ohio-state.edu/EmotionNetChallenge/ and download the images from the URLs it
  provides. Then lay out the manual dir:

  emotionet/official:
    <manual>/annotations/*.csv   first column the image URL (or file name), then AU columns
                                 headed AU1 / "AU 1" / 1 (all of 1 2 4 5 6 9 12 17 20 25 26 43),
                                 values 0/1/999. Export .xlsx annotation files to csv first.
    <manual>/images/<file name of each URL>
  emotionet/megraphau_lists:
    <manual>/list/EmotioNet_{train,test}_img_path_fold{1,2,3}.txt
    <manual>/list/EmotioNet_{train,test}_label_fold{1,2,3}.txt
    <manual>/img/<path as listed>
  """

  OFFICIAL_FILES = (f'{ANNOTATION_DIR}/*.csv (image URL or file name, then AU columns) and '
                    f'{IMAGE_DIR}/<file name of each URL>')

  @classmethod
  def official_layout_present(cls, manual_dir: str) -> bool:
    """``annotations/`` holds a csv file (the official layout's distinctive files)."""
    ann_dir = os.path.join(manual_dir, ANNOTATION_DIR)
    return os.path.isdir(ann_dir) and any(f.lower().endswith('.csv') for f in os.listdir(ann_dir))

  def _official_records(self, manual_dir, skipped):
    ann_dir = os.path.join(manual_dir, ANNOTATION_DIR)
    img_dir = os.path.join(manual_dir, IMAGE_DIR)
    csvs = sorted(f for f in os.listdir(ann_dir)
                  if f.lower().endswith('.csv')) if os.path.isdir(ann_dir) else []
    if not csvs or not os.path.isdir(img_dir):
      raise base.AUDataError(
          f'Manual dir {manual_dir}: the official EmotioNet layout needs {ANNOTATION_DIR}/*.csv '
          f'and {IMAGE_DIR}/<file name> (found: csv files {len(csvs)}, images dir '
          f'{os.path.isdir(img_dir)}).' + self._layout_hint(manual_dir))
    n = len(self.AUS)
    records, seen = [], {}
    for fname in csvs:
      path = os.path.join(ann_dir, fname)
      for name, au, mask, line in read_annotation_csv(path, self.AUS):
        source = f'{path}:{line}'
        if name in seen:
          raise base.AUDataError(
              f'{source}: image {name} is annotated twice (first at {seen[name]}); '
              'expected one row per image.')
        seen[name] = source
        image_path = os.path.join(img_dir, name)
        if not os.path.isfile(image_path):
          skipped['missing_image'] += 1
          continue
        if mask.sum() == 0:
          skipped['all_labels_unknown'] += 1
          continue
        records.append(
            base.FrameRecord(key=name, image_path=image_path, subject_name=name, au=au,
                             au_mask=mask, au_intensity=np.full(
                                 (n,), -1.0, np.float32), landmarks=None, source=source))
    return records

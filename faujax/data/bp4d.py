"""BP4D-Spontaneous AU occurrence dataset builder (tfds ``bp4d``), 3 subject-exclusive folds.

Protocol (docs/reference/datasets.md, "BP4D"): the 12 AUs of ``faujax.labels.BP4D_AUS``;
occurrence from ``AUCoding/AU_OCC/<subject>_<task>.csv`` where 9 means "not coded" and becomes
``au_mask`` 0 (never a negative); the JAA-Net / ME-GraphAU subject partition below. Fold 1 tests
on part 3, fold 2 on part 2, fold 3 on part 1 (``TEST_PART_OF_FOLD``); 2 subjects of each part
(the last two of its sorted present subjects) form ``part<k>_val``.

Configs (= layouts of the manual dir, see ``MANUAL_DOWNLOAD_INSTRUCTIONS``):
  ``official``         frames + AU_OCC csv + iBUG ``.pts`` landmarks (49 or 68 points, stored
                       as 49); faces aligned to 200x200. Known gaps of the distribution are
                       skipped, counted in metadata 'skipped' and logged at the end of the
                       build: 'missing_frame' (AU_OCC row without a jpg), 'missing_landmarks',
                       'all_labels_unknown' (all 12 AUs coded 9), 'degenerate_landmarks'.
                       Everything else that is wrong in a csv (see ``read_au_occ_csv``: non-
                       integer or repeated frames, codes other than 0/1/9, blank rows, non-UTF-8
                       bytes) and two image files for one frame are errors naming file:line.
  ``megraphau_lists``  ME-GraphAU / MACG fold lists; the listed images (already cropped faces)
                       are centre-cropped to a square and resized to 200; no landmarks (P = 0).
  ``jaanet_lists``     JAA-Net ``BP4D_part<k>`` lists with 49 landmarks; 200x200 images are
                       taken as JAA-Net-aligned, others are aligned with the listed landmarks.
"""

from __future__ import annotations

import os
import re

import numpy as np

from faujax import labels
from faujax.data import au_builder_base as base
from faujax.data import au_lists
from faujax.geometry import schemes

PARTS: dict[int, tuple[str, ...]] = {
    1: ('F001', 'M007', 'F018', 'F008', 'F002', 'M004', 'F010', 'F009', 'M012', 'M001', 'F016',
        'M014', 'F023', 'M008'),
    2: ('M011', 'F003', 'M010', 'M002', 'F005', 'F022', 'M018', 'M017', 'F013', 'M016', 'F020',
        'F011', 'M013', 'M005'),
}
ALL_SUBJECTS: tuple[str, ...] = tuple([f'F{i:03d}' for i in range(1, 24)] +
                                      [f'M{i:03d}' for i in range(1, 19)])
PARTS[3] = tuple(s for s in ALL_SUBJECTS if s not in PARTS[1] + PARTS[2])
TEST_PART_OF_FOLD: dict[int, int] = {1: 3, 2: 2, 3: 1}

FRAME_ROOTS: tuple[str, ...] = ('BP4D-training', 'img')
AU_OCC_DIRS: tuple[str, ...] = (os.path.join('AUCoding', 'AU_OCC'), 'AU_OCC')
LANDMARK_ROOT = 'landmarks'
_CSV_NAME = re.compile(r'^([FM]\d{3})_(T\d+)\.csv$', re.ASCII)


_AU_COLUMN = re.compile(r'([0-9]{1,3})(?:\.0*)?', re.ASCII)
_OCC_CODES = (0.0, 1.0, 9.0)


def read_au_occ_csv(
    path: str, aus: tuple[int,
                          ...] = labels.BP4D_AUS) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
  """Reads one BP4D ``AU_OCC`` csv.

  Args:
    path: ``<subject>_<task>.csv``; header ``Frame,1,2,...`` then one row per frame.
    aus: the AUs to keep (all must be header columns; the other AU columns are not read).

  Returns:
    [(frame, au float32 (N,), au_mask float32 (N,), line)], 9 -> au 0, mask 0.

  Raises:
    ValueError (au_lists.ListFormatError): bad header (a column that is not an AU number, an AU
      twice), wrong number of columns, a frame that is not a non-negative integer ('11.7'), a
      frame twice, codes other than 0 / 1 / 9 (including 'nan', '1e309'), blank rows inside the
      file, non-UTF-8 bytes; the message names the file and the line.
  """
  what = 'a header "Frame,1,2,..." then one row "frame,codes" per frame'
  rows = au_lists.read_csv_rows(path, what)
  header_line, header = rows[0][0], [h.strip() for h in rows[0][1]]
  if header[0].lower() != 'frame':
    raise au_lists.ListFormatError(
        f'{path}:{header_line}: first header column is {header[:1]}; expected "Frame".')
  cols: dict[int, int] = {}
  for j, h in enumerate(header[1:], start=1):
    m = _AU_COLUMN.fullmatch(h)
    if m is None:
      raise au_lists.ListFormatError(
          f'{path}:{header_line}: header column {j + 1} is {h!r}; expected "Frame" then AU '
          'numbers.')
    au = int(m.group(1))
    if au in cols:
      raise au_lists.ListFormatError(
          f'{path}:{header_line}: AU {au} heads columns {cols[au] + 1} and {j + 1}; expected '
          'each AU once.')
    cols[au] = j
  missing = [a for a in aus if a not in cols]
  if missing:
    raise au_lists.ListFormatError(
        f'{path}:{header_line}: no column for AU {missing}; expected columns for {list(aus)}.')
  idx = [cols[a] for a in aus]
  out = []
  seen: dict[int, int] = {}
  for i, row in rows[1:]:
    where = f'{path}:{i}'
    if len(row) != len(header):
      raise au_lists.ListFormatError(
          f'{where}: {len(row)} columns; expected {len(header)} as in the header.')
    frame = au_lists.parse_int(row[0], where, 'a frame number')
    if frame in seen:
      raise au_lists.ListFormatError(
          f'{where}: frame {frame} appears twice (first at line {seen[frame]}); expected one row '
          'per frame.')
    seen[frame] = i
    values = np.array(
        [au_lists.parse_number(row[j], where, f'an AU code (column {j + 1})') for j in idx],
        np.float64)
    bad = ~np.isin(values, _OCC_CODES)
    if bad.any():
      j = int(np.argmax(bad))
      raise au_lists.ListFormatError(
          f'{where}: AU code {values[j]:g} for AU {aus[j]}; expected 0, 1 or 9 (not coded).')
    unknown = values == 9.0
    out.append((frame, np.where(unknown, 0.0, values).astype(np.float32),
                (~unknown).astype(np.float32), i))
  return out


class Bp4d(base.AUDatasetBuilder):
  """BP4D-Spontaneous, 12 AUs, 3 subject-exclusive folds (JAA-Net / ME-GraphAU partition)."""

  DS_NAME = 'BP4D'
  AUS = labels.BP4D_AUS
  PROTOCOL_PARTS = PARTS
  TEST_PART_OF_FOLD = TEST_PART_OF_FOLD
  NUM_VALIDATION_SUBJECTS = 2
  DESCRIPTION = 'BP4D-Spontaneous: 41 subjects, 12 AUs (occurrence), 3 subject-exclusive folds.'
  HOMEPAGE = 'http://www.cs.binghamton.edu/~lijun/Research/3DFE/3DFE_Analysis.html'
  CITATION = ('Zhang et al., BP4D-Spontaneous: a high-resolution spontaneous 3D dynamic facial '
              'expression database, Image and Vision Computing 32(10), 2014.')
  BUILDER_CONFIGS = [
      base.AUBuilderConfig(
          layout=au_lists.LAYOUT_OFFICIAL, num_landmarks=49,
          description='Official frames + AU_OCC csv + .pts landmarks (49 points).'),
      base.AUBuilderConfig(layout=au_lists.LAYOUT_MEGRAPHAU, num_landmarks=0,
                           description='ME-GraphAU / MACG fold lists (no landmarks).'),
      base.AUBuilderConfig(layout=au_lists.LAYOUT_JAANET, num_landmarks=49,
                           description='JAA-Net part lists with 49 landmarks.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  BP4D-Spontaneous is licensed by Binghamton University: request it through the official
  agreement at http://www.cs.binghamton.edu/~lijun/Research/3DFE/3DFE_Analysis.html . Then lay
  out the manual dir (faujax: `--config.data.manual_dir=DIR`; the config is detected from the
  files when `config.data.builder_config` is unset; the tfds CLI: `--manual_dir`) in one of:

  bp4d/official:
    <manual>/BP4D-training/<subject>/<task>/<frame>.jpg
        (or <manual>/img/...; any zero padding of the frame number)
    <manual>/AUCoding/AU_OCC/<subject>_<task>.csv
        (or <manual>/AU_OCC/; header "Frame,1,2,...", codes 0/1/9, 9 = not coded)
    <manual>/landmarks/<subject>/<task>/<frame>.pts
        (iBUG .pts, 49 or 68 points in the frame's pixels, e.g. from any 68-point tracker)
  bp4d/megraphau_lists:
    <manual>/list/BP4D_{train,test}_img_path_fold{1,2,3}.txt
    <manual>/list/BP4D_{train,test}_label_fold{1,2,3}.txt
    <manual>/img/<path as listed, e.g. F001/T1/2440.jpg>
  bp4d/jaanet_lists:
    <manual>/list/BP4D_part{1,2,3}_{path,land,biocular,AUoccur}.txt
    <manual>/imgs/<path as listed>   (JAA-Net's 200x200 aligned faces, or raw frames)
  List files may also sit directly in <manual>/.
  """

  OFFICIAL_FILES = (f'{AU_OCC_DIRS[0]}/<subject>_<task>.csv (or AU_OCC/), '
                    f'{FRAME_ROOTS[0]}/<subject>/<task>/<frame>.jpg (or img/) and '
                    f'{LANDMARK_ROOT}/<subject>/<task>/<frame>.pts')

  @classmethod
  def official_layout_present(cls, manual_dir: str) -> bool:
    """The AU_OCC label directory is present (the official layout's distinctive files)."""
    return any(os.path.isdir(os.path.join(manual_dir, d)) for d in AU_OCC_DIRS)

  def _official_records(self, manual_dir, skipped):
    occ_dir = next((os.path.join(manual_dir, d)
                    for d in AU_OCC_DIRS
                    if os.path.isdir(os.path.join(manual_dir, d))), None)
    frame_root = next((os.path.join(manual_dir, d)
                       for d in FRAME_ROOTS
                       if os.path.isdir(os.path.join(manual_dir, d))), None)
    lm_root = os.path.join(manual_dir, LANDMARK_ROOT)
    if occ_dir is None or frame_root is None or not os.path.isdir(lm_root):
      raise base.AUDataError(
          f'Manual dir {manual_dir}: the official BP4D layout needs '
          f'{AU_OCC_DIRS[0]}/<subject>_<task>.csv, {FRAME_ROOTS[0]}/<subject>/<task>/<frame>.jpg '
          f'and {LANDMARK_ROOT}/<subject>/<task>/<frame>.pts (found: AU_OCC {occ_dir is not None}, '
          f'frames {frame_root is not None}, landmarks {os.path.isdir(lm_root)}).'
          + self._layout_hint(manual_dir))
    n = len(self.AUS)
    records = []
    for name in sorted(os.listdir(occ_dir)):
      path = os.path.join(occ_dir, name)
      if not name.lower().endswith('.csv'):
        continue
      m = _CSV_NAME.match(name)
      if m is None:
        raise base.AUDataError(
            f'{path}: file name does not match <subject>_<task>.csv (e.g. F001_T1.csv).')
      subject, task = m.groups()
      if self.protocol_part_of_subject(subject) is None:
        raise base.AUDataError(
            f'{path}: subject {subject!r} is outside the BP4D protocol; expected one '
            f'of {self.subject_names()}.')
      frames = base.numbered_files(os.path.join(frame_root, subject, task))
      marks = base.numbered_files(os.path.join(lm_root, subject, task), ('.pts',))
      for frame, au, mask, line in read_au_occ_csv(path, self.AUS):
        source = f'{path}:{line}'
        if mask.sum() == 0:
          skipped['all_labels_unknown'] += 1
          continue
        if frame not in frames:
          skipped['missing_frame'] += 1
          continue
        if frame not in marks:
          skipped['missing_landmarks'] += 1
          continue
        lm = au_lists.read_pts(marks[frame])
        if len(lm) == 68:
          lm = lm[schemes.IDX_49_IN_68]
        elif len(lm) != 49:
          raise base.AUDataError(f'{marks[frame]}: {len(lm)} points; expected 49 or 68 for BP4D.')
        rel = os.path.relpath(frames[frame], frame_root).replace(os.sep, '/')
        records.append(
            base.FrameRecord(key=rel, image_path=frames[frame], subject_name=subject, au=au,
                             au_mask=mask, au_intensity=np.full(
                                 (n,), -1.0, np.float32), landmarks=lm, source=source))
    if not records and not skipped:
      raise base.AUDataError(
          f'{occ_dir}: no <subject>_<task>.csv files; expected the AU_OCC csv files.')
    return records

"""Readers for the list-file layouts that AU users already have on disk, and the text rules.

Two layouts are widely shared (docs/reference/datasets.md, "List-file layouts"):

* ME-GraphAU / MACG style, one set of files per fold k in 1..3::

    <DS>_train_img_path_fold<k>.txt   relative image paths, one per line ("F001/T1/2440.jpg")
    <DS>_test_img_path_fold<k>.txt
    <DS>_train_label_fold<k>.txt      space-separated 0/1 rows, one per path, N columns
    <DS>_test_label_fold<k>.txt
    <DS>_train_weight_fold<k>.txt     one row of N per-AU loss weights (optional, not read)

  Fold k trains on every part except the one it tests on (ME-GraphAU: "fold1: train part1 +
  part2, test part3"), so each image sits in exactly one test list and in the training list of
  each other fold. faujax reads all six lists of the three folds and uses every entry: an image
  that is in no test list, or missing from the training list of a fold that trains on its part,
  and an image whose labels differ between two lists, are ``ListFormatError`` naming both files
  and lines (``merge_megraphau_folds``, ``check_megraphau_membership``).

* JAA-Net style, one set of files per prefix (faujax reads the prefixes ``<DS>_part<k>``)::

    <prefix>_path.txt       relative image paths, one per line
    <prefix>_land.txt       49 landmarks per line, x y interleaved (98 numbers)
    <prefix>_biocular.txt   one positive number per line: the inter-ocular distance (checked)
    <prefix>_AUoccur.txt    space-separated 0/1 rows, N columns
    <prefix>_weight.txt     one row of N per-AU weights (optional, not read)

Label values 0 and 1 are occurrence; 9 (BP4D "not coded"), 999 (EmotioNet) and -1 are read as
unknown and produce a mask of 0 (never a negative). Every other value, a row with the wrong
number of columns, or files of different lengths raise ``ListFormatError`` naming the file and
the 1-based line.

Text rules: every AU text file (lists, BP4D / EmotioNet csv, DISFA label files, .pts) is read by
``faujax.data.text_files``, the reader of every dataset text file: UTF-8 with at most one leading
byte-order mark, LF or CRLF line ends; bytes that are not UTF-8 (named by their byte offset), a
carriage return that ends no line, control characters other than tab, U+FEFF inside the file
and U+2028 / U+2029 are errors naming file:line. Blank lines at the end of a file are ignored; a
blank line anywhere else is an error (it would shift the rows of parallel files), and so is a
file with no content. In addition:

* A path-list line is one path: the whole line with leading and trailing spaces and tabs removed
  (the ME-GraphAU and JAA-Net loaders use ``line.strip()``), so spaces inside a path are kept.
  '\\' is read as '/', '.' and empty components are dropped; absolute paths and '..' components
  (a path outside the image root) are errors. The same image twice in a list is an error naming
  both lines.
* Numbers are ASCII decimals (``1``, ``-1``, ``0.5``, ``1e3``); 'nan', 'inf' and values beyond
  the float32 range are errors naming file:line. Fields are separated by spaces, tabs or commas;
  an empty field (``1,,0``) is an error. Frame numbers are non-negative integers written with
  digits only (``11.7`` and ``11.0`` are errors).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from faujax.data import text_files

# Label values read as "unknown" (mask 0): BP4D's 9, EmotioNet's 999, and -1.
UNKNOWN_LABEL_VALUES: tuple[float, ...] = (9.0, 999.0, -1.0)

LAYOUT_OFFICIAL = 'official'
LAYOUT_MEGRAPHAU = 'megraphau_lists'
LAYOUT_JAANET = 'jaanet_lists'
LAYOUTS: tuple[str, ...] = (LAYOUT_OFFICIAL, LAYOUT_MEGRAPHAU, LAYOUT_JAANET)

# Sub-directories of the manual dir searched for list files (in this order).
LIST_SUBDIRS: tuple[str, ...] = ('list', '')

# The largest magnitude a stored number may have (labels and landmarks are float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)

_NUMBER = re.compile(r'[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?', re.ASCII)
_INTEGER = re.compile(r'[0-9]+', re.ASCII)
_FIELD_SEP = re.compile(r'[ \t]*,[ \t]*|[ \t]+')
_WS = ' \t'
_MAX_INT_DIGITS = 15


class ListFormatError(ValueError):
  """A list or label file does not have the expected layout (message names file and line)."""


@dataclasses.dataclass(frozen=True)
class ListEntry:
  """One image of a list layout.

  Attributes:
    path: the image path relative to the image root, '/'-separated, normalised.
    au: float32 (N,) occurrence 0/1 (0 where unknown).
    au_mask: float32 (N,) 1 where the label is known, 0 where unknown.
    landmarks: float32 (P, 2) (x, y) landmarks in the listed image's pixels, or None.
    source: 'file:line' of the path entry, for error messages.
    label_source: 'file:line' of the label row.
  """
  path: str
  au: np.ndarray
  au_mask: np.ndarray
  landmarks: np.ndarray | None
  source: str
  label_source: str = ''


# ------------------------------------------------------------------------------- text


def _list_error(e: text_files.TextFileError) -> ListFormatError:
  """A text-rule fault in this module's form: 'file:line: ...', bytes that are not UTF-8 named
  by their offset in the file."""
  if e.line is None:
    return ListFormatError(str(e))
  return ListFormatError(f'{e.path}:{e.line}: {e.offset_detail or e.detail}')


def read_lines(path: str, what: str) -> list[tuple[int, str]]:
  """[(line, text)] of a text file's lines (``text_files.read_lines``: no blank line inside).

  Raises:
    ListFormatError: a missing file, a text fault, a blank line inside, no content (file:line).
  """
  return text_files.read_lines(path, what, error=_list_error)


def read_csv_rows(path: str, what: str) -> list[tuple[int, list[str]]]:
  """[(line, cells)] of a csv file (``text_files.read_csv_rows``: no empty row inside).

  Raises:
    ListFormatError: as ``read_lines``, and a row that is not valid csv (file:line).
  """
  return text_files.read_csv_rows(path, what, error=_list_error)


def split_fields(line: str, where: str) -> list[str]:
  """The fields of a line separated by spaces, tabs or commas; an empty field is an error."""
  fields = _FIELD_SEP.split(line.strip(_WS))
  if '' in fields:
    raise ListFormatError(
        f'{where}: empty field in {line!r}; expected values separated by spaces or commas.')
  return fields


def parse_number(token: str, where: str, what: str = 'a number',
                 limit: float = FLOAT32_MAX) -> float:
  """A finite ASCII decimal number with magnitude <= ``limit``; else ListFormatError."""
  token = token.strip(_WS)
  if _NUMBER.fullmatch(token) is None:
    raise ListFormatError(f'{where}: expected {what}, found {token!r}.')
  value = float(token)
  if not abs(value) <= limit:
    raise ListFormatError(
        f'{where}: {token!r} is out of range; expected {what} of magnitude at most {limit:.4g}.')
  return value


def parse_int(token: str, where: str, what: str = 'a frame number', minimum: int = 0) -> int:
  """A non-negative integer written with ASCII digits only (>= ``minimum``); else ListFormatError."""
  token = token.strip(_WS)
  if _INTEGER.fullmatch(token) is None:
    raise ListFormatError(
        f'{where}: expected {what} (an integer written with digits only), found {token!r}.')
  if len(token.lstrip('0')) > _MAX_INT_DIGITS:
    raise ListFormatError(f'{where}: {what} {token!r} is out of range.')
  value = int(token)
  if value < minimum:
    raise ListFormatError(f'{where}: {what} is {value}; expected at least {minimum}.')
  return value


def normalise_relative_path(raw: str, where: str) -> str:
  """'/'-separated path relative to the image root ('\\' -> '/', '.' and '' parts dropped).

  Raises:
    ListFormatError: an absolute path, a '..' component, or no file name (``where`` first).
  """
  p = raw.replace('\\', '/')
  if p.startswith('/') or re.match(r'[A-Za-z]:', p):
    raise ListFormatError(
        f'{where}: image path {raw!r} is absolute; expected a path relative to the image root.')
  parts = [c for c in p.split('/') if c not in ('', '.')]
  if '..' in parts:
    raise ListFormatError(
        f'{where}: image path {raw!r} has a ".." component and may leave the image root; '
        'expected a path relative to the image root, without "..".')
  if not parts:
    raise ListFormatError(f'{where}: image path {raw!r} names no file.')
  return '/'.join(parts)


# ----------------------------------------------------------------------------- lists


def read_path_list(path: str) -> list[str]:
  """Relative image paths, one per line: the whole stripped line (see the text rules).

  Raises:
    ListFormatError: an absolute or '..' path, or the same image twice (both lines named).
  """
  out: list[str] = []
  seen: dict[str, int] = {}
  for i, line in read_lines(path, 'one image path per line'):
    rel = normalise_relative_path(line, f'{path}:{i}')
    if rel in seen:
      raise ListFormatError(
          f'{path}:{i}: image {rel} is listed twice (first at {path}:{seen[rel]}); expected each '
          'image once per list.')
    seen[rel] = i
    out.append(rel)
  return out


def read_number_rows(path: str, num_columns: int, what: str,
                     dtype: Any = np.float32) -> np.ndarray:
  """A (M, num_columns) array (float32) from rows of finite numbers; bad rows name file:line."""
  rows = []
  for i, line in read_lines(path, f'{num_columns} {what} per row'):
    where = f'{path}:{i}'
    parts = split_fields(line, where)
    if len(parts) != num_columns:
      raise ListFormatError(
          f'{where}: expected {num_columns} {what} per row, found {len(parts)}.')
    rows.append([
        parse_number(p, f'{where}', f'numbers ({what}) in column {c}')
        for c, p in enumerate(parts, start=1)
    ])
  return np.asarray(rows, dtype).reshape(len(rows), num_columns)


def labels_to_occurrence(values: np.ndarray, path: str,
                         first_line: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Maps raw occurrence codes (M, N) to (au, au_mask), both float32 (M, N).

  0 / 1 are occurrence; values in UNKNOWN_LABEL_VALUES become au 0 with mask 0. The codes are
  compared exactly (in float64: '1.0000001' is not 1).

  Raises:
    ListFormatError: any other value, naming the file and line.
  """
  values = np.asarray(values, np.float64)
  unknown = np.isin(values, UNKNOWN_LABEL_VALUES)
  valid = unknown | (values == 0) | (values == 1)
  if not valid.all():
    r, c = np.argwhere(~valid)[0]
    raise ListFormatError(
        f'{path}:{r + first_line}: column {c + 1} holds {values[r, c]:g}; expected 0, 1 or an '
        f'unknown code {UNKNOWN_LABEL_VALUES}.')
  au = np.where(unknown, 0.0, values).astype(np.float32)
  return au, (~unknown).astype(np.float32)


def read_label_rows(path: str, num_aus: int) -> tuple[np.ndarray, np.ndarray]:
  """Reads a 0/1 label file: returns (au, au_mask), float32 (M, num_aus)."""
  return labels_to_occurrence(read_number_rows(path, num_aus, 'AU labels', np.float64), path)


def read_landmark_rows(path: str, num_points: int = 49) -> np.ndarray:
  """Reads x y interleaved landmark rows: float32 (M, num_points, 2)."""
  rows = read_number_rows(path, 2 * num_points, 'landmark coordinates (x y interleaved)')
  return rows.reshape(-1, num_points, 2)


def read_biocular(path: str) -> np.ndarray:
  """Reads a JAA-Net bi-ocular file: float32 (M,), one positive distance per line."""
  rows = read_number_rows(path, 1, 'inter-ocular distance')[:, 0]
  bad = np.flatnonzero(~(rows > 0))
  if bad.size:
    raise ListFormatError(
        f'{path}:{bad[0] + 1}: inter-ocular distance {rows[bad[0]]:g}; expected a positive number.')
  return rows


def find_list_dir(manual_dir: str, file_names: Sequence[str]) -> str | None:
  """The first of <manual>/list, <manual> that holds all `file_names`, else None."""
  for sub in LIST_SUBDIRS:
    d = os.path.join(manual_dir, sub) if sub else manual_dir
    if all(os.path.isfile(os.path.join(d, n)) for n in file_names):
      return d
  return None


def megraphau_file_names(ds_name: str, fold: int) -> dict[str, str]:
  """The ME-GraphAU / MACG list file names of one fold (weights are optional)."""
  return {
      'train_paths': f'{ds_name}_train_img_path_fold{fold}.txt',
      'test_paths': f'{ds_name}_test_img_path_fold{fold}.txt',
      'train_labels': f'{ds_name}_train_label_fold{fold}.txt',
      'test_labels': f'{ds_name}_test_label_fold{fold}.txt',
  }


def jaanet_file_names(prefix: str) -> dict[str, str]:
  """The JAA-Net list file names of one prefix (weights are optional)."""
  return {
      'paths': f'{prefix}_path.txt',
      'landmarks': f'{prefix}_land.txt',
      'biocular': f'{prefix}_biocular.txt',
      'labels': f'{prefix}_AUoccur.txt',
  }


def _check_same_length(files: dict[str, tuple[str, int]]) -> None:
  """Raises at the first line that one file of a parallel set lacks (file:line of the short one)."""
  lengths = {n for _, n in files.values()}
  if len(lengths) > 1:
    short, n = min(files.values(), key=lambda pn: pn[1])
    desc = ', '.join(f'{p} ({n} lines)' for p, n in files.values())
    raise ListFormatError(
        f'{short}:{n + 1}: list files of one set differ in length: {desc}; expected one line per '
        'image in every file of the set.')


def read_megraphau_list(path_file: str, label_file: str, num_aus: int) -> list[ListEntry]:
  """Reads one ME-GraphAU path list with its label file (no landmarks)."""
  paths = read_path_list(path_file)
  au, mask = read_label_rows(label_file, num_aus)
  _check_same_length({'p': (path_file, len(paths)), 'l': (label_file, len(au))})
  return [
      ListEntry(path=p, au=au[i], au_mask=mask[i], landmarks=None, source=f'{path_file}:{i + 1}',
                label_source=f'{label_file}:{i + 1}') for i, p in enumerate(paths)
  ]


def read_megraphau_folds(
    list_dir: str, ds_name: str, num_aus: int,
    folds: Sequence[int] = (1, 2, 3)) -> dict[int, dict[str, list[ListEntry]]]:
  """Reads every fold's train and test lists: {fold: {'train': [...], 'test': [...]}}."""
  out = {}
  for k in folds:
    names = megraphau_file_names(ds_name, k)
    full = {key: os.path.join(list_dir, n) for key, n in names.items()}
    out[k] = {
        split: read_megraphau_list(full[f'{split}_paths'], full[f'{split}_labels'], num_aus)
        for split in ('train', 'test')
    }
  return out


@dataclasses.dataclass
class ListedImage:
  """Where one image of the ME-GraphAU layout is listed.

  Attributes:
    entry: its test-list entry (the first training entry while it has none).
    test_fold: the fold whose test list holds it, or None.
    train: {fold: its entry in that fold's training list}.
  """
  entry: ListEntry
  test_fold: int | None
  train: dict[int, ListEntry]


def format_labels(e: ListEntry) -> str:
  """'0 1 - 1' ('-' = unknown): an entry's labels for messages."""
  return ' '.join('-' if m == 0 else f'{a:g}' for a, m in zip(e.au, e.au_mask))


def merge_megraphau_folds(
    folds: Mapping[int, Mapping[str, Sequence[ListEntry]]]) -> dict[str, ListedImage]:
  """Joins the entries of every list by image path: {path: ListedImage}, in reading order.

  Raises:
    ListFormatError: an image whose labels differ between two lists (both label files and lines
      named), an image in two test lists, in the training and the test list of one fold, or
      twice in one list.
  """
  out: dict[str, ListedImage] = {}
  for k in sorted(folds):
    for split in ('test', 'train'):
      for e in folds[k][split]:
        img = out.get(e.path)
        if img is None:
          out[e.path] = ListedImage(e, k if split == 'test' else None,
                                    {} if split == 'test' else {k: e})
          continue
        ref = img.entry
        if not (np.array_equal(e.au, ref.au) and np.array_equal(e.au_mask, ref.au_mask)):
          raise ListFormatError(
              f'{e.label_source}: labels of image {e.path} are [{format_labels(e)}] but '
              f'{ref.label_source} gives [{format_labels(ref)}] (- = unknown; image listed at '
              f'{ref.source} and {e.source}); expected the same labels in every list.')
        if split == 'test':
          if img.test_fold is not None:
            raise ListFormatError(
                f'{e.source}: image {e.path} is in the test list of fold {k} and of fold '
                f'{img.test_fold} ({ref.source}); expected each image in one test list.')
          if k in img.train:
            raise ListFormatError(
                f'{e.source}: image {e.path} is in the test list of fold {k} and in its training '
                f'list ({img.train[k].source}); expected disjoint training and test lists.')
          img.test_fold, img.entry = k, e
        else:
          if k in img.train:
            raise ListFormatError(
                f'{e.source}: image {e.path} is listed twice (first at {img.train[k].source}); '
                'expected each image once per list.')
          if img.test_fold == k:
            raise ListFormatError(
                f'{e.source}: training entry {e.path} of fold {k} is also in the fold\'s test '
                f'list ({ref.source}); expected disjoint training and test lists.')
          img.train[k] = e
  return out


def check_megraphau_membership(images: Mapping[str, ListedImage],
                               test_part_of_fold: Mapping[int, int],
                               train_list_files: Mapping[int, str]) -> None:
  """Checks that the lists describe parts: fold k tests on one part and trains on the others.

  Every image must be in exactly one test list (its part) and in the training list of every
  other fold; otherwise the built parts could not reproduce the lists.

  Raises:
    ListFormatError: the first image that breaks the rule (file:line), with the count of all.
  """
  folds = sorted(test_part_of_fold)
  problems = []
  for path, img in images.items():
    if img.test_fold is None:
      problems.append(
          f'{img.entry.source}: image {path} is in the training list of fold(s) '
          f'{sorted(img.train)} but in no test list; expected every image in the test list of '
          'the fold that tests on its part (each fold trains on the other folds\' test images).')
      continue
    for j in folds:
      if j != img.test_fold and j not in img.train:
        problems.append(
            f'{img.entry.source}: image {path} of fold {img.test_fold}\'s test list (part '
            f'{test_part_of_fold[img.test_fold]}) is missing from fold {j}\'s training list '
            f'{train_list_files[j]}; expected each fold\'s training list to hold the test images '
            'of the other folds.')
  if problems:
    more = f' ({len(problems)} such problems in all.)' if len(problems) > 1 else ''
    raise ListFormatError(problems[0] + more)


def read_jaanet_set(list_dir: str, prefix: str, num_aus: int,
                    num_points: int = 49) -> list[ListEntry]:
  """Reads one JAA-Net prefix: paths, 49 landmarks, bi-ocular distances and AU occurrence."""
  names = {k: os.path.join(list_dir, v) for k, v in jaanet_file_names(prefix).items()}
  paths = read_path_list(names['paths'])
  lands = read_landmark_rows(names['landmarks'], num_points)
  biocular = read_biocular(names['biocular'])
  au, mask = read_label_rows(names['labels'], num_aus)
  _check_same_length({
      'p': (names['paths'], len(paths)),
      'm': (names['landmarks'], len(lands)),
      'b': (names['biocular'], len(biocular)),
      'l': (names['labels'], len(au)),
  })
  return [
      ListEntry(path=p, au=au[i], au_mask=mask[i], landmarks=lands[i],
                source=f'{names["paths"]}:{i + 1}', label_source=f'{names["labels"]}:{i + 1}')
      for i, p in enumerate(paths)
  ]


def detect_layouts(manual_dir: str, ds_name: str) -> list[str]:
  """The list layouts whose files (fold/part 1) are present in the manual dir."""
  found = []
  if find_list_dir(manual_dir, list(megraphau_file_names(ds_name, 1).values())) is not None:
    found.append(LAYOUT_MEGRAPHAU)
  if find_list_dir(manual_dir, list(jaanet_file_names(f'{ds_name}_part1').values())) is not None:
    found.append(LAYOUT_JAANET)
  return found


def subject_of_path(rel_path: str) -> str:
  """The subject of a relative frame path: its first component ('F001/T1/2440.jpg' -> 'F001')."""
  return rel_path.split('/')[0]


# ------------------------------------------------------------------------------- .pts


def read_pts(path: str, allowed_points: Sequence[int] = (68, 66, 49)) -> np.ndarray:
  """Reads an iBUG ``.pts`` landmark file: float32 (P, 2), P in ``allowed_points``.

  Format: header lines (``version: 1``, ``n_points: P``), ``{``, P lines ``x y``, ``}``.

  Raises:
    ListFormatError: a missing or repeated ``n_points``, a point count outside
      ``allowed_points``, a missing ``{`` or ``}``, a point line that is not two finite numbers
      (too few points show as ``}`` where a point was expected), text after ``}``; file:line.
  """
  lines = [text for _, text in read_lines(path, 'an iBUG .pts file')]  # line n: lines[n - 1]
  n, n_line, i = None, 0, 0
  while i < len(lines) and lines[i] != '{':
    key, _, value = lines[i].partition(':')
    if key.strip(_WS) == 'n_points':
      if n_line:
        raise ListFormatError(
            f'{path}:{i + 1}: a second "n_points" line (first at line {n_line}); expected one.')
      n_line = i + 1
      n = parse_int(value, f'{path}:{n_line}', 'n_points')
    i += 1
  if i == len(lines):
    raise ListFormatError(
        f'{path}:{len(lines)}: no "{{" line; expected an iBUG .pts header with "n_points: P", '
        'then "{", P lines "x y" and "}".')
  if n is None:
    raise ListFormatError(
        f'{path}:{i + 1}: "{{" without an "n_points: P" header line before it.')
  if n not in allowed_points:
    raise ListFormatError(
        f'{path}:{n_line}: n_points is {n}; expected one of {tuple(allowed_points)}.')
  pts = []
  for j in range(n):
    k = i + 1 + j
    if k >= len(lines):
      raise ListFormatError(
          f'{path}:{len(lines)}: the file ends after {j} of {n} points; expected {n} lines '
          '"x y" and "}".')
    where, line = f'{path}:{k + 1}', lines[k]
    parts = re.split(r'[ \t]+', line)
    if len(parts) != 2 or any(_NUMBER.fullmatch(p) is None for p in parts):
      raise ListFormatError(f'{where}: expected "x y", found {line!r}.')
    pts.append([parse_number(p, where, 'a coordinate') for p in parts])
  k = i + 1 + n
  if k >= len(lines):
    raise ListFormatError(f'{path}:{len(lines)}: the file ends without "}}" after {n} points.')
  if lines[k] != '}':
    raise ListFormatError(
        f'{path}:{k + 1}: expected "}}" after {n} points, found {lines[k]!r}.')
  if k + 1 < len(lines):
    raise ListFormatError(f'{path}:{k + 2}: text after the closing "}}"; expected nothing.')
  return np.asarray(pts, np.float32)


def write_pts(path: str, landmarks: np.ndarray) -> None:
  """Writes (P, 2) landmarks as an iBUG ``.pts`` file (the format ``read_pts`` reads)."""
  lines = ['version: 1', f'n_points: {len(landmarks)}', '{']
  lines += [f'{x:.3f} {y:.3f}' for x, y in np.asarray(landmarks, np.float64)]
  lines.append('}')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')

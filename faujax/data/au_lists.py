"""Readers for the list-file layouts that AU users already have on disk.

Two layouts are widely shared (docs/reference/datasets.md, "List-file layouts"):

* ME-GraphAU / MACG style, one set of files per fold k in 1..3::

    <DS>_train_img_path_fold<k>.txt   relative image paths, one per line ("F001/T1/2440.jpg")
    <DS>_test_img_path_fold<k>.txt
    <DS>_train_label_fold<k>.txt      space-separated 0/1 rows, one per path, N columns
    <DS>_test_label_fold<k>.txt
    <DS>_train_weight_fold<k>.txt     one row of N per-AU loss weights (optional, not read)

* JAA-Net style, one set of files per prefix (faujax reads the prefixes ``<DS>_part<k>``)::

    <prefix>_path.txt       relative image paths, one per line
    <prefix>_land.txt       49 landmarks per line, x y interleaved (98 numbers)
    <prefix>_biocular.txt   one number per line: the inter-ocular distance (checked for length)
    <prefix>_AUoccur.txt    space-separated 0/1 rows, N columns
    <prefix>_weight.txt     one row of N per-AU weights (optional, not read)

Label values 0 and 1 are occurrence; 9 (BP4D "not coded"), 999 (EmotioNet) and -1 are read as
unknown and produce a mask of 0 (never a negative). Every other value, a row with the wrong
number of columns, or files of different lengths raise ``ListFormatError`` naming the file and
the 1-based line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

# Label values read as "unknown" (mask 0): BP4D's 9, EmotioNet's 999, and -1.
UNKNOWN_LABEL_VALUES: tuple[float, ...] = (9.0, 999.0, -1.0)

LAYOUT_OFFICIAL = 'official'
LAYOUT_MEGRAPHAU = 'megraphau_lists'
LAYOUT_JAANET = 'jaanet_lists'
LAYOUTS: tuple[str, ...] = (LAYOUT_OFFICIAL, LAYOUT_MEGRAPHAU, LAYOUT_JAANET)

# Sub-directories of the manual dir searched for list files (in this order).
LIST_SUBDIRS: tuple[str, ...] = ('list', '')


class ListFormatError(ValueError):
  """A list or label file does not have the expected layout (message names file and line)."""


@dataclasses.dataclass(frozen=True)
class ListEntry:
  """One image of a list layout.

  Attributes:
    path: the image path relative to the image root, '/'-separated.
    au: float32 (N,) occurrence 0/1 (0 where unknown).
    au_mask: float32 (N,) 1 where the label is known, 0 where unknown.
    landmarks: float32 (P, 2) (x, y) landmarks in the listed image's pixels, or None.
    source: 'file:line' of the path entry, for error messages.
  """
  path: str
  au: np.ndarray
  au_mask: np.ndarray
  landmarks: np.ndarray | None
  source: str


def read_lines(path: str) -> list[str]:
  """Non-empty stripped lines of a text file (raises ListFormatError if missing)."""
  if not os.path.isfile(path):
    raise ListFormatError(f'List file {path} does not exist.')
  with open(path, encoding='utf-8') as f:
    lines = [line.strip() for line in f]
  while lines and not lines[-1]:
    lines.pop()
  for i, line in enumerate(lines):
    if not line:
      raise ListFormatError(
          f'{path}:{i + 1}: empty line inside the list; expected one entry per line.')
  return lines


def read_path_list(path: str) -> list[str]:
  """Relative image paths, one per line ('\\' normalised to '/')."""
  out = []
  for i, line in enumerate(read_lines(path)):
    rel = line.split()[0].replace('\\', '/')
    if rel.startswith('/') or '..' in rel.split('/'):
      raise ListFormatError(
          f'{path}:{i + 1}: image path {rel!r} must be relative to the image root, without "..".')
    out.append(rel)
  return out


def read_number_rows(path: str, num_columns: int, what: str) -> np.ndarray:
  """A (M, num_columns) float array from whitespace-separated rows; bad rows name file:line."""
  rows = []
  for i, line in enumerate(read_lines(path)):
    parts = line.replace(',', ' ').split()
    if len(parts) != num_columns:
      raise ListFormatError(
          f'{path}:{i + 1}: expected {num_columns} {what} per row, found {len(parts)}.')
    try:
      rows.append([float(p) for p in parts])
    except ValueError:
      raise ListFormatError(f'{path}:{i + 1}: expected numbers, found {line!r}.') from None
  return np.asarray(rows, np.float32).reshape(len(rows), num_columns)


def labels_to_occurrence(values: np.ndarray, path: str,
                         first_line: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Maps raw occurrence codes (M, N) to (au, au_mask), both float32 (M, N).

  0 / 1 are occurrence; values in UNKNOWN_LABEL_VALUES become au 0 with mask 0.

  Raises:
    ListFormatError: any other value, naming the file and line.
  """
  values = np.asarray(values, np.float32)
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
  return labels_to_occurrence(read_number_rows(path, num_aus, 'AU labels'), path)


def read_landmark_rows(path: str, num_points: int = 49) -> np.ndarray:
  """Reads x y interleaved landmark rows: float32 (M, num_points, 2)."""
  rows = read_number_rows(path, 2 * num_points, 'landmark coordinates (x y interleaved)')
  return rows.reshape(-1, num_points, 2)


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
  lengths = {n for _, n in files.values()}
  if len(lengths) > 1:
    desc = ', '.join(f'{p} ({n} lines)' for p, n in files.values())
    raise ListFormatError(
        f'List files of one set differ in length: {desc}; expected one line per image.')


def read_megraphau_list(path_file: str, label_file: str, num_aus: int) -> list[ListEntry]:
  """Reads one ME-GraphAU path list with its label file (no landmarks)."""
  paths = read_path_list(path_file)
  au, mask = read_label_rows(label_file, num_aus)
  _check_same_length({'p': (path_file, len(paths)), 'l': (label_file, len(au))})
  return [
      ListEntry(path=p, au=au[i], au_mask=mask[i], landmarks=None, source=f'{path_file}:{i + 1}')
      for i, p in enumerate(paths)
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


def read_jaanet_set(list_dir: str, prefix: str, num_aus: int,
                    num_points: int = 49) -> list[ListEntry]:
  """Reads one JAA-Net prefix: paths, 49 landmarks, bi-ocular distances and AU occurrence."""
  names = {k: os.path.join(list_dir, v) for k, v in jaanet_file_names(prefix).items()}
  paths = read_path_list(names['paths'])
  lands = read_landmark_rows(names['landmarks'], num_points)
  biocular = read_number_rows(names['biocular'], 1, 'inter-ocular distance')
  au, mask = read_label_rows(names['labels'], num_aus)
  _check_same_length({
      'p': (names['paths'], len(paths)),
      'm': (names['landmarks'], len(lands)),
      'b': (names['biocular'], len(biocular)),
      'l': (names['labels'], len(au)),
  })
  return [
      ListEntry(path=p, au=au[i], au_mask=mask[i], landmarks=lands[i],
                source=f'{names["paths"]}:{i + 1}') for i, p in enumerate(paths)
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


def read_pts(path: str, allowed_points: Sequence[int] = (68, 66, 49)) -> np.ndarray:
  """Reads an iBUG ``.pts`` landmark file: float32 (P, 2), P in ``allowed_points``.

  Format: ``version: 1``, ``n_points: P``, ``{``, P lines ``x y``, ``}``.
  """
  lines = read_lines(path)
  header: dict[str, str] = {}
  i = 0
  while i < len(lines) and lines[i] != '{':
    key, _, value = lines[i].partition(':')
    header[key.strip()] = value.strip()
    i += 1
  try:
    n = int(header['n_points'])
  except (KeyError, ValueError):
    raise ListFormatError(
        f'{path}: expected an iBUG .pts header with "n_points: P" before "{{".') from None
  if n not in allowed_points:
    raise ListFormatError(f'{path}: n_points is {n}; expected one of {tuple(allowed_points)}.')
  body = lines[i + 1:i + 1 + n]
  if i >= len(lines) or len(body) != n or len(lines) < i + n + 2 or lines[i + n + 1] != '}':
    raise ListFormatError(f'{path}: expected "{{", {n} lines "x y" and "}}" after the header.')
  pts = []
  for j, line in enumerate(body):
    parts = line.split()
    try:
      if len(parts) != 2:
        raise ValueError
      pts.append((float(parts[0]), float(parts[1])))
    except ValueError:
      raise ListFormatError(f'{path}:{i + 2 + j}: expected "x y", found {line!r}.') from None
  return np.asarray(pts, np.float32)


def write_pts(path: str, landmarks: np.ndarray) -> None:
  """Writes (P, 2) landmarks as an iBUG ``.pts`` file (the format ``read_pts`` reads)."""
  lines = ['version: 1', f'n_points: {len(landmarks)}', '{']
  lines += [f'{x:.3f} {y:.3f}' for x, y in np.asarray(landmarks, np.float64)]
  lines.append('}')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')

"""The one reader of the datasets' text files: path lists, label rows, csv tables, .pts files.

Every list and csv parser of ``faujax.data`` (the AU list layouts and csv files of
``au_lists``, ``bp4d``, ``disfa``, ``emotionet``; the annotation files of ``affectnet``,
``aff_wild2``, ``raf``, ``jaffe``) reads its files here, so one set of rules holds for all:

* Encoding: UTF-8. One byte-order mark (EF BB BF) at the very start is accepted and dropped.
  Bytes that are not UTF-8 (a Latin-1 'é', a UTF-16 file, a cut multi-byte character, an
  encoded surrogate) are refused at the first one, naming its line, column and byte offset (and,
  where the file starts with a UTF-16 / UTF-32 byte-order mark, that encoding).
* Line ends: LF or CRLF (mixed in one file too). A carriage return that does not end a line
  (a CR-only file, a stray CR inside a line, CR CR LF, a CR at the end of the file) is refused:
  other readers split lines there, so the rows of a positional file would shift.
* Characters: control characters other than tab (C0 but tab, DEL, C1: NUL, form feed,
  vertical tab, NEL, ...), a byte-order mark after the start (concatenated files) and the
  Unicode line / paragraph separators U+2028 / U+2029 are refused (line, column): they are
  invisible, and several of them are line breaks to ``str.splitlines``.
* Lines: a final line end is optional. Spaces and tabs at the start and end of a line are not
  part of its content (other white space is). A blank line holds spaces and tabs only; a csv row
  is blank when every cell is.
* Blank lines at the end of a file are ignored. Elsewhere they are refused (``blank='end'``, the
  default: where line order carries meaning a missing line shifts every later row) unless the
  format names the subject of every row (``blank='skip'``: AffectNet csv, RAF and JAFFE tables),
  where they are skipped wherever they are. A file with no content is refused at line 1.
* csv (``read_csv_rows``): one row per line, fields separated by commas, double quotes as in
  RFC 4180; a quoted field may not span lines.
* Order: the whole file is checked (encoding, then characters, then csv syntax, then blank
  lines) before a parser sees a row, so a text fault is reported before a content fault, and the
  first fault of the first failing check is the one reported.

Errors are ``TextFileError`` (a ``ValueError``) naming the file, the line (none for a missing or
unreadable file) and what was expected. The callers pass ``error``, which turns one into their
own error type (``au_lists.ListFormatError``, ``expression_builder_base.AnnotationError``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from etils import epath

_BOM = b'\xef\xbb\xbf'
_OTHER_BOMS: tuple[tuple[bytes, str], ...] = (
    (b'\xff\xfe\x00\x00', 'UTF-32 LE'), (b'\x00\x00\xfe\xff', 'UTF-32 BE'),
    (b'\xff\xfe', 'UTF-16 LE'), (b'\xfe\xff', 'UTF-16 BE'))
# Refused inside a line (its CRLF or LF end removed): C0 controls but tab (a CR left here is
# one that does not end a line), DEL, C1, U+FEFF and the Unicode line / paragraph separators.
_BAD_CHARACTER = re.compile('[\x00-\x08\x0a-\x1f\x7f-\x9f\ufeff\u2028\u2029]')
_CHARACTER_NAMES = {'\x00': 'a NUL byte', '\r': 'a carriage return', '\ufeff': 'a byte-order mark',
                    '\u2028': 'a line separator', '\u2029': 'a paragraph separator'}
_CHARACTER_HINTS = {
    '\r': ' (lines end with LF or CRLF)',
    '\ufeff': ' (one is allowed at the start of the file only: concatenated files?)',
    '\x00': ' (a UTF-16 file without a byte-order mark?)',
}
_SPACE = ' \t'
BLANK_RULES = ('end', 'skip')

T = TypeVar('T')


class TextFileError(ValueError):
  """A text file breaks the rules of this module.

  Attributes:
    path: the file.
    line: the 1-based line, or None for a file that is missing or cannot be read.
    detail: what is wrong and what was expected (the message without the location).
    offset_detail: for bytes that are not UTF-8, ``detail`` led by the byte offset in the file
      rather than the column (both name both; ``au_lists``' established form, which
      tests/test_bp4d.py checks); else None.
  """

  def __init__(self, path: Any, line: int | None, detail: str,
               offset_detail: str | None = None):
    self.path = str(path)
    self.line = line
    self.detail = detail
    self.offset_detail = offset_detail
    super().__init__(detail if line is None else f'{self.path}:{line}: {detail}')

  def __reduce__(self):
    return type(self), (self.path, self.line, self.detail, self.offset_detail)


ErrorFactory = Callable[[TextFileError], Exception]


def _decode_error(data: bytes, start: int, e: UnicodeDecodeError, path: Any) -> TextFileError:
  at = start + e.start
  line_start = max(data.rfind(b'\n', 0, at) + 1, start)
  line = data.count(b'\n', start, at) + 1
  column = len(data[line_start:at].decode('utf-8')) + 1
  hint = next((f' (the file starts with a {name} byte-order mark: save it as UTF-8)'
               for bom, name in _OTHER_BOMS if data.startswith(bom)), '')
  byte, expected = f'byte 0x{data[at]:02x}', f'expected UTF-8 text{hint}.'
  return TextFileError(
      path, line, f'{byte} at column {column} is not valid UTF-8 ({e.reason}; byte offset {at}); '
      + expected, f'{byte} at offset {at} is not UTF-8 ({e.reason}; column {column}); ' + expected)


def decode(data: bytes, path: Any) -> list[str]:
  """The lines of a text file's bytes (the module's rules): line n is element n - 1.

  Line ends and the spaces and tabs around each line are removed; the empty piece after a final
  line end is not a line. Blank lines are kept ('').

  Raises:
    TextFileError: bytes that are not UTF-8, or a refused character (line and column named).
  """
  start = len(_BOM) if data.startswith(_BOM) else 0
  try:
    text = data[start:].decode('utf-8')
  except UnicodeDecodeError as e:
    raise _decode_error(data, start, e, path) from None
  pieces = text.split('\n')
  last = pieces.pop()  # the only piece not ended by LF ('' after a final line end)
  pieces = [p[:-1] if p.endswith('\r') else p for p in pieces] + ([last] if last else [])
  for line_no, piece in enumerate(pieces, start=1):
    bad = _BAD_CHARACTER.search(piece)
    if bad:
      c = bad.group()
      raise TextFileError(
          path, line_no, f'{_CHARACTER_NAMES.get(c, "a control character")} (U+{ord(c):04X}) at '
          f'column {bad.start() + 1}; expected plain text{_CHARACTER_HINTS.get(c, "")}.')
  return [p.strip(_SPACE) for p in pieces]


def _read_bytes(path: Any, what: str) -> bytes:
  p = epath.Path(path)
  try:
    data = p.read_bytes() if p.is_file() else None
    exists = data is not None or p.exists()
  except (OSError, ValueError) as e:  # ValueError: a name the file system cannot hold
    raise TextFileError(path, None, f'{path} cannot be read ({getattr(e, "strerror", None) or e}); '
                        f'expected {what}.') from None
  if data is None:
    raise TextFileError(path, None, f'{path} {"is not a file" if exists else "does not exist"}; '
                        f'expected {what}.')
  return data


def _content(rows: Sequence[tuple[int, T]], blank_row: Callable[[T], bool], path: Any,
             what: str, blank: str, unit: str) -> list[tuple[int, T]]:
  """The non-blank rows, after the blank-line rules (``unit`` names a blank row in messages)."""
  if blank not in BLANK_RULES:
    raise ValueError(f'blank must be one of {BLANK_RULES}; got {blank!r}.')
  content = [(n, r) for n, r in rows if not blank_row(r)]
  if not content:
    raise TextFileError(path, 1, f'empty file; expected {what}.')
  if blank == 'end':
    first_blank = next((n for n, r in rows if blank_row(r)), None)
    if first_blank is not None and first_blank < content[-1][0]:
      raise TextFileError(
          path, first_blank, f'{unit} inside the file; expected {what} (blank lines are allowed '
          'only at the end: a missing line would shift every later row by one).')
  return content


def _checked(read: Callable[[], T], error: ErrorFactory | None) -> T:
  try:
    return read()
  except TextFileError as e:
    if error is None:
      raise
    raise error(e) from None


def read_lines(path: Any, what: str, *, blank: str = 'end',
               error: ErrorFactory | None = None) -> list[tuple[int, str]]:
  """[(line number, text)] of the content lines of a text file (see the module's rules).

  Args:
    path: the file (a str or an ``epath.Path``).
    what: what the file should hold, for messages ('one image path per line').
    blank: 'end' (blank lines only at the end) or 'skip' (blank lines skipped anywhere).
    error: turns a ``TextFileError`` into the caller's exception (default: raise it).

  Raises:
    TextFileError (or ``error``'s): a missing or unreadable file, a text fault, a blank line
      the rule refuses, no content (file and line named).
  """
  def read():
    lines = decode(_read_bytes(path, what), path)
    return _content(list(enumerate(lines, start=1)), lambda t: not t, path, what, blank,
                    'blank line')
  return _checked(read, error)


def _csv_cells(text: str, path: Any, line_no: int, what: str) -> list[str]:
  try:
    (cells,) = csv.reader([text], strict=True)
  except csv.Error as e:
    raise TextFileError(path, line_no, f'not a valid csv row ({e}; a quoted field may not span '
                        f'lines); expected {what}.') from None
  return cells


def read_csv_rows(path: Any, what: str, *, blank: str = 'end',
                  error: ErrorFactory | None = None) -> list[tuple[int, list[str]]]:
  """[(line number, cells)] of the content rows of a csv file, one row per line.

  Cells keep their spaces (the spaces and tabs around the line are removed); a row is blank
  when every cell is. Args and errors as ``read_lines``, and a row that is not valid csv.
  """
  def read():
    lines = decode(_read_bytes(path, what), path)
    rows = [(n, _csv_cells(t, path, n, what)) for n, t in enumerate(lines, start=1)]
    return _content(rows, lambda cells: not any(c.strip(_SPACE) for c in cells), path, what,
                    blank, 'empty row')
  return _checked(read, error)

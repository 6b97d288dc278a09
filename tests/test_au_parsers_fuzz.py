"""Property-based tests (hypothesis) of every AU text / binary parser and the list-layout join.

Each parser gets hostile input (random text and bytes with non-UTF-8 bytes, byte-order marks,
blank lines, control characters, huge numbers, NaN / inf, negatives, duplicates, spaces) and must
either return the documented result or raise ``au_lists.ListFormatError`` (a ``ValueError``)
whose message starts with ``<file>:<line>:`` (``<file>:`` for the binary .mat reader, the
directory entry for file-name scans); any other exception type fails the test.

Two kinds of test per parser:
* structured: a valid file drawn from a model of the format, then benign changes (BOM, LF / CRLF
  line ends, padding, trailing blank lines) and faults (each tagged with the line it breaks and
  its precedence stage: a CR that ends no line and U+2028 / U+2029 are control faults, the rules
  of ``faujax.data.text_files``); the parser must return the model's result exactly, or fail at
  the first fault's line;
* raw: text assembled from format-relevant chunks and random characters, with bytes spliced in;
  the path-list, label-row and DISFA readers are checked against small independent oracles of
  the documented rules (result and error line), the others for the error form and invariants.

Example counts are small (the module runs in well under a minute); the number of inputs per
parser is written to $FAUJAX_FUZZ_COUNTS (JSON) when that variable is set.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import math
import os
import re
import unicodedata
import urllib.parse

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest
import scipy.io

from faujax import labels
from faujax.data import au_builder_base as base
from faujax.data import au_lists
from faujax.data import bp4d
from faujax.data import disfa
from faujax.data import emotionet

COUNTS: collections.Counter = collections.Counter()
OUTCOMES: collections.Counter = collections.Counter()


def _settings(n: int):
  return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope='module')
def work(tmp_path_factory):
  d = tmp_path_factory.mktemp('fuzz')
  yield d
  out = os.environ.get('FAUJAX_FUZZ_COUNTS')
  if out:
    prev = json.load(open(out)) if os.path.isfile(out) else {}
    prev.update({k: {'inputs': v, 'ok': OUTCOMES[(k, 'ok')], 'clear_error': OUTCOMES[(k, 'error')]}
                 for k, v in COUNTS.items()})
    json.dump(prev, open(out, 'w'), indent=1, sort_keys=True)


def _record(parser: str, outcome: str) -> None:
  COUNTS[parser] += 1
  OUTCOMES[(parser, outcome)] += 1


def _run(parser: str, fn, path: str | None = None, line_required: bool = True):
  """Calls fn(); returns ('ok', result) or ('error', line or None). Other exceptions propagate.

  The error message must start with '<path>:<line>: ' (any file when ``path`` is None; the line
  is optional when not ``line_required``).
  """
  try:
    result = fn()
  except au_lists.ListFormatError as e:
    msg = str(e)
    prefix = re.escape(path) if path is not None else r'/[^:\n]+'
    pattern = prefix + (r':(\d+): ' if line_required else r'(?::(\d+))?: ')
    m = re.match(pattern, msg)
    assert m, f'{parser}: error message does not start with {path or "<file>"}:<line>: {msg!r}'
    _record(parser, 'error')
    return 'error', (int(m.group(1)) if m.group(1) else None)
  _record(parser, 'ok')
  return 'ok', result


def _write(path, data: bytes) -> str:
  with open(path, 'wb') as f:
    f.write(data)
  return str(path)


# ------------------------------------------------------------------ line model of a text file

# Private-use sentinels rendered as bytes that are not UTF-8.
_BAD_BYTES = {'\ue000': b'\xff', '\ue001': b'\xe9', '\ue002': b'\xed\xa0\x80', '\ue003': b'\xc3'}
_CONTROL = ['\x00', '\x01', '\x0b', '\x0c', '\x1b', '\x7f', '\x85', '\x9f', '\r', '\u2028',
            '\u2029']
STAGE_DECODE, STAGE_CONTROL, STAGE_BLANK, STAGE_HEADER, STAGE_ROW, STAGE_PASS2 = range(6)


@dataclasses.dataclass
class Line:
  text: str
  stage: int | None = None  # the precedence stage of the fault on this line, if any
  key: object = None  # ties the line to a model row
  blank: bool = False  # an inserted blank line (',,' too: a csv row of empty cells)


def render(lines: list[Line], eol: str = '\n', bom: bool = False, trailing: str = '') -> bytes:
  data = (eol.join(l.text for l in lines) + eol + trailing).encode('utf-8')
  for sentinel, bad in _BAD_BYTES.items():
    data = data.replace(sentinel.encode('utf-8'), bad)
  return (b'\xef\xbb\xbf' if bom else b'') + data


def expected_fault(lines: list[Line]) -> tuple[int, int] | None:
  """(stage, line) of the fault the reader must report first, or None."""
  last = max((i for i, l in enumerate(lines) if l.text.strip(' \t') and not l.blank), default=-1)
  faults = []
  for i, l in enumerate(lines):
    if l.stage is not None:
      faults.append((l.stage, i + 1))
    elif (l.blank or not l.text.strip(' \t')) and i < last:
      faults.append((STAGE_BLANK, i + 1))
  if last < 0:
    faults.append((STAGE_BLANK, 1))
  return min(faults) if faults else None


def line_of(lines: list[Line], key) -> int:
  return next(i + 1 for i, l in enumerate(lines) if l.key is key)


@st.composite
def text_faults(draw, lines: list[Line], allow: bool = True, csv: bool = False):
  """Applies benign changes and (if ``allow``) text-level faults to ``lines`` in place
  (``csv``: a row of empty cells is blank too).

  Returns the render options (eol, bom, trailing).
  """
  eol = draw(st.sampled_from(['\n', '\r\n']))  # a CR-only line end is a fault (_CONTROL)
  content = [l for l in lines if l.text.strip(' \t')]
  if draw(st.booleans()):  # benign: padding with spaces / tabs
    for l in content:
      if draw(st.booleans()):
        l.text = draw(st.sampled_from([' ', '\t', '  '])) + l.text + draw(
            st.sampled_from(['', ' ', '\t ']))
  if allow and content:
    for _ in range(draw(st.integers(0, 2))):
      kind = draw(st.sampled_from(['blank', 'bad_byte', 'control', 'bom_inside', 'none']))
      if kind == 'blank':
        pos = draw(st.integers(0, len(lines)))
        lines.insert(pos, Line(draw(st.sampled_from(
            ['', ' ', '\t', ' \t '] + ([',', ',,', ' , \t,'] if csv else []))), blank=True))
      elif kind != 'none':
        l = draw(st.sampled_from(content))
        ch = {
            'bad_byte': draw(st.sampled_from(sorted(_BAD_BYTES))),
            'control': draw(st.sampled_from(_CONTROL)),
            'bom_inside': '\ufeff',
        }[kind]
        # A CR at the end of a line followed by LF makes a CRLF line end, not a fault.
        pos = draw(st.integers(1 if kind == 'bom_inside' else 0,
                               len(l.text) - (ch == '\r' and eol == '\n')))
        l.text = l.text[:pos] + ch + l.text[pos:]
        stage = STAGE_DECODE if kind == 'bad_byte' else STAGE_CONTROL
        l.stage = stage if l.stage is None else min(l.stage, stage)
  bom = draw(st.booleans())
  trailing = draw(st.sampled_from(['', '\n', eol * 2, ' \t' + eol, '   ']))
  return eol, bom, trailing


def _check(parser, outcome, value, lines, want_ok):
  """Asserts the reader's outcome against the model: the first fault's line, or the result."""
  fault = expected_fault(lines)
  if fault is None:
    assert outcome == 'ok', f'{parser}: expected success, got an error at line {value}'
    want_ok(value)
  else:
    assert outcome == 'error', f'{parser}: expected an error at line {fault[1]} ({fault}), got {value!r}'
    assert value == fault[1], f'{parser}: error at line {value}, expected line {fault[1]} ({fault})'


# ------------------------------------------------------------------ raw text and oracles

_CHUNKS = [
    'F001/T1/1.jpg', 'a b.jpg', 'x.png', '..', '.', '/', '\\', ' ', '\t', '\n', '\r\n', '\r', '\n\n',
    '\ufeff', '\x00', '\x0b', '\x85', '\xa0', '\u2028', '\uff11', '\u00b2', '0', '1', '9', '999',
    '-1', ',', ',,', '1e309', '1e39', 'nan', 'inf', '-', '+', '.5', 'e', 'x', '\u00e9', '%2F', '"',
    'C:', '11.7', '12', '3', '5',
]
_RAW_BYTES = [b'\xff', b'\xe9', b'\xc3', b'\xed\xa0\x80', b'\x80', b'\xef\xbb\xbf', b'\xfe\xff']


@st.composite
def raw_rows(draw, columns, chunks, max_lines=6):
  """Rows of ``len(columns)`` tokens (column j drawn mostly from ``columns[j]``), with hostile
  chunks (about 1 token in 8), separators and line ends mixed in."""
  sep = st.sampled_from([' '] * 10 + ['\t', ',', ', ', ' , '] * 2 + [',,', ' ,,', ''])
  end = st.sampled_from(['\n'] * 14 + ['\r\n', '\r'] * 2 + ['\n\n', '\n \n', ''])
  out = []
  for _ in range(draw(st.integers(1, max_lines))):
    toks = [draw(st.sampled_from(list(good) * 7 + list(chunks[:len(good)]) or list(good)))
            if draw(st.integers(0, 7)) else draw(st.sampled_from(chunks)) for good in columns]
    if draw(st.integers(0, 9)) == 0:  # a wrong number of columns
      toks = toks[1:] if draw(st.booleans()) else toks + toks[:1]
    line = toks[0] + ''.join(draw(sep) + t for t in toks[1:]) if toks else ''
    out.append(draw(st.sampled_from(['', '', '', ' ', '\t'])) + line + draw(end))
  return ''.join(out)


@st.composite
def raw_bytes(draw, chunks=_CHUNKS, max_parts=30, text=None):
  if text is None:
    text = st.lists(st.one_of(st.sampled_from(chunks), st.text(max_size=3)),
                    max_size=max_parts).map(''.join)
  data = draw(text).encode('utf-8')
  for _ in range(draw(st.integers(0, 2))):
    if draw(st.integers(0, 5)) == 0:
      pos = draw(st.integers(0, len(data)))
      data = data[:pos] + draw(st.sampled_from(_RAW_BYTES)) + data[pos:]
  prefix = draw(st.sampled_from([b''] * 5 + [b'\xef\xbb\xbf'] * 2 + [b'\xff\xfe']))
  return prefix + data


class OracleError(Exception):

  def __init__(self, line):
    super().__init__(line)
    self.line = line


def oracle_lines(data: bytes) -> list[str]:
  """The documented text rules (faujax.data.text_files), written independently of it."""
  if data[:3] == b'\xef\xbb\xbf':
    data = data[3:]
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise OracleError(data[:e.start].count(b'\n') + 1) from None
  # Lines end with LF or CRLF: any other CR is a control character of its line.
  raw = re.sub('\r\n', '\n', text).split('\n')
  for i, line in enumerate(raw, start=1):
    if any(ch in '\ufeff\u2028\u2029' or (unicodedata.category(ch) == 'Cc' and ch != '\t')
           for ch in line):
      raise OracleError(i)
  lines = [l.strip(' \t') for l in raw]
  while lines and not lines[-1]:
    lines.pop()
  if not lines:
    raise OracleError(1)
  for i, l in enumerate(lines, start=1):
    if not l:
      raise OracleError(i)
  return lines


def oracle_number(tok: str) -> float | None:
  if not tok.isascii() or re.fullmatch(r'[0-9+\-.eE]+', tok) is None:
    return None
  try:
    v = float(tok)
  except ValueError:
    return None
  if not math.isfinite(v) or abs(v) > float(np.finfo(np.float32).max):
    return None
  return v


def oracle_fields(line: str) -> list[str] | None:
  fields = re.split(r'[ \t]*,[ \t]*|[ \t]+', line)
  return None if '' in fields else fields


def oracle_paths(data: bytes) -> list[str]:
  out, seen = [], set()
  for i, line in enumerate(oracle_lines(data), start=1):
    p = line.replace('\\', '/')
    if p.startswith('/') or re.match('[A-Za-z]:', p):
      raise OracleError(i)
    comps = [c for c in p.split('/') if c not in ('', '.')]
    if '..' in comps or not comps:
      raise OracleError(i)
    rel = '/'.join(comps)
    if rel in seen:
      raise OracleError(i)
    seen.add(rel)
    out.append(rel)
  return out


def oracle_label_rows(data: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
  rows = []
  for i, line in enumerate(oracle_lines(data), start=1):
    fields = oracle_fields(line)
    if fields is None or len(fields) != n:
      raise OracleError(i)
    values = [oracle_number(f) for f in fields]
    if any(v is None for v in values):
      raise OracleError(i)
    rows.append(values)
  for i, row in enumerate(rows, start=1):  # second pass: the codes
    if any(v not in (0.0, 1.0, 9.0, 999.0, -1.0) for v in row):
      raise OracleError(i)
  v = np.asarray(rows, np.float64).reshape(len(rows), n)
  unknown = np.isin(v, (9.0, 999.0, -1.0))
  return np.where(unknown, 0, v).astype(np.float32), (~unknown).astype(np.float32)


def oracle_disfa(data: bytes) -> dict[int, float]:
  out = {}
  for i, line in enumerate(oracle_lines(data), start=1):
    fields = oracle_fields(line)
    if fields is None or len(fields) != 2:
      raise OracleError(i)
    f, v = fields
    if not (f.isascii() and f.isdigit()) or len(f.lstrip('0')) > 15 or int(f) < 1:
      raise OracleError(i)
    value = oracle_number(v)
    if value is None or value not in (0, 1, 2, 3, 4, 5) or int(f) in out:
      raise OracleError(i)
    out[int(f)] = value
  return out


def _against_oracle(parser, fn, oracle, path, data, same):
  outcome, value = _run(parser, fn, path)
  try:
    want = oracle(data)
  except OracleError as e:
    assert outcome == 'error', f'{parser}: oracle expects an error at line {e.line}, got {value!r}'
    assert value == e.line, f'{parser}: error at line {value}, oracle says line {e.line}'
    return
  assert outcome == 'ok', f'{parser}: oracle expects success ({want!r}), got an error at {value}'
  assert same(value, want), f'{parser}: {value!r} != oracle {want!r}'


@_settings(250)
@given(data=raw_bytes())
def test_raw_path_list_matches_oracle(work, data):
  p = _write(work / 'paths.txt', data)
  _against_oracle('au_lists.read_path_list (raw, oracle)', lambda: au_lists.read_path_list(p), oracle_paths, p,
                  data, lambda a, b: a == b)


_NUM_CHUNKS = ['0', '1', '9', '999', '-1', '-0', '1.0', '1.', '.5', '1e0', '2', '1e309', '1e39',
               'nan', 'inf', '-inf', '+1', '\uff11', '\u0661', '1_0', '0x1', ' ', '  ', '\t', ',',
               ', ', ',,', '\n', '\r\n', '\r', '\n\n', '\ufeff', '\xa0', '\x00', 'e', '-', '.']


_CODES = ('0', '1', '9', '999', '-1', '1.0', '0.', '1', '0', '1.0000001', '999.00001')


@_settings(250)
@given(st.data())
def test_raw_label_rows_match_oracle(work, draw):
  n = draw.draw(st.integers(1, 3))
  data = draw.draw(st.one_of(raw_bytes(_NUM_CHUNKS, 40),
                             raw_bytes(text=raw_rows([_CODES] * n, _NUM_CHUNKS, 5))))
  p = _write(work / 'labels.txt', data)
  _against_oracle('au_lists.read_label_rows (raw, oracle)', lambda: au_lists.read_label_rows(p, n),
                  lambda d: oracle_label_rows(d, n), p, data,
                  lambda a, b: all(np.array_equal(x, y) for x, y in zip(a, b)))


_DISFA_CHUNKS = _NUM_CHUNKS + ['3,2\n', '4,0\n', '1,5\n', '0,1\n', '3,2\n', '12 , 3\n', '7\t4\n']


@_settings(250)
@given(data=st.one_of(raw_bytes(_DISFA_CHUNKS, 30), raw_bytes(text=raw_rows(
    [[str(f) for f in range(1, 60)] + ['0012', '007'], ['0', '1', '2', '3', '4', '5', '3.0', '2.']],
    _NUM_CHUNKS, 6))))
def test_raw_disfa_intensity_matches_oracle(work, data):
  p = _write(work / 'SN001_au1.txt', data)
  _against_oracle('disfa.read_intensity_file (raw, oracle)', lambda: disfa.read_intensity_file(p), oracle_disfa,
                  p, data, lambda a, b: a == b)


# ------------------------------------------------------------------ tokens


_TOKEN = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).flatmap(lambda v: st.sampled_from(
        [repr(v), f'{v:e}', f'{v:.17g}', f'{v:f}'])),
    st.integers(-10**20, 10**20).map(str),
    st.sampled_from(['1e309', '-1e309', '1e39', '3.4028235e38', '3.4028234e38', '1e-400', '1.',
                     '.5', '+.5', '-0', '1_0', '0x10', '\uff11', '\u0661', '\u00b2', ' 1', '1 ',
                     'nan', 'NaN', '-inf', 'Infinity', '', '.', 'e5', '1e', '--1', '9' * 30,
                     '0' * 20 + '7', '1.0000001', '999.00001']),
    st.text(alphabet='0123456789+-.eE_ x', max_size=8))


@_settings(400)
@given(tok=_TOKEN)
def test_number_and_integer_tokens_match_oracle(tok):
  """parse_number / parse_int / labels_to_occurrence against the documented rules."""
  want = oracle_number(tok.strip(' \t'))
  try:
    got = au_lists.parse_number(tok, 'f.txt:3', 'a number')
  except au_lists.ListFormatError as e:
    assert str(e).startswith('f.txt:3: ') and want is None, (tok, want)
    _record('au_lists.parse_number', 'error')
  else:
    assert got == want, (tok, got, want)
    _record('au_lists.parse_number', 'ok')
    try:
      au, mask = au_lists.labels_to_occurrence(np.array([[got]]), 'f.txt', 3)
    except au_lists.ListFormatError as e:
      assert str(e).startswith('f.txt:3: ') and got not in (0, 1, 9, 999, -1), got
    else:
      assert got in (0, 1, 9, 999, -1), got
      assert (au[0, 0], mask[0, 0]) == ((got, 1.0) if got in (0, 1) else (0.0, 0.0))
  t = tok.strip(' \t')
  want_int = int(t) if t.isascii() and t.isdigit() and len(t.lstrip('0')) <= 15 else None
  try:
    got_int = au_lists.parse_int(tok, 'f.txt:4', 'a frame number')
  except au_lists.ListFormatError as e:
    assert str(e).startswith('f.txt:4: ') and want_int is None, (tok, want_int)
    _record('au_lists.parse_int', 'error')
  else:
    assert got_int == want_int, (tok, got_int)
    _record('au_lists.parse_int', 'ok')


# ------------------------------------------------------------------ path list + label file


_PATH_NAMES = ['F001/T1/1.jpg', 'F001/T1/2.jpg', 'SN002/0.png', 'a b/c d.jpg', 'x/y.jpg',
               'batch0/img_003.jpg', 'caf\u00e9/1.jpg', 'F002/T8/0011.jpg', 'n\u00e4me.png']


@st.composite
def path_spelling(draw, rel: str) -> str:
  """An equivalent spelling of a normalised relative path ('\\', './', '//')."""
  comps = rel.split('/')
  sep = draw(st.sampled_from(['/', '\\', '//', '/./']))
  prefix = draw(st.sampled_from(['', './', '.\\']))
  return prefix + sep.join(comps)


@_settings(150)
@given(st.data())
def test_megraphau_list_pair(work, data):
  """read_megraphau_list: paths (spellings, spaces) with labels; faults in either file."""
  n_aus = data.draw(st.integers(1, 4))
  rels = data.draw(st.lists(st.sampled_from(_PATH_NAMES), min_size=1, max_size=6, unique=True))
  codes = data.draw(st.lists(st.lists(st.sampled_from([0, 1, 9, 999, -1]), min_size=n_aus,
                                      max_size=n_aus), min_size=len(rels), max_size=len(rels)))
  plines = [Line(data.draw(path_spelling(r)), key=('p', i)) for i, r in enumerate(rels)]
  lfmt = data.draw(st.sampled_from(['{:d}', '{:.1f}', '{:d}.']))
  lsep = data.draw(st.sampled_from([' ', '\t', ',', ' , ', '  ']))
  llines = [Line(lsep.join(lfmt.format(c) for c in row), key=('l', i)) for i, row in enumerate(codes)]
  clean = data.draw(st.booleans())
  fault_file = 'none' if clean else data.draw(st.sampled_from(['none', 'paths', 'labels']))
  if fault_file == 'paths':
    l = data.draw(st.sampled_from(plines))
    kind = data.draw(st.sampled_from(['dotdot', 'absolute', 'dup', 'empty_name']))
    if kind == 'dup' and len(plines) > 1 and l is not plines[0]:
      first = plines.index(l)
      l.text = data.draw(path_spelling(rels[data.draw(st.integers(0, first - 1))]))
    elif kind == 'dup':
      kind = 'dotdot'
    if kind == 'dotdot':
      l.text = data.draw(st.sampled_from(['../', 'a/../../', '..\\'])) + l.text
    elif kind == 'absolute':
      l.text = data.draw(st.sampled_from(['/', 'C:/', '\\', 'c:\\'])) + l.text.lstrip('./\\')
    elif kind == 'empty_name':
      l.text = data.draw(st.sampled_from(['./', '.', './/.', '.\\']))
    l.stage = STAGE_ROW
  elif fault_file == 'labels':
    l = data.draw(st.sampled_from(llines))
    kind = data.draw(st.sampled_from(['code', 'number', 'columns', 'empty_field']))
    cells = re.split(r'[ \t]*,[ \t]*|[ \t]+', l.text)
    l.stage = STAGE_ROW
    if kind == 'code':
      cells[0] = data.draw(st.sampled_from(['2', '0.5', '-2', '1.0000001', '99', '1e30']))
      l.stage = STAGE_PASS2
    elif kind == 'number':
      cells[0] = data.draw(st.sampled_from(['nan', 'inf', '1e309', 'x', '\uff11', '0x1', '1_0']))
    elif kind == 'columns':
      cells = cells + ['1'] if data.draw(st.booleans()) or len(cells) == 1 else cells[1:]
    l.text = (','.join(cells[:1] + [''] + cells[1:]) if kind == 'empty_field' else
              ' '.join(cells))
  ptext = data.draw(text_faults(plines, allow=not clean and data.draw(st.booleans())))
  ltext = data.draw(text_faults(llines, allow=not clean and data.draw(st.booleans())))
  pp = _write(work / 'X_test_img_path_fold1.txt', render(plines, *ptext))
  lp = _write(work / 'X_test_label_fold1.txt', render(llines, *ltext))
  outcome, value = _run('au_lists.read_megraphau_list (model)',
                        lambda: au_lists.read_megraphau_list(pp, lp, n_aus))
  pfault, lfault = expected_fault(plines), expected_fault(llines)
  if pfault is not None:
    assert outcome == 'error' and value == pfault[1], (outcome, value, pfault)
    assert f'{pp}:{value}:' in str_error(lambda: au_lists.read_megraphau_list(pp, lp, n_aus))
  elif lfault is not None:
    assert outcome == 'error' and value == lfault[1], (outcome, value, lfault)
    assert f'{lp}:{value}:' in str_error(lambda: au_lists.read_megraphau_list(pp, lp, n_aus))
  else:
    assert outcome == 'ok', value
    assert [e.path for e in value] == rels
    raw = np.asarray(codes, np.float64)
    unknown = np.isin(raw, (9, 999, -1))
    for i, e in enumerate(value):
      np.testing.assert_array_equal(e.au, np.where(unknown[i], 0, raw[i]))
      np.testing.assert_array_equal(e.au_mask, (~unknown[i]).astype(np.float32))
      assert e.source == f'{pp}:{line_of(plines, plines[i].key)}'
      assert e.label_source == f'{lp}:{line_of(llines, llines[i].key)}'


def str_error(fn) -> str:
  try:
    fn()
  except au_lists.ListFormatError as e:
    return str(e)
  return ''


# ------------------------------------------------------------------ JAA-Net set


@_settings(60)
@given(st.data())
def test_jaanet_set(work, data):
  """read_jaanet_set: 4 parallel files; one fault (or a length mismatch) in one of them."""
  n = data.draw(st.integers(1, 4))
  rels = data.draw(st.lists(st.sampled_from(_PATH_NAMES), min_size=n, max_size=n, unique=True))
  lm = data.draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=98 * n,
                          max_size=98 * n))
  lm = np.asarray(lm, np.float32).reshape(n, 49, 2)
  bio = data.draw(st.lists(st.floats(0.5, 500, width=32), min_size=n, max_size=n))
  occ = data.draw(st.lists(st.lists(st.sampled_from([0, 1, 9]), min_size=3, max_size=3),
                           min_size=n, max_size=n))
  files = {
      'path': [Line(r) for r in rels],
      'land': [Line(' '.join(repr(float(v)) for v in row.reshape(-1))) for row in lm],
      'biocular': [Line(repr(float(b))) for b in bio],
      'AUoccur': [Line(' '.join(str(c) for c in row)) for row in occ],
  }
  target = data.draw(st.sampled_from(['none', 'path', 'land', 'biocular', 'AUoccur']))
  length_fault = False
  if target != 'none':
    lines = files[target]
    l = data.draw(st.sampled_from(lines))
    kind = data.draw(st.sampled_from(['value', 'drop_line']))
    if kind == 'drop_line':
      lines.remove(l)
      length_fault = True
      if not lines:
        lines.append(Line(''))  # an empty file: its own error at line 1
    elif target == 'path':
      l.text, l.stage = '../' + l.text, STAGE_ROW
    elif target == 'land':
      cells = l.text.split()
      cells[data.draw(st.integers(0, 97))] = data.draw(st.sampled_from(['nan', 'inf', '1e39', 'x']))
      l.text, l.stage = ' '.join(cells), STAGE_ROW
    elif target == 'biocular':
      l.text = data.draw(st.sampled_from(['0', '-3', 'nan', '1 2']))
      l.stage = STAGE_ROW if l.text in ('nan', '1 2') else STAGE_PASS2
    else:
      l.text, l.stage = l.text.replace(l.text[0], '5', 1), STAGE_PASS2
  paths = {}
  for suffix, lines in files.items():
    opts = data.draw(text_faults(lines, allow=False))
    paths[suffix] = _write(work / f'BP4D_part1_{suffix}.txt', render(lines, *opts))
  outcome, value = _run('au_lists.read_jaanet_set (model)',
                        lambda: au_lists.read_jaanet_set(str(work), 'BP4D_part1', 3))
  per_file = [(s, expected_fault(files[s])) for s in ('path', 'land', 'biocular', 'AUoccur')]
  first = next(((s, f) for s, f in per_file if f is not None), None)
  msg = str_error(lambda: au_lists.read_jaanet_set(str(work), 'BP4D_part1', 3))
  if first is not None:
    assert outcome == 'error' and msg.startswith(f'{paths[first[0]]}:{first[1][1]}:'), msg
  elif length_fault:
    short = paths[target]
    assert outcome == 'error' and msg.startswith(f'{short}:{len(files[target]) + 1}:'), msg
    assert 'differ in length' in msg
  else:
    assert outcome == 'ok', msg
    assert [e.path for e in value] == rels
    np.testing.assert_array_equal(np.stack([e.landmarks for e in value]), lm)
    raw = np.asarray(occ, np.float32)
    np.testing.assert_array_equal(np.stack([e.au_mask for e in value]), (raw != 9))


# ------------------------------------------------------------------ BP4D AU_OCC csv

_BP4D_EXTRA = (3, 5, 8, 9, 11, 13, 16, 18, 19, 20, 22, 25, 26, 27, 28)


@_settings(150)
@given(st.data())
def test_bp4d_au_occ_csv(work, data):
  aus = labels.BP4D_AUS
  extra = data.draw(st.lists(st.sampled_from(_BP4D_EXTRA), unique=True, max_size=3))
  cols = data.draw(st.permutations(list(aus) + extra))
  n_rows = data.draw(st.integers(1, 5))
  frames = data.draw(st.lists(st.integers(0, 99999), min_size=n_rows, max_size=n_rows,
                              unique=True))
  codes = data.draw(st.lists(st.lists(st.sampled_from([0, 1, 9]), min_size=len(cols),
                                      max_size=len(cols)), min_size=n_rows, max_size=n_rows))
  hfmt = data.draw(st.sampled_from(['{}', '{}.0', ' {} ']))
  cfmt = data.draw(st.sampled_from(['{}', '{}.0', ' {}']))
  pad = data.draw(st.sampled_from(['{}', '{:05d}']))
  header = Line(data.draw(st.sampled_from(['Frame', 'frame', 'FRAME'])) + ',' +
                ','.join(hfmt.format(c) for c in cols))
  rows = [Line(pad.format(f) + ',' + ','.join(cfmt.format(c) for c in row), key=object())
          for f, row in zip(frames, codes)]
  lines = [header] + rows
  hit = set()
  clean = data.draw(st.booleans())
  for _ in range(0 if clean else data.draw(st.integers(1, 2))):
    kind = data.draw(st.sampled_from(['frame', 'dup', 'code', 'unused', 'columns', 'header_dup',
                                      'header_missing', 'header_text']))
    if kind.startswith('header'):
      cells = header.text.split(',')
      if kind == 'header_dup':
        j = data.draw(st.integers(1, len(cells) - 1))
        cells[j] = str(data.draw(st.sampled_from([c for k, c in enumerate(cols) if k != j - 1])))
      elif kind == 'header_missing':
        j = 1 + cols.index(data.draw(st.sampled_from(aus)))
        cells[j] = str(data.draw(st.sampled_from([a for a in range(40, 60)])))
      else:
        cells[data.draw(st.integers(1, len(cells) - 1))] = data.draw(
            st.sampled_from(['AU1x', '1e309', 'nan', '', '1.5', '\uff11']))
      header.text, header.stage = ','.join(cells), STAGE_HEADER
      continue
    r = data.draw(st.integers(0, n_rows - 1))
    if r in hit:
      continue
    hit.add(r)
    cells = rows[r].text.split(',')
    if kind == 'frame':
      cells[0] = data.draw(st.sampled_from(['11.7', '11.0', '-3', '1e3', '1e309', 'nan', '',
                                            '\uff11\uff11', '0x1', '1_0', '+4']))
    elif kind == 'dup':
      if r == 0:
        continue
      cells[0] = str(frames[data.draw(st.integers(0, r - 1))])
    elif kind in ('code', 'unused'):
      used = kind == 'code'
      choices = [k for k, c in enumerate(cols) if (c in aus) == used]
      if not choices:
        continue
      cells[1 + data.draw(st.sampled_from(choices))] = data.draw(
          st.sampled_from(['5', '-1', '0.5', '1e309', 'nan', 'inf', '', 'x', '1.0000001']))
    elif kind == 'columns':
      cells = cells + ['0'] if data.draw(st.booleans()) else cells[:-1]
    rows[r].text = ','.join(cells)
    if kind != 'unused':
      rows[r].stage = STAGE_ROW
  opts = data.draw(text_faults(lines, allow=not clean, csv=True))
  p = _write(work / 'F001_T1.csv', render(lines, *opts))
  outcome, value = _run('bp4d.read_au_occ_csv (model)', lambda: bp4d.read_au_occ_csv(p), p)

  def ok(got):
    assert [g[0] for g in got] == frames
    for (frame, au, mask, line), row, l in zip(got, codes, rows):
      raw = np.array([row[cols.index(a)] for a in aus], np.float32)
      np.testing.assert_array_equal(au, np.where(raw == 9, 0, raw))
      np.testing.assert_array_equal(mask, (raw != 9).astype(np.float32))
      assert line == line_of(lines, l.key)

  _check('bp4d.read_au_occ_csv', outcome, value, lines, ok)


@_settings(200)
@given(data=raw_bytes(_NUM_CHUNKS + ['Frame,1,2,4,6,7,10,12,14,15,17,23,24\n', '11,0,1,9,0,1,0,1,0,'
                                     '1,0,1,0\n', '"', '"a,b"'], 30))
def test_raw_bp4d_csv(work, data):
  p = _write(work / 'F009_T2.csv', data)
  outcome, value = _run('bp4d.read_au_occ_csv (raw)', lambda: bp4d.read_au_occ_csv(p), p)
  if outcome == 'ok':
    frames = [v[0] for v in value]
    assert len(set(frames)) == len(frames) and all(f >= 0 for f in frames)
    for _, au, mask, _ in value:
      assert set(au.tolist()) <= {0.0, 1.0} and set(mask.tolist()) <= {0.0, 1.0}
      assert (au <= mask).all()


# ------------------------------------------------------------------ DISFA intensity files


@_settings(150)
@given(st.data())
def test_disfa_intensity_file(work, data):
  n = data.draw(st.integers(1, 6))
  frames = data.draw(st.lists(st.integers(1, 99999), min_size=n, max_size=n, unique=True))
  values = data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
  sep = data.draw(st.sampled_from([',', ', ', ' ', '\t', ' , ']))
  vfmt = data.draw(st.sampled_from(['{}', '{}.0', '{}.']))
  lines = [Line(f'{f}{sep}{vfmt.format(v)}') for f, v in zip(frames, values)]
  hit = set()
  clean = data.draw(st.booleans())
  for _ in range(0 if clean else data.draw(st.integers(1, 2))):
    r = data.draw(st.integers(0, n - 1))
    if r in hit:
      continue
    hit.add(r)
    kind = data.draw(st.sampled_from(['frame', 'value', 'dup', 'columns', 'empty_field']))
    if kind == 'frame':
      lines[r].text = data.draw(st.sampled_from(['0', '1.5', '-1', '\uff11', 'nan', '1e3'])) + ',1'
    elif kind == 'value':
      lines[r].text = f'{frames[r]},' + data.draw(
          st.sampled_from(['6', '2.5', '-1', 'nan', 'inf', '1e309', 'x']))
    elif kind == 'dup':
      if r == 0:
        continue
      lines[r].text = f'{frames[data.draw(st.integers(0, r - 1))]},1'
    elif kind == 'columns':
      lines[r].text = f'{frames[r]},1,2' if data.draw(st.booleans()) else f'{frames[r]}'
    else:
      lines[r].text = f'{frames[r]},,1'
    lines[r].stage = STAGE_ROW
  opts = data.draw(text_faults(lines, allow=not clean))
  p = _write(work / 'SN003_au2.txt', render(lines, *opts))
  outcome, value = _run('disfa.read_intensity_file (model)', lambda: disfa.read_intensity_file(p),
                        p)
  _check('disfa.read_intensity_file', outcome, value, lines,
         lambda got: assert_equal(got, dict(zip(frames, map(float, values)))))


def assert_equal(a, b):
  assert a == b, (a, b)


# ------------------------------------------------------------------ EmotioNet annotation csv

_EMO_NAMES = ['img_001.jpg', 'a b.jpg', 'x-y.png', 'caf\u00e9.jpg', 'N001.JPG']


@st.composite
def emo_url(draw, name: str) -> str:
  kind = draw(st.sampled_from(['plain', 'dir', 'url', 'url_query']))
  if kind == 'plain':
    return name
  if kind == 'dir':
    return 'faces/' + name
  q = urllib.parse.quote(name)
  return f'http://example.org/p/{q}' + ('?s=1#f' if kind == 'url_query' else '')


@_settings(150)
@given(st.data())
def test_emotionet_annotation_csv(work, data):
  aus = labels.EMOTIONET_AUS
  style = data.draw(st.sampled_from(['AU{}', 'AU {}', '{}', 'au{}']))
  extra = data.draw(st.lists(st.sampled_from(['source', 'notes', 'AU 7', 'AU99']), unique=True,
                             max_size=2))
  cols = data.draw(st.permutations([style.format(a) for a in aus] + extra))
  n = data.draw(st.integers(1, 4))
  names = data.draw(st.lists(st.sampled_from(_EMO_NAMES), min_size=n, max_size=n, unique=True))
  codes = data.draw(st.lists(st.lists(st.sampled_from([0, 1, 999]), min_size=len(aus),
                                      max_size=len(aus)), min_size=n, max_size=n))
  header = Line('URL,' + ','.join(cols))

  def cell(col, row):
    m = re.fullmatch(r'(?:au)?\s*(\d+)', col, re.I)
    if m and int(m.group(1)) in aus:
      return str(row[aus.index(int(m.group(1)))])
    return 'web'

  rows = [Line(data.draw(emo_url(nm)) + ',' + ','.join(cell(c, row) for c in cols), key=object())
          for nm, row in zip(names, codes)]
  lines = [header] + rows
  clean = data.draw(st.booleans())
  kind = 'none' if clean else data.draw(st.sampled_from(
      ['none', 'code', 'url', 'columns', 'header_dup', 'header_missing']))
  r = data.draw(st.integers(0, n - 1))
  if kind == 'code':
    cells = rows[r].text.split(',')
    j = 1 + cols.index(style.format(data.draw(st.sampled_from(aus))))
    cells[j] = data.draw(st.sampled_from(['2', '9', '-1', 'nan', '1e309', '', '0.5']))
    rows[r].text, rows[r].stage = ','.join(cells), STAGE_ROW
  elif kind == 'url':
    cells = rows[r].text.split(',')
    cells[0] = data.draw(st.sampled_from(['http://h/..', 'http://h/a%2Fb.jpg', 'http://h/%ff.jpg',
                                          'http://[x/a.jpg', '', '  ', 'http://h/%00.jpg',
                                          'http://h/', 'dir/..', 'a\\b.jpg']))
    rows[r].text, rows[r].stage = ','.join(cells), STAGE_ROW
  elif kind == 'columns':
    rows[r].text += ',1'
    rows[r].stage = STAGE_ROW
  elif kind == 'header_dup':
    a = data.draw(st.sampled_from(aus))
    header.text += ',' + data.draw(st.sampled_from(['AU{}', 'AU {}', '{}'])).format(a)
    header.stage = STAGE_HEADER
  elif kind == 'header_missing':
    header.text = header.text.replace(',' + style.format(aus[-1]), ',notes', 1)
    header.stage = STAGE_HEADER
  opts = data.draw(text_faults(lines, allow=not clean, csv=True))
  p = _write(work / 'emotionet_au.csv', render(lines, *opts))
  outcome, value = _run('emotionet.read_annotation_csv (model)',
                        lambda: emotionet.read_annotation_csv(p), p)

  def ok(got):
    assert [g[0] for g in got] == names
    for (nm, au, mask, line), row, l in zip(got, codes, rows):
      raw = np.asarray(row, np.float32)
      np.testing.assert_array_equal(au, np.where(raw == 999, 0, raw))
      np.testing.assert_array_equal(mask, (raw != 999).astype(np.float32))
      assert line == line_of(lines, l.key)

  _check('emotionet.read_annotation_csv', outcome, value, lines, ok)


@_settings(200)
@given(data=raw_bytes(_CHUNKS + ['URL,' + ','.join(f'AU{a}' for a in labels.EMOTIONET_AUS) +
                                 '\n', 'http://h/x.jpg,' + ','.join(['0'] * 12) + '\n', '"',
                                 'http://[', '%ff', '%2F'], 25))
def test_raw_emotionet_csv(work, data):
  p = _write(work / 'raw.csv', data)
  outcome, value = _run('emotionet.read_annotation_csv (raw)',
                        lambda: emotionet.read_annotation_csv(p), p)
  if outcome == 'ok':
    for name, au, mask, _ in value:
      assert name not in ('', '.', '..') and '/' not in name and '\\' not in name
      assert (au <= mask).all() and set(mask.tolist()) <= {0.0, 1.0}


@_settings(300)
@given(text=st.one_of(st.text(max_size=30), st.lists(st.sampled_from(
    ['http://', 'h', '/', '..', '.', '%2F', '%ff', '%00', '%20', '[', ']', '?', '#', 'a.jpg',
     '\\', ' ', ':', '%']), max_size=10).map(''.join)))
def test_image_name(text):
  try:
    name = emotionet.image_name(text)
  except au_lists.ListFormatError:
    _record('emotionet.image_name', 'error')
    return
  _record('emotionet.image_name', 'ok')
  assert name and name not in ('.', '..') and '/' not in name and '\\' not in name
  assert not any(unicodedata.category(c) == 'Cc' for c in name)


# ------------------------------------------------------------------ iBUG .pts


@_settings(100)
@given(st.data())
def test_pts(work, data):
  n = data.draw(st.sampled_from([49, 66, 68]))
  pts = np.asarray(data.draw(st.lists(st.floats(-1e5, 1e5, allow_nan=False, width=32),
                                      min_size=2 * n, max_size=2 * n)), np.float32).reshape(n, 2)
  header = [Line('version: 1'), Line(f'n_points: {n}')]
  if data.draw(st.booleans()):
    header.reverse()
  body = [Line(f'{x!r} {y!r}'.replace('np.float32(', '').replace(')', '')) for x, y in
          pts.tolist()]
  lines = header + [Line('{')] + body + [Line('}')]
  clean = data.draw(st.booleans())
  kind = 'none' if clean else data.draw(st.sampled_from(
      ['none', 'coord', 'n_points', 'extra_after', 'no_close', 'three_numbers']))
  if kind == 'coord':
    l = data.draw(st.sampled_from(body))
    l.text, l.stage = data.draw(st.sampled_from(['1 nan', 'inf 2', '1e39 0', '1,2', 'x y', '1'])), 4
  elif kind == 'n_points':
    l = next(l for l in header if l.text.startswith('n_points'))
    l.text, l.stage = data.draw(st.sampled_from(['n_points: 3', 'n_points: 49.0',
                                                 'n_points: -1', 'n_points: \uff14\uff19'])), 4
  elif kind == 'extra_after':
    lines.append(Line('1 2', stage=4))
  elif kind == 'no_close':
    lines[-1].text, lines[-1].stage = '1 2', 4
  elif kind == 'three_numbers':
    l = data.draw(st.sampled_from(body))
    l.text, l.stage = l.text + ' 0', 4
  opts = data.draw(text_faults(lines, allow=not clean))
  p = _write(work / 'a.pts', render(lines, *opts))
  outcome, value = _run('au_lists.read_pts (model)', lambda: au_lists.read_pts(p), p)
  _check('au_lists.read_pts', outcome, value, lines,
         lambda got: np.testing.assert_array_equal(got, pts))


@_settings(150)
@given(data=raw_bytes(_NUM_CHUNKS + ['version: 1\n', 'n_points: 49\n', '{\n', '}\n', '1 2\n'],
                      30))
def test_raw_pts(work, data):
  p = _write(work / 'raw.pts', data)
  outcome, value = _run('au_lists.read_pts (raw)', lambda: au_lists.read_pts(p), p)
  if outcome == 'ok':
    assert value.shape in ((49, 2), (66, 2), (68, 2)) and np.isfinite(value).all()


# ------------------------------------------------------------------ DISFA .mat landmarks


@st.composite
def mat_payload(draw):
  kind = draw(st.sampled_from(['good', 'good_t', 'shape', 'nan', 'huge', 'strings', 'cell',
                               'complex', 'no_pts', 'bytes', 'truncated', 'int']))
  pts = np.asarray(draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32),
                                 min_size=132, max_size=132)), np.float64).reshape(66, 2)
  if kind in ('good', 'good_t', 'int', 'truncated'):
    arr = {'good': pts, 'good_t': pts.T, 'int': np.rint(pts).astype(np.int32),
           'truncated': pts}[kind]
    buf = io.BytesIO()
    scipy.io.savemat(buf, {'pts': arr})
    raw = buf.getvalue()
    if kind == 'truncated':
      return raw[:draw(st.integers(0, len(raw) - 1))], None
    return raw, np.asarray(arr, np.float32).reshape(-1, 2) if kind != 'good_t' else np.asarray(
        pts, np.float32)
  if kind == 'bytes':
    return draw(st.binary(max_size=300)), None  # random bytes: an error, or (rarely) a file
  arr = {
      'shape': np.zeros(draw(st.sampled_from([(66, 3), (65, 2), (132,), (2, 65), (0,)]))),
      'nan': np.where(np.arange(132).reshape(66, 2) == draw(st.integers(0, 131)), np.nan, pts),
      'huge': np.full((66, 2), draw(st.sampled_from([1e39, -1e300, np.inf]))),
      'strings': np.array(['a'] * 66),
      'cell': np.array([np.zeros(2), 'x'], dtype=object),
      'complex': pts + 1j,
      'no_pts': pts,
  }[kind]
  buf = io.BytesIO()
  scipy.io.savemat(buf, {'other' if kind == 'no_pts' else 'pts': arr})
  return buf.getvalue(), 'error'  # every other kind must be rejected


@_settings(120)
@given(payload=mat_payload())
def test_disfa_landmark_mat(work, payload):
  raw, want = payload
  p = _write(work / 'SN001_0000_lm.mat', raw)
  outcome, value = _run('disfa.read_landmark_mat (model + random bytes)', lambda: disfa.read_landmark_mat(p), p,
                        line_required=False)
  if isinstance(want, np.ndarray):
    assert outcome == 'ok'
    np.testing.assert_array_equal(value, want)
  elif want == 'error':
    assert outcome == 'error'
  elif outcome == 'ok':  # a truncated or random file that still loads, or complex values
    assert value.shape == (66, 2) and value.dtype == np.float32 and np.isfinite(value).all()


# ------------------------------------------------------------------ file-name scans


@_settings(60)
@given(names=st.lists(st.one_of(
    st.sampled_from(['1.jpg', '0001.jpg', '1.png', '2.JPG', '03.bmp', '\u00b2.jpg', '\u0661.jpg',
                     '\uff11.png', 'a1.jpg', '1.txt', '-1.jpg', '1.5.jpg', '99999999999999999.jpg',
                     'SN001_0000_lm.mat', 'l00001_lm.mat', 'SN001_0001_lm.mat', 'l00003_lm.mat',
                     'SN001_\u0661_lm.mat', 'l1_lm.mat']),
    st.text(min_size=1, max_size=8).filter(lambda s: '/' not in s and '\x00' not in s and
                                           s not in ('.', '..'))), max_size=8, unique=True))
def test_numbered_and_landmark_files(tmp_path_factory, names):
  d = tmp_path_factory.mktemp('names')
  made = []
  for n in names:
    try:
      open(os.path.join(d, n), 'wb').close()
      made.append(n)
    except OSError:
      pass
  for parser, fn in (('au_builder_base.numbered_files', lambda: base.numbered_files(str(d))),
                     ('disfa.landmark_files', lambda: disfa.landmark_files(str(d)))):
    try:
      got = fn()
    except ValueError as e:  # AUDataError / ListFormatError: names the file in the directory
      assert isinstance(e, (base.AUDataError, au_lists.ListFormatError))
      assert str(e).startswith(str(d) + os.sep)
      _record(parser, 'error')
      continue
    _record(parser, 'ok')
    assert all(isinstance(k, int) and k >= 0 and os.path.basename(v) in made
               for k, v in got.items())
    if parser.endswith('numbered_files'):
      want, conflict = {}, False
      for n in sorted(made):
        stem, ext = os.path.splitext(n)
        if ext.lower() in base.IMAGE_EXTENSIONS and stem.isascii() and stem.isdigit() and len(
            stem) <= 15:
          conflict |= int(stem) in want
          want[int(stem)] = os.path.join(d, n)
      assert not conflict and got == want


# ------------------------------------------------------------------ ME-GraphAU fold join


@_settings(100)
@given(st.data())
def test_megraphau_folds_join(work, data):
  """Six lists from a 3-part model; one membership / label fault; all labels used or rejected."""
  test_part = {1: 3, 2: 2, 3: 1}
  n = data.draw(st.integers(3, 8))
  imgs = [f'S{i % 4}/{i}.jpg' for i in range(n)]
  part = {p: 1 + i % 3 for i, p in enumerate(imgs)}
  lab = {p: data.draw(st.lists(st.sampled_from([0, 1, 9]), min_size=2, max_size=2)) for p in imgs}
  lists = {}
  for k, tp in test_part.items():
    lists[(k, 'test')] = [p for p in imgs if part[p] == tp]
    lists[(k, 'train')] = [p for p in imgs if part[p] != tp]
  overrides = {}
  kind = data.draw(st.sampled_from(['none', 'drop_train', 'train_only', 'contradict', 'two_tests',
                                    'train_and_test']))
  k = data.draw(st.sampled_from([1, 2, 3]))
  if kind == 'drop_train' and lists[(k, 'train')]:
    lists[(k, 'train')].pop(data.draw(st.integers(0, len(lists[(k, 'train')]) - 1)))
  elif kind == 'train_only':
    lists[(k, 'train')].append('S9/extra.jpg')
    lab['S9/extra.jpg'] = [1, 0]
  elif kind == 'contradict' and lists[(k, 'train')]:
    p = data.draw(st.sampled_from(lists[(k, 'train')]))
    overrides[(k, 'train', p)] = [1 - v if v != 9 else 0 for v in lab[p]]
  elif kind == 'two_tests':
    other = data.draw(st.sampled_from([j for j in (1, 2, 3) if j != k]))
    if lists[(other, 'test')]:
      lists[(k, 'test')].append(lists[(other, 'test')][0])
  elif kind == 'train_and_test' and lists[(k, 'test')]:
    lists[(k, 'train')].append(lists[(k, 'test')][0])
  else:
    kind = 'none'
  for (fold, split), paths in lists.items():
    names = au_lists.megraphau_file_names('DS', fold)
    rows = [overrides.get((fold, split, p), lab[p]) for p in paths]
    _write(work / names[f'{split}_paths'], ''.join(p + '\n' for p in paths).encode() or b'\n')
    _write(work / names[f'{split}_labels'],
           ''.join(' '.join(map(str, r)) + '\n' for r in rows).encode() or b'\n')

  def join():
    folds = au_lists.read_megraphau_folds(str(work), 'DS', 2)
    images = au_lists.merge_megraphau_folds(folds)
    au_lists.check_megraphau_membership(
        images, test_part,
        {j: str(work / au_lists.megraphau_file_names('DS', j)['train_paths']) for j in test_part})
    return images

  outcome, value = _run('au_lists.merge_megraphau_folds + check_megraphau_membership (model)', join)
  if kind == 'none' and all(lists.values()):
    assert outcome == 'ok'
    assert set(value) == set(imgs)
    for p, img in value.items():
      assert test_part[img.test_fold] == part[p]
      raw = np.asarray(lab[p], np.float32)
      np.testing.assert_array_equal(img.entry.au_mask, (raw != 9))
      assert sorted(img.train) == sorted(j for j in test_part if j != img.test_fold)
  elif kind != 'none':
    msg = str_error(join)
    assert outcome == 'error' and re.match(re.escape(str(work)) + r'/DS_\w+_fold\d\.txt:\d+: ',
                                           msg), msg
    if kind == 'contradict':
      assert msg.count('label_fold') >= 2  # both label files named

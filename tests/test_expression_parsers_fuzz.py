"""Property-based tests (hypothesis) of the expression annotation parsers (issue 20).

Every parser of the expression builders (AffectNet, Aff-Wild2, RAF-ML, RAF-DB, JAFFE, the
shared number readers of ``expression_builder_base`` and ``faujax.data.text_files.decode``,
the text reader under all of them) gets two kinds of input:

* structured files generated from the documented format, with benign variations (BOM,
  CRLF, blank lines where allowed, spaces) and faults at known lines; the parser must
  return the documented result, or raise ``AnnotationError`` naming that file and line;
* the same files mutated byte by byte (hostile bytes: NUL, 0xff, BOMs, form feeds, lone
  CRs, NEL, non-ASCII digits, separators, ...); the parser must either parse or raise
  ``AnnotationError`` whose message starts '<file>, line <n>: ', never another exception.

Example counts are small (the module runs in well under a minute on two cores);
``COUNTS`` records how many inputs each parser saw, printed when the module finishes.
"""

from __future__ import annotations

import collections
import math
import re

from hypothesis import HealthCheck, example, given, settings, strategies as st
import pytest

from faujax.data import aff_wild2, affectnet, jaffe, raf
from faujax.data import expression_builder_base as base
from faujax.data import text_files

SETTINGS = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COUNTS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope='module', autouse=True)
def _report_counts():
  yield
  parsers = sorted({k.split(' ')[0] for k in COUNTS})
  print('\nfuzzed inputs per parser (parsed / AnnotationError):')
  for name in parsers:
    print(f'  {name}: {COUNTS[name]} ({COUNTS[name + " parsed"]} / {COUNTS[name + " error"]})')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  """A manual dir with the (empty) image files the structured inputs refer to."""
  root = tmp_path_factory.mktemp('fuzz')
  for rel in AFFECTNET_IMAGES:
    path = root / 'affectnet' / affectnet.IMAGE_DIR / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
  (root / 'affectnet' / 'outside.jpg').touch()
  for stem in RAF_ML_STEMS:
    path = root / 'raf_ml' / 'Image' / 'aligned' / f'{stem}_aligned.jpg'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
  for subset in ('basic', 'compound'):
    for stem in RAF_DB_STEMS:
      path = root / 'raf_db' / subset / 'Image' / 'aligned' / f'{stem}_aligned.jpg'
      path.parent.mkdir(parents=True, exist_ok=True)
      path.touch()
    (root / 'raf_db' / subset / 'EmoLabel').mkdir()
  for d in ('aw', 'jaffe', 'text'):
    (root / d).mkdir()
  return base.epath.Path(root)


def run_parser(name: str, call, path, *other_paths) -> tuple[str, object]:
  """('ok', result) or ('error', AnnotationError); any other exception fails the test.

  The error must name ``path`` (or one of ``other_paths``) and a line: '<path>, line <n>: '.
  """
  COUNTS[name] += 1
  try:
    result = call()
  except base.AnnotationError as e:
    COUNTS[name + ' error'] += 1
    assert any(str(e).startswith(f'{p}, line {e.line}: ') for p in (path, *other_paths)), str(e)
    assert e.line >= 1 and e.detail
    return 'error', e
  COUNTS[name + ' parsed'] += 1
  return 'ok', result


def expect_error(outcome, line: int):
  kind, got = outcome
  assert kind == 'error', f'expected an AnnotationError at line {line}; parsed {got!r}'
  assert got.line == line, f'expected line {line}: {got}'


def expect_ok(outcome):
  kind, got = outcome
  assert kind == 'ok', f'expected a result; got {got}'
  return got


# --------------------------------------------------------------------------- byte mutations
HOSTILE = [b'\x00', b'\xff', b'\xfe', b'\xef\xbb\xbf', b'\r', b'\r\n', b'\n', b'\n\n', b'\x0c',
           b'\x0b', b'\x85', b'\xc2\x85', '\u2028'.encode(), '\u0663'.encode(), b'\xc3',
           '\u00e9'.encode(), b' ', b'\t', b',', b';', b'-', b'.', b'e', b'_', b'nan', b'inf',
           b'1e309', b'-5', b'-2', b'-1', b'0', b'7', b'9', b'"', b'#', b'/', b'../', b'\\']


@st.composite
def mutate(draw, data: bytes) -> bytes:
  out = bytearray(data)
  for _ in range(draw(st.integers(1, 4))):
    op = draw(st.sampled_from(['insert', 'replace', 'delete']))
    pos = draw(st.integers(0, len(out)))
    chunk = draw(st.one_of(st.sampled_from(HOSTILE), st.binary(min_size=1, max_size=3)))
    if op == 'insert':
      out[pos:pos] = chunk
    elif op == 'replace':
      out[pos:pos + len(chunk)] = chunk
    else:
      del out[pos:pos + len(chunk)]
  return bytes(out)


def join_lines(lines: list[bytes], crlf: bool, bom: bool, final_newline: bool) -> bytes:
  body = (b'\r\n' if crlf else b'\n').join(lines)
  if final_newline and lines:
    body += b'\r\n' if crlf else b'\n'
  return (b'\xef\xbb\xbf' if bom else b'') + body


text_options = st.fixed_dictionaries(
    {'crlf': st.booleans(), 'bom': st.booleans(), 'final_newline': st.booleans()})

# Text faults at a line: (bytes of the line) -> always an error at that line.
TEXT_FAULT_LINES = [b'ok \xff here', b'\xc3(', b'x\x00y', b'x\x0cy', b'x\ry', b'\xef\xbb\xbfx',
                    '\u2028x'.encode(), b'x\x85y', b'tab\x1fsep']


# --------------------------------------------------------------------------- text and numbers
_BAD = set(range(0x00, 0x09)) | set(range(0x0a, 0x20)) | set(range(0x7f, 0xa0)) | {
    0xfeff, 0x2028, 0x2029}


@settings(SETTINGS, max_examples=200)
@given(st.one_of(st.binary(max_size=80),
                 st.lists(st.sampled_from(HOSTILE + [b'ab', b'1 2', b'x']), max_size=12).map(
                     b''.join)))
@example(b'a\r')  # a CR at the end of the file ends no line
@example(b'a\r\r\nb\n')  # neither does the first CR of CR CR LF
@example(b'\xef\xbb\xbf \ta b\t\r\n\n c\n')
@example(b'\xef\xbb\xbf\xef\xbb\xbf\n')
@example(b'x\ncaf\xc3\xa9 \xff\n')
def test_text_files_decode(root, data):
  """text_files.decode, the reader under every parser, against its rules computed here."""
  path = root / 'text' / 'f.txt'
  COUNTS['text_files.decode'] += 1
  try:
    got = text_files.decode(data, path)
  except text_files.TextFileError as e:
    COUNTS['text_files.decode error'] += 1
    assert str(e).startswith(f'{path}:{e.line}: ') and e.detail, str(e)
    got = e
  else:
    COUNTS['text_files.decode parsed'] += 1

  def expect(line: int, column: int):
    assert isinstance(got, text_files.TextFileError), f'expected an error at line {line}: {got!r}'
    assert got.line == line and re.search(rf'at column {column}\b', got.detail), (line, column, got)

  start = 3 if data.startswith(b'\xef\xbb\xbf') else 0
  try:
    text = data[start:].decode('utf-8')
  except UnicodeDecodeError as e:
    before = data[start:start + e.start].decode('utf-8')
    expect(before.count('\n') + 1, len(before) - before.rfind('\n'))
    return
  # Lines end at LF; a CR just before an LF belongs to the line end; any other CR is refused.
  *ended, last = text.split('\n')
  lines = [l[:-1] if l.endswith('\r') else l for l in ended] + ([last] if last else [])
  for i, line in enumerate(lines):
    bad = [j for j, c in enumerate(line) if ord(c) in _BAD]
    if bad:
      expect(i + 1, bad[0] + 1)
      return
  assert got == [line.strip(' \t') for line in lines]


NUMBER_TOKENS = st.one_of(
    st.text(alphabet='0123456789+-.eE_ \tnaifINF\u0663\u00b2\u3000x,', max_size=10),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(['1e309', '-1e309', '1_0', '\u0661\u0662', ' 7 ', '+3', '.5', '5.', '-.5e-3',
                     '1e', 'e1', '--1', '0x10', '9' * 400, '1' * 120, 'Infinity', '-nan']))


@settings(SETTINGS, max_examples=300)
@given(NUMBER_TOKENS)
def test_parse_float_and_int(token):
  stripped = token.strip()
  for name, parse, allowed in (('parse_float', base.parse_float, set('0123456789+-.eE')),
                               ('parse_int', base.parse_int, set('0123456789+-'))):
    outcome = run_parser(name, lambda: parse(token, 'f.txt', 3, 'a number'), 'f.txt')
    value = None
    if stripped and set(stripped) <= allowed and (name == 'parse_float' or len(stripped) <= 100):
      try:
        value = float(stripped) if name == 'parse_float' else int(stripped)
      except ValueError:
        value = None
    if value is None or not math.isfinite(value):
      expect_error(outcome, 3)
    else:
      assert expect_ok(outcome) == value


# --------------------------------------------------------------------------- Aff-Wild2
AW_NAMES = ['Neutral', 'Anger', 'Disgust', 'Fear', 'Happiness', 'Sadness', 'Surprise', 'Other']
AW_CLASS = {'Neutral': 0, 'Happiness': 1, 'Sadness': 2, 'Surprise': 3, 'Fear': 4, 'Disgust': 5,
            'Anger': 6, 'Other': aff_wild2.OTHER}

expr_entry = st.one_of(
    st.integers(-1, 7).map(lambda c: ('ok', str(c), c)),
    st.sampled_from([' 3', '+2', '5 ', '\t0', '-1']).map(lambda t: ('ok', t, int(t))),
    st.sampled_from(['8', '12', '-2', '-5']).map(lambda t: ('bad', t, None)),
    st.sampled_from(['x', '4.0', '1_0', '\u0663', 'nan', '1 2', '0,1', '3;']).map(
        lambda t: ('bad', t, None)),
    st.sampled_from(['', ' ', '\t']).map(lambda t: ('blank', t, None)))


def expect_blank_line_error(outcome, entries) -> bool:
  """A blank line before the last entry is a text-rule fault, reported before any content
  fault (text_files checks the whole file first): True when there is one."""
  blank = next((i for i, e in enumerate(entries) if e[0] == 'blank'), None)
  if blank is not None:
    expect_error(outcome, blank + 2)
  return blank is not None


@st.composite
def expr_file(draw, faults=True):
  names = draw(st.permutations(AW_NAMES))[:draw(st.integers(1, 8))]
  entries = draw(st.lists(expr_entry, max_size=12))
  if not faults or draw(st.booleans()):  # half the files without faults
    entries = [e for e in entries if e[0] == 'ok' and int(e[1]) < len(names)]
  trailing = draw(st.integers(0, 2))
  opts = draw(text_options)
  lines = [','.join(names).encode()] + [e[1].encode() for e in entries] + [b''] * trailing
  return names, entries, join_lines(lines, **opts)


@settings(SETTINGS, max_examples=150)
@given(expr_file())
def test_aff_wild2_expr_structured(root, case):
  names, entries, data = case
  path = root / 'aw' / 'e.txt'
  path.write_bytes(data)
  outcome = run_parser('aff_wild2.read_expr_file', lambda: aff_wild2.read_expr_file(path), path)
  last = max((i for i, e in enumerate(entries) if e[0] != 'blank'), default=-1)
  if expect_blank_line_error(outcome, entries[:last + 1]):
    return
  want = []
  for i, (kind, _, code) in enumerate(entries[:last + 1]):
    if kind != 'ok' or code >= len(names):
      expect_error(outcome, i + 2)  # a bad or unknown code
      return
    want.append(None if code == -1 else AW_CLASS[names[code]])
  assert expect_ok(outcome) == want


va_value = st.floats(-1, 1).map(lambda x: (repr(x), x)) | st.sampled_from(
    [('-1', -1.0), ('1.000', 1.0), ('-0.0', -0.0), ('.25', 0.25), ('1e-3', 1e-3)])
out_of_range = st.floats(1, 1e300, exclude_min=True).flatmap(
    lambda x: st.sampled_from([repr(x), repr(-x)])).filter(lambda t: float(t) != -5.0)
va_entry = st.one_of(
    st.tuples(va_value, va_value).map(lambda p: ('ok', f'{p[0][0]},{p[1][0]}', (p[0][1], p[1][1]))),
    st.sampled_from(['-5,-5', '-5.0,-5', ' -5 , -5.00']).map(lambda t: ('ok', t, None)),
    st.sampled_from(['-5,0.3', '0.1,-5', '1.5,0', '0,-1.01']).map(lambda t: ('bad', t, None)),
    st.tuples(out_of_range, va_value).map(lambda p: ('bad', f'{p[1][0]},{p[0]}', None)),
    st.sampled_from(['nan,0', '0,inf', '1e309,0', '0.1', '0.1,0.2,0.3', ' ,0.1', '0.1;0.2',
                     '0.1,0.2,', '1_0,0']).map(lambda t: ('bad', t, None)),
    st.sampled_from(['', '  ']).map(lambda t: ('blank', t, None)))


@st.composite
def va_file(draw, faults=True):
  entries = draw(st.lists(va_entry, max_size=12))
  if not faults or draw(st.booleans()):  # half the files without faults
    entries = [e for e in entries if e[0] == 'ok']
  header = draw(st.sampled_from(['valence,arousal', 'Valence, Arousal', 'valence,arousal  ']))
  lines = [header.encode()] + [e[1].encode() for e in entries] + [b''] * draw(st.integers(0, 2))
  return entries, join_lines(lines, **draw(text_options))


@settings(SETTINGS, max_examples=150)
@given(va_file())
def test_aff_wild2_va_structured(root, case):
  entries, data = case
  path = root / 'aw' / 'v.txt'
  path.write_bytes(data)
  outcome = run_parser('aff_wild2.read_va_file', lambda: aff_wild2.read_va_file(path), path)
  last = max((i for i, e in enumerate(entries) if e[0] != 'blank'), default=-1)
  if expect_blank_line_error(outcome, entries[:last + 1]):
    return
  want = []
  for i, (kind, _, value) in enumerate(entries[:last + 1]):
    if kind != 'ok':
      expect_error(outcome, i + 2)
      return
    want.append(value)
  assert expect_ok(outcome) == want


@SETTINGS
@given(st.data())
def test_aff_wild2_mutated_bytes(root, data):
  _, _, expr = data.draw(expr_file(faults=False))
  _, va = data.draw(va_file(faults=False))
  for name, reader, raw in (('aff_wild2.read_expr_file', aff_wild2.read_expr_file, expr),
                            ('aff_wild2.read_va_file', aff_wild2.read_va_file, va)):
    path = root / 'aw' / 'm.txt'
    path.write_bytes(data.draw(mutate(raw)))
    kind, got = run_parser(name, lambda: reader(path), path)  # pylint: disable=cell-var-from-loop
    if kind == 'ok':
      assert isinstance(got, list)


# --------------------------------------------------------------------------- AffectNet
AFFECTNET_IMAGES = ['a/0.jpg', 'a/1.jpg', 'a/2.jpg', 'a/3.jpg', 'b c/d e.jpg', 'q,r/s.jpg',
                    'x/y/z.jpg']
LM = ';'.join(f'{i}.0;{i % 7}.0' for i in range(68))  # eye centres 6 px apart
AN_COLUMNS = list(affectnet.CSV_COLUMNS)


def _csv_path(rel: str) -> str:
  return f'"{rel}"' if ',' in rel else rel


@st.composite
def affectnet_rows(draw):
  """Valid rows: dicts of field texts, a distinct image each."""
  rels = draw(st.lists(st.sampled_from(AFFECTNET_IMAGES), unique=True, min_size=1, max_size=5))
  rows = []
  for rel in rels:
    code = draw(st.integers(0, 10))
    va = draw(st.one_of(st.just(('-2', '-2')), st.tuples(va_value, va_value).map(
        lambda p: (p[0][0], p[1][0]))))
    box = draw(st.sampled_from([('4', '5', '30', '30'), ('-3.5', '0', '12.25', '1e2'),
                                ('0', '0', '0.5', '2')]))
    pad = '' if ',' in rel else draw(st.sampled_from(['', ' ']))  # csv: no space before a quote
    rows.append({'subDirectory_filePath': pad + _csv_path(rel) + pad, 'rel': rel,
                 'face_x': box[0], 'face_y': box[1], 'face_width': box[2],
                 'face_height': box[3], 'facial_landmarks': LM + draw(st.sampled_from(['', ';'])),
                 'expression': str(code), 'valence': va[0], 'arousal': va[1]})
  return rows


def _row_text(row, columns) -> bytes:
  return ','.join(row[c] for c in columns).encode()


def _kept(row, num_classes) -> bool:
  return int(row['expression']) < num_classes


AN_FAULTS = ['none', 'dup', 'outside', 'missing', 'code', 'va', 'columns', 'landmarks', 'box',
             'header', 'text']


@st.composite
def affectnet_case(draw, faults=True):
  num_classes = draw(st.sampled_from([7, 8]))
  columns = draw(st.permutations(AN_COLUMNS))
  rows = draw(affectnet_rows())
  fault = draw(st.sampled_from(AN_FAULTS + ['none'] * 4)) if faults else 'none'
  header = ','.join(columns).encode()
  bad = None  # (row dict or bytes, whether it is an error, the row it duplicates)
  if fault == 'dup':
    first = draw(st.sampled_from(rows))
    alias = draw(st.sampled_from(['', './', 'dup']))
    rel = first['rel']
    if alias == './':
      rel = rel.replace('/', '/./', 1)
    elif alias == 'dup':
      rel = rel.replace('/', '//', 1)
    row = dict(draw(st.sampled_from(rows)), subDirectory_filePath=_csv_path(rel))
    bad = (row, True, first)
  elif fault == 'outside':
    rel = draw(st.sampled_from(['../outside.jpg', '/etc/x.jpg', 'a/../../outside.jpg', '..',
                                'a\\0.jpg', '', '.', ' ./ ']))
    bad = (dict(rows[0], subDirectory_filePath=rel), True, None)
  elif fault == 'missing':
    row = dict(rows[0], subDirectory_filePath='m/none.jpg')
    bad = (row, _kept(row, num_classes), None)
  elif fault == 'code':
    code = draw(st.sampled_from(['11', '-1', 'x', '1.0', '\u0663', '', '1e1', '7 7']))
    bad = (dict(rows[0], subDirectory_filePath='m/code.jpg', expression=code), True, None)
  elif fault in ('va', 'landmarks', 'box'):
    code = draw(st.integers(0, 10))
    row = dict(rows[0], subDirectory_filePath='m/f.jpg', expression=str(code))
    if fault == 'va':
      row['valence'], row['arousal'] = draw(st.sampled_from(
          [('nan', '0'), ('-2', '0.3'), ('0.1', '-2'), ('1.5', '0'), ('1e309', '0'), ('0', '-inf'),
           ('0', ''), ('0,5', '0')]))
    elif fault == 'landmarks':
      row['facial_landmarks'] = draw(st.sampled_from(
          [LM.rsplit(';', 1)[0], LM + ';1', LM.replace('3.0', 'nan', 1), ';'.join(['0'] * 136),
           LM.replace(';', ' ', 1), LM.replace('40.0', '1e39', 1), LM.replace(';', ';;', 1)]))
    else:
      row['face_width'] = draw(st.sampled_from(['0', '-3', 'nan', '1e309', '1_0', '']))
    # A decimal comma adds a field: the row is malformed whatever its code.
    bad = (row, _kept(row, num_classes) or ',' in row['valence'], None)
  elif fault == 'columns':
    text = _row_text(rows[0], columns)
    text = draw(st.sampled_from([text + b',x', text.rsplit(b',', 1)[0], b'"', b'a,"b"c']))
    bad = (text, True, None)
  elif fault == 'text':
    bad = (draw(st.sampled_from(TEXT_FAULT_LINES)), True, None)
  elif fault == 'header':
    header = draw(st.sampled_from([','.join(columns[1:]), ','.join(columns + [columns[0]]),
                                   ';'.join(columns), ''])).encode()
  items = [(r, None) for r in rows]
  if bad is not None:
    items.insert(draw(st.integers(0 if bad[2] is None else rows.index(bad[2]) + 1, len(items))),
                 ('bad', bad))
  # Blank lines (and csv rows of empty cells) between rows are ignored.
  for _ in range(draw(st.integers(0, 2))):
    items.insert(draw(st.integers(0, len(items))),
                 ('blank', draw(st.sampled_from([b'', b'  ', b',,', b' , \t,']))))
  lines, line_of = [header], {}
  for item, extra in items:
    if item == 'blank':
      lines.append(extra)
      continue
    row = extra[0] if item == 'bad' else item
    line_of[id(item if item != 'bad' else row)] = len(lines) + 1
    lines.append(row if isinstance(row, bytes) else _row_text(row, columns))
  data = join_lines(lines, **draw(text_options))
  return num_classes, rows, fault, bad, line_of, data


@settings(SETTINGS, max_examples=150)
@given(affectnet_case())
def test_affectnet_structured(root, case):
  num_classes, rows, fault, bad, line_of, data = case
  manual = root / 'affectnet'
  path = manual / 'training.csv'
  path.write_bytes(data)
  skips = base.SkipCounter()
  outcome = run_parser('affectnet.read_affectnet_csv', lambda: affectnet.read_affectnet_csv(
      manual, 'training.csv', num_classes, skips), path)
  if fault == 'header':  # a blank header line is skipped: the next content line is the header
    lines = data.removeprefix(b'\xef\xbb\xbf').split(b'\n')
    expect_error(outcome, next(i + 1 for i, l in enumerate(lines) if l.strip(b' \t\r,')))
    return
  if bad is not None and bad[1]:
    line = line_of[id(bad[0])]
    if bad[2] is not None:  # a duplicate: the later of the two rows
      line = max(line, line_of[id(bad[2])])
    expect_error(outcome, line)
    return
  records = expect_ok(outcome)
  # A faulty row with a skipped code is skipped before its fields are checked.
  kept = sorted(((line_of[id(r)], r) for r in rows if _kept(r, num_classes)),
                key=lambda t: t[0])
  got = [(r.source[1], r.file_name, r.expression, r.va_mask, r.valence, r.arousal)
         for r in records]
  want = []
  for line, r in kept:
    annotated = r['valence'] != '-2'
    want.append((line, f'{affectnet.IMAGE_DIR}/{r["rel"]}', int(r['expression']),
                 1.0 if annotated else 0.0, float(r['valence']) if annotated else 0.0,
                 float(r['arousal']) if annotated else 0.0))
  assert got == want
  n_skipped = len(rows) - len(kept) + (bad is not None)
  assert sum(skips.counts.values()) == n_skipped
  for record in records:
    assert record.landmarks.shape == (68, 2) and record.box[2] > 0


@SETTINGS
@given(st.data())
def test_affectnet_mutated_bytes(root, data):
  num_classes, _, _, _, _, raw = data.draw(affectnet_case(faults=False))
  manual = root / 'affectnet'
  path = manual / 'training.csv'
  path.write_bytes(data.draw(mutate(raw)))
  seen = {}
  kind, got = run_parser('affectnet.read_affectnet_csv', lambda: affectnet.read_affectnet_csv(
      manual, 'training.csv', num_classes, base.SkipCounter(), seen), path)
  if kind == 'ok':
    for record in got:
      assert record.image_path.startswith(str(manual / affectnet.IMAGE_DIR) + '/')
      assert 0 <= record.expression < num_classes
      assert -1 <= record.valence <= 1 and -1 <= record.arousal <= 1
    assert len({r.file_name for r in got}) == len(got)


# --------------------------------------------------------------------------- RAF-ML
RAF_ML_STEMS = ['0001', '0002', '0003', '0004', '0005', '0006']
score = st.one_of(st.integers(0, 9).map(str), st.floats(0, 100).map(repr),
                  st.sampled_from(['0.0', '1e-3', '.5', '12.']))


@st.composite
def raf_ml_case(draw, faults=True):
  stems = draw(st.lists(st.sampled_from(RAF_ML_STEMS), unique=True, min_size=1, max_size=5))
  names = [f'{s}.jpg' for s in stems]
  scores = {}
  for n in names:
    values = draw(st.lists(score, min_size=6, max_size=6).filter(
        lambda v: sum(float(x) for x in v) > 0))
    scores[n] = values
  part = {n: draw(st.sampled_from(['0', '1', 'train', 'test', 'Train', 'TEST'])) for n in names}
  multi = None
  if draw(st.booleans()):
    multi = {n: draw(st.lists(st.sampled_from('01'), min_size=6, max_size=6)) for n in names}
  files = {
      'distribution': [(n, ' '.join([n, *scores[n]])) for n in draw(st.permutations(names))],
      'partition_label': [(n, f'{n} {part[n]}') for n in draw(st.permutations(names))],
  }
  if multi is not None:
    files['multilabel'] = [(n, ' '.join([n, *multi[n]])) for n in draw(st.permutations(names))]
  kinds = ['none', 'dup', 'unmatched', 'missing_image', 'score', 'token', 'name', 'text']
  if multi is not None:
    kinds.append('multi')
  fault = draw(st.sampled_from(kinds + ['none'] * 3)) if faults else 'none'
  bad = None  # (file, line text, the name it duplicates or None)
  n0 = names[0]
  if fault == 'dup':
    which = draw(st.sampled_from(sorted(files)))
    alias = draw(st.sampled_from([n0, n0.replace('.jpg', '.png'), n0.replace('.jpg', '')]))
    text = dict(files[which])[n0].replace(n0, alias, 1)
    bad = (which, text, n0)
  elif fault == 'unmatched':
    spare = next((f'{s}.jpg' for s in RAF_ML_STEMS if f'{s}.jpg' not in names), None)
    if spare is None:
      fault = 'none'
    else:
      which = draw(st.sampled_from(sorted(files)))
      row = {'distribution': f'{spare} 1 0 0 0 0 0', 'partition_label': f'{spare} 0',
             'multilabel': f'{spare} 1 0 0 0 0 0'}[which]
      bad = (which, row, None)
  elif fault == 'missing_image':
    for which, row in (('distribution', '0009.jpg 1 1 1 1 1 1'), ('multilabel',
                                                                   '0009.jpg 1 0 0 0 0 0')):
      if which in files:
        files[which].append(('0009.jpg', row))
    bad = ('partition_label', '0009.jpg 0', None)
  elif fault == 'score':
    text = draw(st.sampled_from(['1 1 1 1 1 nan', '1 1 1 1 1 -1', '0 0 0 0 0 0',
                                 '1 1 1 1 1 1e309', '1 1 1 1 1 1_0', '1 1 1 1 1', '1 1 1 1 1 1 1',
                                 '1e308 1e308 0 0 0 0', '1 1 1 1 1 inf', '1 1 1 1 1 \u0663']))
    bad = ('distribution', f'0007.jpg {text}', None)
  elif fault == 'token':
    bad = ('partition_label', f'0007.jpg {draw(st.sampled_from(["2", "val", "-1", "0.0"]))}', None)
  elif fault == 'multi':
    values = draw(st.sampled_from(['1 0 0 0 0 2', '1 0 0 0 0 0.5', '1 0']))
    bad = ('multilabel', f'0007.jpg {values}', None)
  elif fault == 'name':
    name = draw(st.sampled_from(['a/b.jpg', '../x.jpg', '.jpg', '.hidden.jpg', 'x\\y.jpg']))
    bad = (draw(st.sampled_from(sorted(files))), f'{name} 1 1 1 1 1 1', None)
  elif fault == 'text':
    bad = (draw(st.sampled_from(sorted(files))), draw(st.sampled_from(TEXT_FAULT_LINES)), None)
  lines, fault_at = {}, None
  for which, rows in files.items():
    items = [text.encode() for _, text in rows]
    if bad is not None and bad[0] == which:
      text = bad[1] if isinstance(bad[1], bytes) else bad[1].encode()
      low = 0
      if bad[2] is not None:
        low = [n for n, _ in rows].index(bad[2]) + 1
      at = draw(st.integers(low, len(items)))
      items.insert(at, text)
      marker = text
    for _ in range(draw(st.integers(0, 2))):
      items.insert(draw(st.integers(0, len(items))), b'')
    if bad is not None and bad[0] == which:
      fault_at = (which, next(i for i, t in enumerate(items) if t is marker) + 1)
    lines[which] = join_lines(items, **draw(text_options))
  return names, scores, part, multi, fault, fault_at, lines


@settings(SETTINGS, max_examples=150)
@given(raf_ml_case())
def test_raf_ml_structured(root, case):
  names, scores, part, multi, fault, fault_at, files = case
  manual = root / 'raf_ml'
  (manual / 'multilabel.txt').unlink(missing_ok=True)
  for which, data in files.items():
    (manual / f'{which}.txt').write_bytes(data)
  threshold = 1 / 6
  outcome = run_parser('raf.read_raf_ml', lambda: raf.read_raf_ml(manual, threshold),
                       manual / f'{fault_at[0]}.txt' if fault_at else manual)
  if fault_at is not None:
    expect_error(outcome, fault_at[1])
    assert str(outcome[1]).startswith(str(manual / f'{fault_at[0]}.txt'))
    return
  splits, source = expect_ok(outcome)
  assert source == ('multilabel.txt' if multi is not None else
                    f'distribution.txt normalised > {threshold}')
  got = {r.key: (split, r.expression_multi, r.expression_scores)
         for split, records in splits.items() for r in records}
  assert set(got) == set(names)
  for n in names:
    s = [float(v) for v in scores[n]]
    norm = [v / sum(s) for v in s]
    y = tuple(float(v) for v in multi[n]) if multi is not None else tuple(
        1.0 if v > threshold else 0.0 for v in norm)
    split = 'train' if part[n].lower() in ('0', 'train') else 'test'
    assert got[n][0] == split and got[n][1] == y
    assert got[n][2] == pytest.approx(norm)


@SETTINGS
@given(st.data())
def test_raf_ml_mutated_bytes(root, data):
  *_, files = data.draw(raf_ml_case(faults=False))
  manual = root / 'raf_ml'
  (manual / 'multilabel.txt').unlink(missing_ok=True)
  target = data.draw(st.sampled_from(sorted(files)))
  for which, raw in files.items():
    (manual / f'{which}.txt').write_bytes(data.draw(mutate(raw)) if which == target else raw)
  # A mutation may also break the match between the files: the error names any of them.
  kind, got = run_parser('raf.read_raf_ml', lambda: raf.read_raf_ml(manual, 1 / 6),
                         *(manual / f'{which}.txt' for which in files))
  if kind == 'ok':
    keys = [r.key for records in got[0].values() for r in records]
    assert len(set(keys)) == len(keys)


# --------------------------------------------------------------------------- RAF-DB
RAF_DB_STEMS = ['train_00001', 'train_00002', 'train_00003', 'test_0001', 'test_0002']


@st.composite
def raf_db_case(draw, faults=True):
  subset = draw(st.sampled_from(['basic', 'compound']))
  max_code = 7 if subset == 'basic' else 11
  stems = draw(st.lists(st.sampled_from(RAF_DB_STEMS), unique=True, min_size=1, max_size=5))
  rows = [(f'{s}.jpg', draw(st.integers(1, max_code))) for s in stems]
  items = [f'{n} {c}'.encode() for n, c in rows]
  fault = draw(st.sampled_from(['dup', 'code', 'prefix', 'missing', 'name', 'fields', 'text']
                               + ['none'] * 3)) if faults else 'none'
  bad, low = None, 0
  if fault == 'dup':
    n0 = rows[0][0]
    bad = f'{draw(st.sampled_from([n0, n0.replace(".jpg", ".png")]))} 1'.encode()
    low = 1
  elif fault == 'code':
    code = draw(st.sampled_from(['0', str(max_code + 1), '-1', 'x', '1.0', '\u0663', '1_0']))
    bad = f'train_00001.jpg {code}'.encode()
  elif fault == 'prefix':
    bad = b'val_0001.jpg 1'
  elif fault == 'missing':
    bad = b'train_00009.jpg 1'
  elif fault == 'name':
    bad = draw(st.sampled_from([b'train_/x.jpg 1', b'../train_1.jpg 1', b'.train_1.jpg 1']))
  elif fault == 'fields':
    bad = draw(st.sampled_from([b'train_00001.jpg', b'train_00001.jpg 1 2', b'train 00001.jpg 1']))
  elif fault == 'text':
    bad = draw(st.sampled_from(TEXT_FAULT_LINES))
  if bad is not None:
    items.insert(draw(st.integers(low, len(items))), bad)
  for _ in range(draw(st.integers(0, 2))):
    items.insert(draw(st.integers(0, len(items))), b'')
  line = None if bad is None else next(i for i, t in enumerate(items) if t is bad) + 1
  return subset, rows, line, join_lines(items, **draw(text_options))


@settings(SETTINGS, max_examples=150)
@given(raf_db_case())
def test_raf_db_structured(root, case):
  subset, rows, line, data = case
  manual = root / 'raf_db'
  path = manual / subset / 'EmoLabel' / 'list_patition_label.txt'
  path.write_bytes(data)
  outcome = run_parser('raf.read_raf_db', lambda: raf.read_raf_db(manual, subset), path)
  if line is not None:
    expect_error(outcome, line)
    return
  splits = expect_ok(outcome)
  got = {r.key: (split, r.expression, r.expression_multi)
         for split, records in splits.items() for r in records}
  want = {}
  for name, code in rows:
    split = 'train' if name.startswith('train_') else 'test'
    if subset == 'basic':
      multi = tuple(1.0 if i == code - 1 else 0.0 for i in range(6))
      want[name] = (split, raf.RAF_BASIC_TO_EXPRESSION7[code], multi)
    else:
      want[name] = (split, -1, raf.compound_multi_label(code))
  assert got == want


@SETTINGS
@given(st.data())
def test_raf_db_mutated_bytes(root, data):
  subset, _, _, raw = data.draw(raf_db_case(faults=False))
  manual = root / 'raf_db'
  path = manual / subset / 'EmoLabel' / 'list_patition_label.txt'
  path.write_bytes(data.draw(mutate(raw)))
  kind, got = run_parser('raf.read_raf_db', lambda: raf.read_raf_db(manual, subset), path)
  if kind == 'ok':
    for split, records in got.items():
      assert all(r.key.startswith(f'{split}_') for r in records)


# --------------------------------------------------------------------------- JAFFE
JAFFE_COLUMNS = ['HAP', 'SAD', 'SUR', 'ANG', 'DIS', 'FEA', 'PIC']
rating = st.floats(1, 5).map(lambda x: f'{x:.2f}') | st.sampled_from(['1', '5', '3.00', '4.5'])


@st.composite
def jaffe_case(draw, faults=True):
  order = draw(st.permutations(JAFFE_COLUMNS))
  first = draw(st.sampled_from(['N ', '# ', '#']))
  header = (first + ' '.join(order)).encode()
  pics = draw(st.lists(st.tuples(st.sampled_from(jaffe.SUBJECTS), st.sampled_from(
      ['HA1', 'SA2', 'AN3', 'NE1'])).map('-'.join), unique=True, min_size=1, max_size=6))
  rows = {}
  items = []
  for i, pic in enumerate(pics):
    values = dict(zip(JAFFE_COLUMNS[:6], draw(st.lists(rating, min_size=6, max_size=6))),
                  PIC=pic)
    rows[pic] = values
    items.append(' '.join([str(i + 1)] + [values[c] for c in order]).encode())
  fault = draw(st.sampled_from(['dup', 'rating', 'fields', 'pic', 'subject', 'header', 'text']
                               + ['none'] * 3)) if faults else 'none'
  bad, low = None, 0

  def row(**change):
    values = dict(rows[pics[0]], **change)
    return ' '.join(['9'] + [values[c] for c in order]).encode()
  if fault == 'dup':
    bad, low = row(), 1
  elif fault == 'rating':
    bad = row(**{draw(st.sampled_from(JAFFE_COLUMNS[:6])): draw(st.sampled_from(
        ['0.99', '5.01', 'nan', 'inf', 'x', '1e309', '\u0663', '3_0'])), 'PIC': 'KA-XX9'})
  elif fault == 'fields':
    bad = draw(st.sampled_from([row(PIC='KA-XX9') + b' extra',
                                row(PIC='KA-XX9').rsplit(b' ', 1)[0]]))
  elif fault == 'pic':
    bad = row(PIC=draw(st.sampled_from(['KA_HA1', 'ka-HA1', 'KA-HA', 'KA-HA\u0661', 'KAA-HA1'])))
  elif fault == 'subject':
    bad = row(PIC='ZZ-HA1')
  elif fault == 'text':
    bad = draw(st.sampled_from(TEXT_FAULT_LINES))
  elif fault == 'header':
    header = draw(st.sampled_from([' '.join(order[1:]), 'N ' + ' '.join(order + [order[0]])]))
    header = header.encode()
  if bad is not None:
    items.insert(draw(st.integers(low, len(items))), bad)
  for _ in range(draw(st.integers(0, 2))):
    items.insert(draw(st.integers(0, len(items))), b'')
  leading = draw(st.integers(0, 2))
  lines = [b''] * leading + [header] + items
  if fault == 'header':
    line = leading + 1
  else:
    line = None if bad is None else leading + 2 + next(i for i, t in enumerate(items) if t is bad)
  return rows, line, join_lines(lines, **draw(text_options))


@settings(SETTINGS, max_examples=150)
@given(jaffe_case())
def test_jaffe_structured(root, case):
  rows, line, data = case
  path = root / 'jaffe' / 'ratings.txt'
  path.write_bytes(data)
  outcome = run_parser('jaffe.read_ratings', lambda: jaffe.read_ratings(path), path)
  if line is not None:
    expect_error(outcome, line)
    return
  got = expect_ok(outcome)
  assert set(got) == set(rows)
  to_basic = {'SUR': 0, 'FEA': 1, 'DIS': 2, 'HAP': 3, 'SAD': 4, 'ANG': 5}
  for pic, values in rows.items():
    want = [0.0] * 6
    for col, i in to_basic.items():
      want[i] = float(values[col])
    assert got[pic][1] == tuple(want)


@SETTINGS
@given(st.data())
def test_jaffe_mutated_bytes(root, data):
  _, _, raw = data.draw(jaffe_case(faults=False))
  path = root / 'jaffe' / 'ratings.txt'
  path.write_bytes(data.draw(mutate(raw)))
  kind, got = run_parser('jaffe.read_ratings', lambda: jaffe.read_ratings(path), path)
  if kind == 'ok':
    for pic, (line, ratings) in got.items():
      assert re.fullmatch(r'[A-Z]{2}-[A-Z]{2}[0-9]+', pic) and pic[:2] in jaffe.SUBJECTS
      assert line >= 2 and all(1 <= r <= 5 for r in ratings)

"""Tests of the list-file readers and the shared helpers of the AU builders."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from faujax.data import au_builder_base as base
from faujax.data import au_lists
from faujax.data import expression_builder_base
from faujax.data import text_files


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  return str(path)


def test_label_rows_unknown_codes_become_mask(tmp_path):
  p = _write(tmp_path / 'l.txt', '0 1 9\n1 999 0\n-1 0 1\n\n')
  au, mask = au_lists.read_label_rows(p, 3)
  np.testing.assert_array_equal(au, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
  np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 1], [0, 1, 1]])
  assert au.dtype == mask.dtype == np.float32


@pytest.mark.parametrize('text,match', [
    ('0 1 1\n0 1\n', r'l\.txt:2: expected 3 AU labels per row, found 2'),
    ('0 1 1\n0 2 1\n', r'l\.txt:2: column 2 holds 2; expected 0, 1 or an unknown code'),
    ('0 1 x\n', r'l\.txt:1: expected numbers'),
    ('0 1 1\n\n0 1 1\n', r'l\.txt:2: blank line inside the file'),
])
def test_label_rows_errors_name_file_and_line(tmp_path, text, match):
  p = _write(tmp_path / 'l.txt', text)
  with pytest.raises(ValueError, match=match):
    au_lists.read_label_rows(p, 3)


def test_path_list(tmp_path):
  p = _write(tmp_path / 'p.txt', 'F001/T1/2440.jpg\nSN002\\0.png\n')
  assert au_lists.read_path_list(p) == ['F001/T1/2440.jpg', 'SN002/0.png']
  p = _write(tmp_path / 'q.txt', 'a.jpg\n../b.jpg\n')
  with pytest.raises(ValueError, match=r'q\.txt:2: image path'):
    au_lists.read_path_list(p)
  with pytest.raises(ValueError, match=r'missing\.txt does not exist'):
    au_lists.read_path_list(str(tmp_path / 'missing.txt'))


def test_jaanet_set_reads_interleaved_landmarks_and_checks_lengths(tmp_path):
  lm = np.arange(98, dtype=np.float32).reshape(49, 2) + 0.5
  line = ' '.join(f'{v:g}' for v in lm.reshape(-1))
  d = tmp_path / 'list'
  _write(d / 'BP4D_part1_path.txt', 'F001/T1/1.jpg\nF001/T1/2.jpg\n')
  _write(d / 'BP4D_part1_land.txt', f'{line}\n{line}\n')
  _write(d / 'BP4D_part1_biocular.txt', '30.5\n31\n')
  _write(d / 'BP4D_part1_AUoccur.txt', ' '.join(['1'] * 12) + '\n' + ' '.join(['0'] * 12) + '\n')
  entries = au_lists.read_jaanet_set(str(d), 'BP4D_part1', 12)
  assert [e.path for e in entries] == ['F001/T1/1.jpg', 'F001/T1/2.jpg']
  np.testing.assert_array_equal(entries[0].landmarks, lm)  # x y interleaved -> (49, 2)
  assert entries[1].source.endswith('BP4D_part1_path.txt:2')
  assert au_lists.detect_layouts(str(tmp_path), 'BP4D') == [au_lists.LAYOUT_JAANET]
  _write(d / 'BP4D_part1_biocular.txt', '30.5\n')
  with pytest.raises(ValueError, match=r'differ in length: .*BP4D_part1_biocular\.txt \(1 lines\)'):
    au_lists.read_jaanet_set(str(d), 'BP4D_part1', 12)
  _write(d / 'BP4D_part1_land.txt', f'{line}\n1 2 3\n')
  with pytest.raises(ValueError, match=r'BP4D_part1_land\.txt:2: expected 98 landmark coordinates'):
    au_lists.read_jaanet_set(str(d), 'BP4D_part1', 12)


def test_megraphau_detection_in_manual_root(tmp_path):
  for k in (1,):
    for n in au_lists.megraphau_file_names('DISFA', k).values():
      _write(tmp_path / n, 'SN001/0.png\n' if 'path' in n else '0 0 0 0 0 0 0 0\n')
  assert au_lists.detect_layouts(str(tmp_path), 'DISFA') == [au_lists.LAYOUT_MEGRAPHAU]
  assert au_lists.find_list_dir(str(tmp_path), ['DISFA_test_label_fold1.txt']) == str(tmp_path)
  assert au_lists.subject_of_path('SN001/0.png') == 'SN001'


def test_pts_round_trip_and_errors(tmp_path):
  lm = np.random.default_rng(0).uniform(0, 100, (68, 2)).astype(np.float32)
  p = str(tmp_path / 'a.pts')
  au_lists.write_pts(p, lm)
  np.testing.assert_allclose(au_lists.read_pts(p), lm, atol=1e-3)
  _write(tmp_path / 'b.pts', 'version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n')
  with pytest.raises(ValueError, match=r'b\.pts:2: n_points is 3; expected one of'):
    au_lists.read_pts(str(tmp_path / 'b.pts'))
  body = '\n'.join(['1 2'] * 48 + ['1 x'])
  _write(tmp_path / 'c.pts', f'version: 1\nn_points: 49\n{{\n{body}\n}}\n')
  with pytest.raises(ValueError, match=r'c\.pts:52: expected "x y"'):
    au_lists.read_pts(str(tmp_path / 'c.pts'))


def test_numbered_files_any_padding(tmp_path):
  for n in ('0001.jpg', '2.png', '003.txt', 'a4.jpg'):
    _write(tmp_path / 'd' / n, '')
  got = base.numbered_files(str(tmp_path / 'd'))
  assert sorted(got) == [1, 2] and got[1].endswith('0001.jpg')
  assert base.numbered_files(str(tmp_path / 'none')) == {}


def test_stable_hash_is_fixed():
  # sha1('img_001.jpg') begins with a fixed value: the partition never depends on the process.
  assert base.stable_hash('img_001.jpg') == base.stable_hash('img_001.jpg')
  assert base.part_by_hash('a') in (1, 2, 3)
  assert base.stable_hash('abc') == int('a9993e364706816aba3e25717850c26c9cd0d89d'[:15], 16)


# ------------------------------------------------------------------ text rules (issue 20)


def test_text_rules_encoding_bom_and_control_characters(tmp_path):
  p = str(tmp_path / 'p.txt')
  open(p, 'wb').write(b'a/1.jpg\r\nb/caf\xe9.jpg\n')
  with pytest.raises(au_lists.ListFormatError,
                     match=r'p\.txt:2: byte 0xe9 at offset 14 is not UTF-8'):
    au_lists.read_path_list(p)
  open(p, 'wb').write('a/1.jpg\n'.encode('utf-16'))
  with pytest.raises(au_lists.ListFormatError, match=r'p\.txt:1: .*UTF-16 LE byte-order mark'):
    au_lists.read_path_list(p)
  open(p, 'wb').write(b'\xef\xbb\xbfF004/T1/1.jpg\r\nF004/T1/2.jpg\nF004/T1/3.jpg')  # BOM, mixed
  assert au_lists.read_path_list(p) == ['F004/T1/1.jpg', 'F004/T1/2.jpg', 'F004/T1/3.jpg']
  open(p, 'wb').write(b'\xef\xbb\xbfF004/T1/1.jpg\rF004/T1/2.jpg\r')  # CR-only line ends
  with pytest.raises(au_lists.ListFormatError,
                     match=r'p\.txt:1: a carriage return \(U\+000D\) at column 14; .*LF or CRLF'):
    au_lists.read_path_list(p)
  open(p, 'wb').write('a.jpg\n\ufeffb.jpg\n'.encode())
  with pytest.raises(au_lists.ListFormatError,
                     match=r'p\.txt:2: a byte-order mark \(U\+FEFF\) at column 1; .*at the start'):
    au_lists.read_path_list(p)
  open(p, 'wb').write(b'a.jpg\nb\x00.jpg\n')
  with pytest.raises(au_lists.ListFormatError, match=r'p\.txt:2: a NUL byte \(U\+0000\) at column 2'):
    au_lists.read_path_list(p)
  open(p, 'wb').write(b'\n \n')
  with pytest.raises(au_lists.ListFormatError, match=r'p\.txt:1: empty file'):
    au_lists.read_path_list(p)


def test_path_list_whole_line_is_the_path_and_duplicates_name_both_lines(tmp_path):
  p = _write(tmp_path / 'p.txt', '  F001/T1/a b.jpg\t\n.\\F001\\T1\\c.jpg\nF001//T1/./d.jpg\n')
  assert au_lists.read_path_list(p) == ['F001/T1/a b.jpg', 'F001/T1/c.jpg', 'F001/T1/d.jpg']
  p = _write(tmp_path / 'd.txt', 'a/1.jpg\na/2.jpg\n./a//1.jpg\n')
  with pytest.raises(au_lists.ListFormatError,
                     match=r'd\.txt:3: image a/1\.jpg is listed twice \(first at .*d\.txt:1\)'):
    au_lists.read_path_list(p)
  for bad, match in (('/abs.jpg', 'is absolute'), ('C:/x.jpg', 'is absolute'),
                     ('a/../../x.jpg', 'has a ".." component'), ('./', 'names no file')):
    p = _write(tmp_path / 'b.txt', f'ok.jpg\n{bad}\n')
    with pytest.raises(au_lists.ListFormatError, match=rf'b\.txt:2: image path .*{match}'):
      au_lists.read_path_list(p)


@pytest.mark.parametrize('text,match', [
    ('0 1\n1e309 0\n', r'l\.txt:2: \'1e309\' is out of range'),
    ('0 1\n0 nan\n', r'l\.txt:2: expected numbers .* found \'nan\''),
    ('0 1\n0,,1\n', r'l\.txt:2: empty field'),
    ('0 1\n1.0000001 0\n', r'l\.txt:2: column 1 holds 1; expected 0, 1 or an unknown code'),
    ('0 1\n\uff11 0\n', r'l\.txt:2: expected numbers .* found \'\uff11\''),
])
def test_label_rows_numbers_are_strict(tmp_path, text, match):
  p = _write(tmp_path / 'l.txt', text)
  with pytest.raises(au_lists.ListFormatError, match=match):
    au_lists.read_label_rows(p, 2)


def _entry(path, codes, src):
  raw = np.asarray(codes, np.float32)
  unknown = raw == 9
  return au_lists.ListEntry(path=path, au=np.where(unknown, 0, raw), au_mask=(~unknown).astype(
      np.float32), landmarks=None, source=f'{src}_paths.txt:1', label_source=f'{src}_labels.txt:1')


def test_merge_megraphau_folds_uses_every_entry_and_rejects_contradictions():
  a, b, c = 'S1/a.jpg', 'S2/b.jpg', 'S3/c.jpg'
  folds = {  # part 1 = {a}, part 2 = {b}, part 3 = {c}; fold k tests on part {1: 3, 2: 2, 3: 1}[k]
      1: {'test': [_entry(c, [1, 0], 't1')], 'train': [_entry(a, [0, 1], 'r1'),
                                                        _entry(b, [9, 1], 'r1')]},
      2: {'test': [_entry(b, [9, 1], 't2')], 'train': [_entry(a, [0, 1], 'r2'),
                                                        _entry(c, [1, 0], 'r2')]},
      3: {'test': [_entry(a, [0, 1], 't3')], 'train': [_entry(b, [9, 1], 'r3'),
                                                        _entry(c, [1, 0], 'r3')]},
  }
  parts = {1: 3, 2: 2, 3: 1}
  train_files = {k: f'r{k}_paths.txt' for k in parts}
  images = au_lists.merge_megraphau_folds(folds)
  au_lists.check_megraphau_membership(images, parts, train_files)
  assert {p: img.test_fold for p, img in images.items()} == {a: 3, b: 2, c: 1}
  assert images[a].entry.source == 't3_paths.txt:1' and sorted(images[a].train) == [1, 2]
  bad = {k: dict(v) for k, v in folds.items()}
  bad[2] = {'test': folds[2]['test'], 'train': [_entry(a, [1, 1], 'r2'), folds[2]['train'][1]]}
  with pytest.raises(au_lists.ListFormatError,
                     match=r'r2_labels\.txt:1: labels of image S1/a\.jpg are \[1 1\] but '
                     r'r1_labels\.txt:1 gives \[0 1\]'):
    au_lists.merge_megraphau_folds(bad)
  bad[2] = {'test': folds[2]['test'], 'train': folds[2]['train'][1:]}  # a missing from fold 2
  with pytest.raises(au_lists.ListFormatError,
                     match=r"t3_paths\.txt:1: image S1/a\.jpg of fold 3's test list \(part 1\) is "
                     r"missing from fold 2's training list r2_paths\.txt"):
    au_lists.check_megraphau_membership(au_lists.merge_megraphau_folds(bad), parts, train_files)
  bad[2] = {'test': folds[2]['test'], 'train': folds[2]['train'] + [_entry('S4/d.jpg', [1, 1],
                                                                           'r2')]}
  with pytest.raises(au_lists.ListFormatError,
                     match=r'r2_paths\.txt:1: image S4/d\.jpg is in the training list of fold\(s\) '
                     r'\[2\] but in no test list'):
    au_lists.check_megraphau_membership(au_lists.merge_megraphau_folds(bad), parts, train_files)
  bad[2] = {'test': folds[2]['test'] + [_entry(c, [1, 0], 't2')], 'train': folds[2]['train']}
  with pytest.raises(au_lists.ListFormatError, match=r'S3/c\.jpg is in the test list of fold 2'):
    au_lists.merge_megraphau_folds(bad)


def test_jaanet_biocular_must_be_positive_and_lengths_name_the_short_file(tmp_path):
  d = tmp_path / 'list'
  line = ' '.join(['1'] * 98)
  _write(d / 'X_path.txt', 'a.jpg\nb.jpg\n')
  _write(d / 'X_land.txt', f'{line}\n{line}\n')
  _write(d / 'X_biocular.txt', '30\n-2\n')
  _write(d / 'X_AUoccur.txt', '0 1\n1 0\n')
  with pytest.raises(au_lists.ListFormatError, match=r'X_biocular\.txt:2: inter-ocular distance -2'):
    au_lists.read_jaanet_set(str(d), 'X', 2)
  _write(d / 'X_biocular.txt', '30\n')
  with pytest.raises(au_lists.ListFormatError, match=r'X_biocular\.txt:2: list files of one set '
                     r'differ in length'):
    au_lists.read_jaanet_set(str(d), 'X', 2)


def test_numbered_files_two_files_for_one_frame(tmp_path):
  for n in ('0011.jpg', '11.png', '\u00b2.jpg', '12.jpg'):
    _write(tmp_path / 'd' / n, '')
  with pytest.raises(base.AUDataError, match=r'11\.png: frame 11 has a second file \(first '
                     r'.*0011\.jpg\)'):
    base.numbered_files(str(tmp_path / 'd'))
  os.remove(tmp_path / 'd' / '11.png')
  assert sorted(base.numbered_files(str(tmp_path / 'd'))) == [11, 12]  # '\u00b2' is no frame


# ------------------------------------------------------------------ text_files: the one reader


@pytest.mark.parametrize('data, line, detail, au_detail', [
    (b'a\r\nb\nc', None, None, None),  # LF and CRLF mixed, no final line end
    (b'\xef\xbb\xbf a \t\n\tb\nc\n\n \n', None, None, None),  # BOM, spaces, blank lines at the end
    (b'a\nb\r', 2, r'a carriage return \(U\+000D\) at column 2', None),  # a CR ends no line
    (b'a\r\r\nb\n', 1, r'a carriage return \(U\+000D\) at column 2', None),
    ('a\nb\u2028c\n'.encode(), 2, r'a line separator \(U\+2028\) at column 2', None),
    (b'a\n\xc2\x85b\n', 2, r'a control character \(U\+0085\) at column 1', None),
    (b'\xef\xbb\xbf\xef\xbb\xbfa\n', 1, r'a byte-order mark \(U\+FEFF\) at column 1', None),
    (b'a\n\nb\n', 2, r'blank line inside the file; expected x \(blank lines', None),
    (b' \n\t\n', 1, r'empty file; expected x\.$', None),
    (b'a\ncaf\xc3\xa9\xff\n', 2, r'byte 0xff at column 5 is not valid UTF-8 \(invalid start byte; '
     r'byte offset 7\); expected UTF-8 text\.$', r'byte 0xff at offset 7 is not UTF-8 \(invalid '
     r'start byte; column 5\); expected UTF-8 text\.$'),
    ('a\n'.encode('utf-16'), 1, r'byte 0xff at column 1 .*UTF-16 LE byte-order mark',
     r'byte 0xff at offset 0 .*UTF-16 LE byte-order mark'),
])
def test_text_files_rules_hold_for_both_families(tmp_path, data, line, detail, au_detail):
  """au_lists and expression_builder_base read through text_files: same lines, same faults."""
  p = tmp_path / 'f.txt'
  p.write_bytes(data)
  if line is None:
    want = [(1, 'a'), (2, 'b'), (3, 'c')]
    assert au_lists.read_lines(str(p), 'x') == want
    assert expression_builder_base.read_text_lines(p, 'x') == want
    return
  with pytest.raises(au_lists.ListFormatError,
                     match=rf'^{re.escape(str(p))}:{line}: {au_detail or detail}'):
    au_lists.read_lines(str(p), 'x')
  with pytest.raises(expression_builder_base.AnnotationError,
                     match=rf'^{re.escape(str(p))}, line {line}: {detail}') as err:
    expression_builder_base.read_text_lines(p, 'x')
  assert err.value.line == line


def test_text_files_blank_rules_csv_and_missing_files(tmp_path):
  p = tmp_path / 'f.csv'
  p.write_bytes(b'\n h,1 \n\n,, \n"q,r", 2\n \n\n')
  assert text_files.read_csv_rows(p, 'x', blank='skip') == [(2, ['h', '1']), (5, ['q,r', ' 2'])]
  with pytest.raises(text_files.TextFileError, match=r'f\.csv:1: empty row inside the file; '):
    text_files.read_csv_rows(p, 'x')
  assert text_files.read_lines(p, 'x', blank='skip') == [(2, 'h,1'), (4, ',,'), (5, '"q,r", 2')]
  with pytest.raises(text_files.TextFileError, match=r'f\.csv:1: blank line inside the file; '):
    text_files.read_lines(p, 'x')
  p.write_bytes(b'a,"b\nc"\n')  # a quoted field may not span lines
  with pytest.raises(text_files.TextFileError, match=r'f\.csv:1: not a valid csv row \(unexpected '
                     r'end of data; a quoted field may not span lines\); expected x\.'):
    text_files.read_csv_rows(p, 'x')
  with pytest.raises(ValueError, match=r'none\.txt does not exist; expected x\.$') as err:
    expression_builder_base.read_text_lines(tmp_path / 'none.txt', 'x')
  assert type(err.value) is text_files.TextFileError and err.value.line is None
  with pytest.raises(au_lists.ListFormatError, match=r'is not a file; expected x\.$'):
    au_lists.read_csv_rows(str(tmp_path), 'x')
  with pytest.raises(ValueError, match="blank must be one of"):
    text_files.read_lines(p, 'x', blank='keep')

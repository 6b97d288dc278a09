"""Label-node word embeddings Z (Emotion-GCN Sec. III-B.1, the GCN input Z in R^{9 x d}).

One interface, ``load_embeddings(source, label_names) -> (N, D) float32``, for three sources:

* ``'default'``: the array shipped with faujax, ``faujax/embeddings/default_minilm.npz``: the 9
  Emotion-GCN node phrases (Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Valence, Arousal)
  embedded with the openly licensed all-MiniLM-L6-v2 sentence model (384-d, unit norm), made by
  ``python -m faujax.embeddings.make_default``. Rows are matched to ``label_names`` by name
  (case-insensitive), so any order / subset of the 9 works.
* ``'onehot'``: the identity ``(N, N)`` (ablation: no semantic prior between the nodes).
* a path to a GloVe text file (``glove.*.txt``, the paper's 300-d Wikipedia vectors): one word
  and its floats per line, space separated. A label of several words (``'valence arousal'``,
  ``'happily_surprised'``; split on spaces, ``_`` and ``-``) gets the mean of its word vectors,
  looked up lower-cased. Raw vectors, not normalised (as ML-GCN). A word2vec-style header line
  (``<count> <dim>``) is skipped. Only lines of the needed words are parsed and reading stops as
  soon as all are found, so the 1 GB files load in seconds.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

SOURCES = ('default', 'onehot')  # anything else is a GloVe file path
DEFAULT_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'embeddings', 'default_minilm.npz')
_WORD_SPLIT = re.compile(r'[\s_\-]+')


class EmbeddingError(ValueError):
  """A label-embedding source cannot give vectors for the requested labels."""


def label_words(label: str) -> list[str]:
  """Lower-cased words of a label name (split on spaces, '_' and '-')."""
  words = [w for w in _WORD_SPLIT.split(label.strip().lower()) if w]
  if not words:
    raise EmbeddingError(f'label_names contains an empty label {label!r}.')
  return words


def _check_names(label_names: Sequence[str]) -> list[str]:
  if isinstance(label_names, str) or not len(label_names):
    raise EmbeddingError(f'label_names must be a non-empty sequence of names; got {label_names!r}.')
  names = [str(n) for n in label_names]
  lowered = [n.lower() for n in names]
  if len(set(lowered)) != len(lowered):
    raise EmbeddingError(f'label_names must be distinct (case-insensitive); got {names}.')
  return names


def load_default(label_names: Sequence[str], path: str = DEFAULT_FILE) -> np.ndarray:
  """Rows of the shipped MiniLM array for ``label_names`` (matched case-insensitively).

  Returns:
    ``(N, 384)`` float32.
  """
  names = _check_names(label_names)
  if not os.path.exists(path):
    raise EmbeddingError(f'The default label embeddings {path} are missing; rebuild them with '
                         '`python -m faujax.embeddings.make_default`.')
  with np.load(path, allow_pickle=False) as data:
    table = np.asarray(data['embeddings'], np.float32)
    stored = [str(n).lower() for n in data['names']]
  index = {n: i for i, n in enumerate(stored)}
  missing = [n for n in names if n.lower() not in index]
  if missing:
    raise EmbeddingError(f'The default label embeddings {path} have no row for {missing}; they '
                         f'hold {stored}. Use a GloVe file or "onehot" for other labels.')
  return table[[index[n.lower()] for n in names]]


def load_glove(path: str, label_names: Sequence[str]) -> np.ndarray:
  """Mean GloVe vector of each label's words, from a ``glove.*.txt`` text file.

  Args:
    path: the text file (``word v_1 ... v_D`` per line).
    label_names: N labels.

  Returns:
    ``(N, D)`` float32.

  Raises:
    EmbeddingError: the file is missing or malformed (naming the file and line), or some word of
      a label is not in it (naming the file, the word and its label).
  """
  names = _check_names(label_names)
  if not os.path.isfile(path):
    raise EmbeddingError(f'config.model.embeddings: GloVe file {path!r} does not exist; expected '
                         f"a glove.*.txt text file, 'default' or 'onehot'.")
  words_of = {n: label_words(n) for n in names}
  needed = {w for ws in words_of.values() for w in ws}
  vectors: dict[str, np.ndarray] = {}
  dim = None
  with open(path, encoding='utf-8', errors='replace') as f:
    for lineno, line in enumerate(f, start=1):
      parts = line.rstrip('\n').rstrip().split(' ')
      if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
        continue  # word2vec header "<count> <dim>"
      if len(parts) < 2 or not parts[0]:
        if not line.strip():
          continue
        raise EmbeddingError(f'{path}, line {lineno}: expected "word v_1 ... v_D"; got '
                             f'{line[:60]!r}.')
      if dim is None:
        dim = len(parts) - 1
      word = parts[0]
      if word not in needed or word in vectors:
        continue
      if len(parts) - 1 != dim:
        raise EmbeddingError(f'{path}, line {lineno}: word {word!r} has {len(parts) - 1} values; '
                             f'the file\'s first vector has {dim}.')
      try:
        vectors[word] = np.asarray([float(v) for v in parts[1:]], np.float32)
      except ValueError as e:
        raise EmbeddingError(f'{path}, line {lineno}: non-numeric value for word {word!r} '
                             f'({e}).') from None
      if len(vectors) == len(needed):
        break
  if dim is None:
    raise EmbeddingError(f'{path}: the GloVe file holds no vectors.')
  for name in names:
    for w in words_of[name]:
      if w not in vectors:
        raise EmbeddingError(f'{path}: the word {w!r} (of label {name!r}) is not in the GloVe '
                             'file.')
  return np.stack([np.mean([vectors[w] for w in words_of[n]], axis=0) for n in names]
                  ).astype(np.float32)


def load_embeddings(source: str, label_names: Sequence[str]) -> np.ndarray:
  """The ``(N, D)`` float32 node embeddings Z of ``label_names`` from ``source``.

  Args:
    source: 'default' (shipped MiniLM, D = 384), 'onehot' (D = N) or a GloVe text file path.
    label_names: the N node names, e.g. the 7 expressions + ('valence', 'arousal').
  """
  if not isinstance(source, str) or not source:
    raise EmbeddingError(f"config.model.embeddings must be 'default', 'onehot' or a GloVe file "
                         f'path; got {source!r}.')
  names = _check_names(label_names)
  if source == 'default':
    out = load_default(names)
  elif source == 'onehot':
    out = np.eye(len(names), dtype=np.float32)
  else:
    out = load_glove(os.path.expanduser(source), names)
  if not np.all(np.isfinite(out)):
    raise EmbeddingError(f'Label embeddings from {source!r} contain non-finite values.')
  return out

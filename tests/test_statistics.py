"""Tests of faujax.statistics against scipy, scikit-learn and plain loop references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.utils import class_weight

from faujax import statistics

# 5 examples x 3 labels. Positives N = [3, 3, 2]; pairs: (0,1) x2, (0,2) x2, (1,2) x1.
LABELS = np.array([
    [1, 1, 0],
    [1, 0, 1],
    [1, 1, 1],
    [0, 1, 0],
    [0, 0, 0],
])
# P[i, j] = P(j | i) = M_ij / N_i.
P_HAND = np.array([
    [1, 2 / 3, 2 / 3],
    [2 / 3, 1, 1 / 3],
    [1, 1 / 2, 1],
])


def _random_masked(seed, n=40, c=5):
  """Random 0/1 labels with unknown entries coded 9, its mask, and an all-unknown column 3."""
  rng = np.random.default_rng(seed)
  labels = (rng.random((n, c)) < 0.35).astype(np.int64)
  mask = rng.random((n, c)) < 0.75
  mask[:, 3] = False
  return np.where(mask, labels, 9), mask


# ----------------------------------------------------------------------------- loop references


def _rates_loop(labels, mask):
  n, c = labels.shape
  out = []
  for i in range(c):
    known = [labels[k, i] for k in range(n) if mask[k, i]]
    out.append(sum(v == 1 for v in known) / len(known) if known else 0.0)
  return np.array(out)


def _cooc_loop(labels, mask):
  n, c = labels.shape
  m = np.zeros((c, c), np.int64)
  for i in range(c):
    for j in range(c):
      m[i, j] = sum(1 for k in range(n)
                    if mask[k, i] and mask[k, j] and labels[k, i] == 1 and labels[k, j] == 1)
  return m


def _cond_loop(labels, mask, undefined):
  n, c = labels.shape
  p = np.full((c, c), undefined, np.float64)
  for i in range(c):
    for j in range(c):
      both = [k for k in range(n) if mask[k, i] and mask[k, j] and labels[k, i] == 1]
      if both:
        p[i, j] = sum(labels[k, j] == 1 for k in both) / len(both)
  return p


# ----------------------------------------------------------------------------- rates and counts


def test_occurrence_rates_match_loop_with_unknowns():
  for seed in range(3):
    labels, mask = _random_masked(seed)
    got = statistics.occurrence_rates(labels, mask)
    assert got.dtype == np.float64 and got.shape == (5,)
    np.testing.assert_allclose(got, _rates_loop(labels, mask), atol=1e-15)
    assert got[3] == 0.0  # all-unknown column: no known value -> 0.0
    pos, known = statistics.occurrence_counts(labels, mask)
    assert pos.dtype == np.int64 and known.dtype == np.int64
    np.testing.assert_array_equal(known, mask.sum(0))
    np.testing.assert_array_equal(pos, ((labels == 1) & mask).sum(0))
  np.testing.assert_allclose(statistics.occurrence_rates(LABELS), [3 / 5, 3 / 5, 2 / 5])


def test_occurrence_rates_ignore_unknown_values_of_any_kind():
  coded = np.array([[1, 9], [0, 1], [1, 1], [9, 0]])  # 9 = not coded (BP4D)
  mask = coded != 9
  np.testing.assert_allclose(statistics.occurrence_rates(coded, mask), [2 / 3, 2 / 3])
  as_nan = np.where(mask, coded, np.nan)
  np.testing.assert_allclose(statistics.occurrence_rates(as_nan, mask), [2 / 3, 2 / 3])
  # The losses' float layout (unknown 9 under mask 0).
  labels = np.array([[1, 0], [1, 1], [0, 9]], np.float32)
  mask2 = np.array([[1, 1], [1, 1], [1, 0]], np.float32)
  np.testing.assert_allclose(statistics.occurrence_rates(labels, mask2), [2 / 3, 1 / 2])


def test_occurrence_rates_edge_cases_and_errors():
  np.testing.assert_array_equal(statistics.occurrence_rates(np.zeros((0, 3))), [0.0, 0.0, 0.0])
  np.testing.assert_array_equal(statistics.occurrence_rates(np.zeros((4, 2))), [0.0, 0.0])
  with pytest.raises(ValueError, match='0/1'):
    statistics.occurrence_rates(np.array([[1, 9], [0, 1]]))
  with pytest.raises(ValueError, match='mask'):
    statistics.occurrence_rates(LABELS, np.ones((5, 2)))
  with pytest.raises(ValueError, match='labels'):
    statistics.occurrence_rates(np.array([0, 1, 1]))


def test_class_counts_match_bincount_and_loop():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 7, 200)
  np.testing.assert_array_equal(statistics.class_counts(labels, 7),
                                np.bincount(labels, minlength=7))
  mask = rng.random(200) < 0.6
  coded = np.where(mask, labels, -1)  # Aff-Wild2 style -1 = unlabelled
  want = [sum(1 for k in range(200) if mask[k] and labels[k] == c) for c in range(8)]
  got = statistics.class_counts(coded, 8, mask)  # class 7 never occurs
  assert got.dtype == np.int64
  np.testing.assert_array_equal(got, want)
  assert got[7] == 0
  np.testing.assert_array_equal(statistics.class_counts(labels.astype(np.float32), 7),
                                np.bincount(labels, minlength=7))
  np.testing.assert_array_equal(statistics.class_counts(np.zeros(0, np.int64), 3), [0, 0, 0])


def test_class_counts_errors():
  with pytest.raises(ValueError, match=r'labels.*\[0, 7\)'):
    statistics.class_counts(np.array([0, 7]), 7)
  with pytest.raises(ValueError, match='labels'):
    statistics.class_counts(np.array([-1, 2]), 7)
  with pytest.raises(ValueError, match='labels'):
    statistics.class_counts(np.array([0.5, 2.0]), 7)
  with pytest.raises(ValueError, match='num_classes'):
    statistics.class_counts(np.array([0, 1]), 0)
  with pytest.raises(ValueError, match='mask'):
    statistics.class_counts(np.array([0, 1]), 3, np.ones(3))
  with pytest.raises(ValueError, match='labels'):
    statistics.class_counts(np.eye(3, dtype=int), 3)


# ----------------------------------------------------------------------------- weights


def test_inverse_rate_weights_formula():
  r = np.array([0.1, 0.3, 0.05, 0.6])
  w = statistics.inverse_rate_weights(r)
  expected = [(1 / r[i]) * len(r) / sum(1 / r[j] for j in range(len(r))) for i in range(len(r))]
  assert w.dtype == np.float64
  np.testing.assert_allclose(w, expected, rtol=1e-12)
  np.testing.assert_allclose(w.sum(), len(r), rtol=1e-12)
  np.testing.assert_allclose(statistics.inverse_rate_weights(r, normalize='max'), r.min() / r,
                             rtol=1e-12)


def test_inverse_rate_weights_agree_with_sklearn_balanced():
  # sklearn's 'balanced' weights are n / (K * count_k): proportional to 1 / frequency.
  rng = np.random.default_rng(4)
  y = rng.choice(5, size=500, p=[0.5, 0.2, 0.15, 0.1, 0.05])
  sk = class_weight.compute_class_weight('balanced', classes=np.arange(5), y=y)
  freq = statistics.class_counts(y, 5) / y.size
  np.testing.assert_allclose(statistics.inverse_rate_weights(freq), sk * 5 / sk.sum(),
                             rtol=1e-12)
  np.testing.assert_allclose(statistics.inverse_rate_weights(freq, normalize='max'),
                             sk / sk.max(), rtol=1e-12)


def test_inverse_rate_weights_zero_rate_rule():
  # A never-positive label weighs 0; the others keep their 1/r proportions and sum to N.
  w = statistics.inverse_rate_weights(np.array([0.0, 0.5, 0.2]))
  np.testing.assert_allclose(w, [0.0, 3 * 2 / 7, 3 * 5 / 7], rtol=1e-12)
  assert w.sum() == pytest.approx(3.0)
  wm = statistics.inverse_rate_weights(np.array([0.0, 0.5, 0.2]), normalize='max')
  np.testing.assert_allclose(wm, [0.0, 0.4, 1.0], rtol=1e-12)
  # The same rule through jax.numpy, under jit.
  wj = jax.jit(lambda r: statistics.inverse_rate_weights(r, xp=jnp))(jnp.array([0.0, 0.5, 0.2]))
  np.testing.assert_allclose(wj, w, rtol=1e-6)
  wz = jax.jit(lambda r: statistics.inverse_rate_weights(r, xp=jnp))(jnp.zeros(3))
  np.testing.assert_array_equal(wz, 0.0)


def test_inverse_rate_weights_errors():
  for bad in ([0.2, 1.5], [0.2, -0.1], [0.2, np.nan], [0.0, 0.0]):
    with pytest.raises(ValueError, match='rates'):
      statistics.inverse_rate_weights(np.array(bad))
  with pytest.raises(ValueError, match='rates'):
    statistics.inverse_rate_weights(np.ones((2, 2)) * 0.1)
  with pytest.raises(ValueError, match='rates'):
    statistics.inverse_rate_weights(np.zeros(0))
  with pytest.raises(ValueError, match='normalize'):
    statistics.inverse_rate_weights(np.array([0.5]), normalize='mean')


# ----------------------------------------------------------------------------- pairs


def test_cooccurrence_counts_match_loop():
  m = statistics.cooccurrence_counts(LABELS)
  assert m.dtype == np.int64
  np.testing.assert_array_equal(m, [[3, 2, 2], [2, 3, 1], [2, 1, 2]])
  for seed in range(3):
    labels, mask = _random_masked(seed)
    got = statistics.cooccurrence_counts(labels, mask)
    np.testing.assert_array_equal(got, _cooc_loop(labels, mask))
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(got[3], 0)  # all-unknown column


def test_conditional_probabilities_by_hand_and_loop():
  np.testing.assert_allclose(statistics.conditional_probabilities(LABELS), P_HAND)
  coded = np.array([[1, 9], [0, 1], [1, 1], [9, 0]])
  # Pairs where both are known: rows 1 and 2. P(1|0) = 1/1; P(0|1) = 1/2.
  np.testing.assert_allclose(statistics.conditional_probabilities(coded, coded != 9),
                             [[1, 1], [0.5, 1]])
  for seed in range(3):
    labels, mask = _random_masked(seed)
    for undefined in (0.0, 0.5, np.nan):
      got = statistics.conditional_probabilities(labels, mask, undefined=undefined)
      np.testing.assert_allclose(got, _cond_loop(labels, mask, undefined), atol=1e-15)
    got = statistics.conditional_probabilities(labels, mask)
    np.testing.assert_array_equal(got[3], 0.0)     # never-known label: undefined -> 0
    np.testing.assert_array_equal(got[:, 3], 0.0)  # and nothing is conditioned into it
    assert np.all(np.isfinite(got))


# ----------------------------------------------------------------------------- ranks


def test_average_ranks_match_scipy_rankdata():
  rng = np.random.default_rng(0)
  for x in (rng.integers(0, 4, 50), rng.normal(size=30).round(1), rng.normal(size=17),
            np.ones(6), np.array([3.0]), np.array([2, 1, 2, 1, 2])):
    got = statistics.average_ranks(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, stats.rankdata(x, method='average'), atol=1e-12)
  assert statistics.average_ranks(np.zeros(0)).shape == (0,)
  np.testing.assert_array_equal(statistics.average_ranks([10, 30, 20, 30]), [1, 3.5, 2, 3.5])


def test_average_ranks_errors():
  with pytest.raises(ValueError, match='NaN'):
    statistics.average_ranks(np.array([1.0, np.nan]))
  with pytest.raises(ValueError, match='1-D'):
    statistics.average_ranks(np.ones((2, 2)))


def test_spearman_matches_scipy_with_ties():
  rng = np.random.default_rng(0)
  for _ in range(5):
    x = rng.integers(0, 3, 40)
    y = rng.normal(size=40).round(1)
    assert statistics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
  x = rng.normal(size=25)
  assert statistics.spearman(x, 3 * x + 1) == pytest.approx(1.0)
  assert statistics.spearman(x, -x) == pytest.approx(-1.0)
  # Constant sample: undefined (scipy: NaN) -> 0.0.
  assert statistics.spearman(np.ones(5), np.arange(5)) == 0.0
  with pytest.raises(ValueError, match='equal length'):
    statistics.spearman(np.arange(3), np.arange(4))
  with pytest.raises(ValueError, match='equal length'):
    statistics.spearman(np.arange(1), np.arange(1))

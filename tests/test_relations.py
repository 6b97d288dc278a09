"""Tests of faujax.relations on small label matrices with hand-computed results.

The label statistics the graphs start from (rates, co-occurrence, conditional probabilities,
Spearman) are tested in test_statistics.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from faujax import relations

# 6 examples x 4 labels. Counts N = [3, 3, 1, 1]; pairs: (0,1) x2, (0,2) x1.
LABELS = np.array([
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [1, 0, 1, 0],
    [0, 1, 0, 0],
    [0, 0, 0, 1],
    [0, 0, 0, 0],
])


def test_class_weights():
  # Rates [1/2, 1/2, 1/6, 1/6]; w_i = (1/r_i) C / sum_j 1/r_j = [2, 2, 6, 6] * 4 / 16.
  np.testing.assert_allclose(relations.class_weights(LABELS), [0.5, 0.5, 1.5, 1.5])
  # A never-positive label weighs 0 (statistics.inverse_rate_weights' rule), the rest sum to C.
  np.testing.assert_allclose(relations.class_weights(np.array([[1, 0], [0, 0]])), [2.0, 0.0])
  coded = np.array([[1, 9], [0, 1], [1, 1], [9, 0]])  # 9 = not coded (BP4D)
  np.testing.assert_allclose(relations.class_weights(coded, coded != 9), [1.0, 1.0])
  with pytest.raises(ValueError, match='rates'):
    relations.class_weights(np.zeros((3, 2)))
  with pytest.raises(ValueError, match='0/1'):
    relations.class_weights(coded)


def test_relation_matrices_use_the_masked_conditional():
  coded = np.array([[1, 9], [0, 1], [1, 1], [9, 0]])
  mask = coded != 9
  # P = [[1, 1], [0.5, 1]] over the rows where both are known; M + M^T = 1.5 off the diagonal.
  np.testing.assert_array_equal(relations.au_gcn_relation_matrix(coded, 1.5, mask), np.ones((2, 2)))
  np.testing.assert_array_equal(relations.au_gcn_relation_matrix(coded, 1.6, mask), np.eye(2))
  np.testing.assert_allclose(relations.mlgcn_adjacency(coded, 0.75, 0.25, mask=mask),
                             [[0.75, 0.25], [0.0, 0.75]])


def test_au_gcn_relation_matrix_eq4_5():
  # M_sym: (0,1) = 4/3, (0,2) = 1/3 + 1 = 4/3, the rest 0 off the diagonal; diagonal 2.
  want = np.eye(4, dtype=int)
  want[0, 1] = want[1, 0] = want[0, 2] = want[2, 0] = 1
  np.testing.assert_array_equal(relations.au_gcn_relation_matrix(LABELS, 1.0), want)
  np.testing.assert_array_equal(relations.au_gcn_relation_matrix(LABELS, 1.5), np.eye(4))


def test_roi_graph_small():
  relation = relations.au_gcn_relation_matrix(LABELS, 1.0)  # AU1-AU2, AU1-AU4
  rois = [(1, 'left'), (1, 'right'), (2, 'left'), (2, 'right'), ((4, 6), None), (None, None)]
  want = np.array([
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 0, 1],
      [1, 1, 1, 1, 0, 1],
      [1, 1, 0, 0, 1, 1],
      [1, 1, 1, 1, 1, 1],
  ])
  np.testing.assert_array_equal(relations.roi_graph(rois, relation, (1, 2, 4, 6)), want)
  with pytest.raises(ValueError, match='AU9'):
    relations.roi_graph([(9, 'left')], relation, (1, 2, 4, 6))
  with pytest.raises(ValueError, match=r'rois\[0\]'):
    relations.roi_graph([('x', 'left')], relation, (1, 2, 4, 6))


# AU-GCN Table 1(a), BP4D M_bool (rows/cols AU 1 2 4 6 7 10 12 14 15 17 23 24).
BP4D_TABLE = np.array([
    [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0],
    [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0],
    [0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0],
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0],
    [0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1],
])
BP4D = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)


def test_bp4d_19_roi_graph():
  g = relations.roi_graph(relations.BP4D_ROIS_19, BP4D_TABLE, BP4D)
  assert g.shape == (19, 19)
  np.testing.assert_array_equal(g, g.T)
  np.testing.assert_array_equal(np.diag(g), 1)
  np.testing.assert_array_equal(g[18], 1)  # whole face to all
  # AU1 left (0): its pair (1), AU2 (2, 3), AU10 (10, 11), the face.
  assert set(np.flatnonzero(g[0])) == {0, 1, 2, 3, 10, 11, 18}
  # AU4 left (4): its pair and AU7 (8, 9); AU7 row of the table has no AU4 but the
  # AU4 row does, and relations are symmetrised.
  assert set(np.flatnonzero(g[4])) == {4, 5, 8, 9, 18}
  # AU23/24 up (16): pair (17); AU7, AU10, AU12/14/15, AU17 via AU23 or AU24; the face.
  assert set(np.flatnonzero(g[16])) == {8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}
  # AU6 right (7): AU6..AU17 groups (AU6-AU23/24 unrelated).
  assert set(np.flatnonzero(g[7])) == {6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18}


def test_mgrr_prior_eq1_2_by_hand():
  a = relations.mgrr_prior(LABELS)
  np.testing.assert_allclose(np.diag(a), 1.0)
  # (0,1): P(a0=1|a1=1)=2/3, P(a0=0|a1=0)=2/3 -> P=2/3, A=1/3.
  assert a[0, 1] == pytest.approx(1 / 3) and a[1, 0] == pytest.approx(1 / 3)
  # (0,2): 1 and 3/5 -> 0.8 -> 0.6; (2,0): 1/3 and 1 -> 2/3 -> 1/3.
  assert a[0, 2] == pytest.approx(0.6) and a[2, 0] == pytest.approx(1 / 3)
  # (0,3): 0 and 2/5 -> 0.2 -> 0.6; (3,0): 0 and 2/3 -> 1/3 -> 1/3.
  assert a[0, 3] == pytest.approx(0.6) and a[3, 0] == pytest.approx(1 / 3)
  # Loop reference for every entry.
  n, c = LABELS.shape
  for i in range(c):
    for j in range(c):
      on = [k for k in range(n) if LABELS[k, j] == 1]
      off = [k for k in range(n) if LABELS[k, j] == 0]
      p1 = sum(LABELS[k, i] == 1 for k in on) / len(on)
      p0 = sum(LABELS[k, i] == 0 for k in off) / len(off)
      assert a[i, j] == pytest.approx(abs(2 * ((p1 + p0) / 2 - 0.5)))


def test_mgrr_prior_undefined_conditional_is_uninformative():
  labels = np.array([[1, 0], [0, 0]])  # label 1 is never positive
  a = relations.mgrr_prior(labels)
  # P(a0=1|a1=1) undefined -> 0.5; P(a0=0|a1=0) = 1/2 -> P = 0.5 -> A = 0.
  assert a[0, 1] == pytest.approx(0.0)
  assert np.all(np.isfinite(a))


def _emotion_data():
  # One example per class; valence = "is happy", arousal = "is surprise".
  cats = np.arange(7)
  dims = np.stack([(cats == 1).astype(float), (cats == 3).astype(float)], axis=1)
  return cats, dims


def test_emotion_gcn_correlation_9_nodes():
  cats, dims = _emotion_data()
  a = relations.emotion_gcn_correlation(cats, dims)
  assert a.shape == (9, 9)
  want = np.eye(9)
  want[:7, 7] = want[7, :7] = 1 / 6   # phi of two disjoint 1/7 indicators = -1/6
  want[:7, 8] = want[8, :7] = 1 / 6
  want[1, 7] = want[7, 1] = 1.0
  want[3, 8] = want[8, 3] = 1.0
  np.testing.assert_allclose(a, want, atol=1e-12)
  # Same with one-hot input and with scipy as the correlation reference.
  rng = np.random.default_rng(1)
  c = rng.integers(0, 7, 60)
  d = rng.normal(size=(60, 2))
  a2 = relations.emotion_gcn_correlation(np.eye(7)[c], d)
  for i in range(7):
    for j in range(2):
      assert a2[i, 7 + j] == pytest.approx(abs(stats.spearmanr(c == i, d[:, j])[0]))
  assert a2[7, 8] == 0 and a2[0, 1] == 0


def test_emotion_gcn_adjacency_9_nodes_by_hand():
  cats, dims = _emotion_data()
  # tau = 0.1 keeps every Cat-Dim edge: Cat rows have 2 neighbours (p/2 each), V/A rows 7
  # (p/7 each); diagonal 1 - p; every row sums to 1 so D = I and the ML-GCN
  # normalisation is the transpose.
  raw = relations.emotion_gcn_adjacency(cats, dims, tau=0.1, p=0.7, normalize=False)
  want = np.diag(np.full(9, 0.3))
  want[:7, 7:] = 0.35
  want[7:, :7] = 0.1
  np.testing.assert_allclose(raw, want, atol=1e-12)
  np.testing.assert_allclose(relations.emotion_gcn_adjacency(cats, dims, tau=0.1, p=0.7),
                             want.T, atol=1e-12)
  # tau = 0.2 keeps happy-valence and surprise-arousal only; lonely rows keep 1 - p.
  final = relations.emotion_gcn_adjacency(cats, dims, tau=0.2, p=0.7)
  want = np.diag(np.full(9, 0.3))
  for i, j in [(1, 7), (7, 1), (3, 8), (8, 3)]:
    want[i, j] = 0.7
  d = 1 / np.sqrt(want.sum(1))  # rows without neighbours sum to 0.3
  np.testing.assert_allclose(final, d[:, None] * want.T * d[None, :], atol=1e-12)
  assert final[0, 0] == pytest.approx(1.0)


def test_emotion_gcn_keep_va_edge_is_the_public_code_matrix():
  # Public code: |Spearman| between all K + D label columns, expression-expression
  # off-diagonals zeroed; the valence-arousal entry stays. scipy gives the reference.
  rng = np.random.default_rng(2)
  c = rng.integers(0, 7, 80)
  va = rng.normal(size=(80, 2))
  va[:, 1] += 0.8 * va[:, 0]
  cols = np.concatenate([np.eye(7)[c], va], axis=1)
  public = np.abs(stats.spearmanr(cols).statistic)
  public[:7, :7] = np.eye(7)
  got = relations.emotion_gcn_correlation(c, va, keep_va_edge=True)
  np.testing.assert_allclose(got, public, atol=1e-12)
  paper = relations.emotion_gcn_correlation(c, va)
  assert paper[7, 8] == 0 and got[7, 8] > 0.3
  np.testing.assert_array_equal(np.delete(np.delete(got - paper, [7, 8], 0), [7, 8], 1), 0)


def test_emotion_gcn_adjacency_keep_va_edge_by_hand():
  cats, dims = _emotion_data()
  # |rho(V, A)| of two disjoint 1/7 indicators = 1/6 >= tau = 0.1: V and A become neighbours,
  # so their rows have 8 neighbours of p/8; the Cat rows are unchanged (2 of p/2).
  raw = relations.emotion_gcn_adjacency(cats, dims, tau=0.1, p=0.7, keep_va_edge=True,
                                        normalize=False)
  want = np.diag(np.full(9, 0.3))
  want[:7, 7:] = 0.35
  want[7:, :7] = 0.7 / 8
  want[7, 8] = want[8, 7] = 0.7 / 8
  np.testing.assert_allclose(raw, want, atol=1e-12)
  np.testing.assert_allclose(
      relations.emotion_gcn_adjacency(cats, dims, tau=0.1, p=0.7, keep_va_edge=True),
      want.T, atol=1e-12)  # rows sum to 1: the normalisation is the transpose
  # 1/6 < tau = 0.2: the edge is filtered and both conventions agree.
  np.testing.assert_allclose(
      relations.emotion_gcn_adjacency(cats, dims, tau=0.2, p=0.7, keep_va_edge=True),
      relations.emotion_gcn_adjacency(cats, dims, tau=0.2, p=0.7), atol=1e-12)


def test_emotion_gcn_expression_cooccurrence_variant():
  cats, dims = _emotion_data()
  # 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger.
  multi = np.zeros((5, 7), int)
  multi[0, [3, 1]] = 1
  multi[1, 3] = 1
  multi[2, [4, 2]] = 1
  multi[3, [5, 6]] = 1
  multi[4, 6] = 1
  a = relations.emotion_gcn_adjacency(cats, dims, tau=0.1, p=0.5, expression_labels=multi,
                                      normalize=False)
  # Happy: V, A and surprise (P(surprise | happy) = 1) -> 3 neighbours of p/3.
  np.testing.assert_allclose(a[1, [3, 7, 8]], 0.5 / 3)
  # Surprise: happy (1/2), V, A. Fear <-> sad, disgust <-> anger, neutral: V, A only.
  np.testing.assert_allclose(a[3, [1, 7, 8]], 0.5 / 3)
  np.testing.assert_allclose(a[4, [2, 7, 8]], 0.5 / 3)
  np.testing.assert_allclose(a[6, [5, 7, 8]], 0.5 / 3)
  np.testing.assert_allclose(a[0, [7, 8]], 0.25)
  np.testing.assert_allclose(np.diag(a), 0.5)
  assert a[1, 2] == 0 and a[0, 1] == 0


def test_mlgcn_adjacency_eq13_14_by_hand():
  a = relations.mlgcn_adjacency(LABELS, t=0.5, p=0.25)
  want = np.diag(np.full(4, 0.75))
  want[0, 1] = want[1, 0] = want[2, 0] = 0.25   # P > 0.5 off the diagonal
  np.testing.assert_allclose(a, want)
  code = relations.mlgcn_adjacency(LABELS, t=0.5, p=0.25, self_weight=1.0)
  np.testing.assert_allclose(np.diag(code), 1.0)
  normed = relations.mlgcn_adjacency(LABELS, t=0.5, p=0.25, normalize=True)
  np.testing.assert_allclose(normed, relations.mlgcn_normalize(want))
  # Row sums 1, 1, 1, 0.75: D^-1/2 A^T D^-1/2.
  assert normed[3, 3] == pytest.approx(1.0)
  assert normed[0, 2] == pytest.approx(0.25)


def test_svml_relations_eq3_4_by_hand():
  r = relations.svml_relations(LABELS, t1=0.2, t2=0.5)
  assert r.shape == (2, 4, 4)
  pos = np.zeros((4, 4))
  pos[0, 1] = pos[1, 0] = pos[2, 0] = 1
  neg = np.zeros((4, 4))
  for i, j in [(0, 3), (1, 2), (1, 3), (2, 1), (2, 3), (3, 0), (3, 1), (3, 2)]:
    neg[i, j] = 1
  np.testing.assert_array_equal(r[0], pos)
  np.testing.assert_array_equal(r[1], neg)  # (0, 2) = 1/3 lies between t1 and t2
  with pytest.raises(ValueError, match='t1 < t2'):
    relations.svml_relations(LABELS, t1=0.5, t2=0.2)

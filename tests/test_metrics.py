"""Tests of faujax.metrics against scikit-learn and slow loop references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from faujax import metrics

SHAPES = [(7, 3), (40, 5), (123, 12)]


def _ml_data(n, c, seed, no_pos_col=None, ties=False):
  rng = np.random.default_rng(seed)
  labels = (rng.random((n, c)) < 0.35).astype(np.int64)
  labels[0, 0], labels[1, 0] = 1, 0  # column 0 always has both classes
  scores = rng.random((n, c))
  if ties:
    scores = np.round(scores * 4) / 4
  scores = np.clip(scores + 0.25 * labels, 0, 1)
  if no_pos_col is not None:
    labels[:, no_pos_col] = 0
  return labels, scores


def _sk_auc_or_nan(y, s, **kw):
  """sklearn's AUC; older versions raise on a single class, newer ones warn and return NaN."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    try:
      return float(skm.roc_auc_score(y, s, **kw))
    except ValueError:
      return float('nan')


# ----------------------------------------------------------------------------- AU metrics


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('ties', [False, True])
def test_au_metrics_equal_sklearn(shape, ties):
  n, c = shape
  y, s = _ml_data(n, c, seed=n + c, no_pos_col=c - 1, ties=ties)
  names = [f'AU{i + 1}' for i in range(c)]
  out = metrics.au_metrics(s, y, au_names=names)
  f1s, aucs, accs = [], [], []
  for i, name in enumerate(names):
    pred = (s[:, i] >= 0.5).astype(int)
    f1 = skm.f1_score(y[:, i], pred, zero_division=0)
    acc = skm.accuracy_score(y[:, i], pred)
    assert out[f'f1/{name}'] == pytest.approx(f1, abs=1e-12)
    assert out[f'acc/{name}'] == pytest.approx(acc, abs=1e-12)
    f1s.append(f1)
    accs.append(acc)
    if 0 < y[:, i].sum() < n:
      auc = skm.roc_auc_score(y[:, i], s[:, i])
      assert out[f'auc/{name}'] == pytest.approx(auc, abs=1e-12)
      aucs.append(auc)
    else:
      assert np.isnan(_sk_auc_or_nan(y[:, i], s[:, i]))  # sklearn raises or warns + NaN
      assert np.isnan(out[f'auc/{name}'])
  assert out[f'f1/{names[-1]}'] == 0.0  # the AU with no positives
  assert out['f1_mean'] == pytest.approx(np.mean(f1s))
  assert out['acc_mean'] == pytest.approx(np.mean(accs))
  assert out['auc_mean'] == pytest.approx(np.mean(aucs))


def test_au_metrics_mask_excludes_entries_per_au():
  y, s = _ml_data(60, 4, seed=3)
  rng = np.random.default_rng(3)
  mask = rng.random(y.shape) < 0.6
  mask[:, 3] = False  # an AU never labelled
  out = metrics.au_metrics(s, y, mask, au_names=['a', 'b', 'c', 'd'])
  for i, name in enumerate('abc'):
    v = mask[:, i]
    assert out[f'f1/{name}'] == pytest.approx(skm.f1_score(y[v, i], s[v, i] >= 0.5, zero_division=0))
    assert out[f'auc/{name}'] == pytest.approx(skm.roc_auc_score(y[v, i], s[v, i]))
    assert out[f'acc/{name}'] == pytest.approx(skm.accuracy_score(y[v, i], s[v, i] >= 0.5))
  assert all(np.isnan(out[f'{m}/d']) for m in ('f1', 'auc', 'acc'))
  assert out['f1_mean'] == pytest.approx(np.mean([out[f'f1/{k}'] for k in 'abc']))
  # Garbage under the mask changes nothing.
  y2, s2 = y.copy(), s.copy()
  y2[~mask], s2[~mask] = 1 - y2[~mask], 1 - s2[~mask]
  out2 = metrics.au_metrics(s2, y2, mask, au_names=['a', 'b', 'c', 'd'])
  assert out2.keys() == out.keys()
  for k in out:
    assert out2[k] == pytest.approx(out[k], nan_ok=True)


def test_au_metrics_threshold():
  y = np.array([[1], [0], [1]])
  s = np.array([[0.35], [0.2], [0.45]])
  assert metrics.au_metrics(s, y)['f1/AU0'] == 0.0
  assert metrics.au_metrics(s, y, threshold=0.3)['f1/AU0'] == 1.0


def test_decision_rules_at_exactly_the_threshold():
  """A score of exactly 0.5: a positive AU decision (>=), a negative SVML-RGCN one (sec. 4.1:
  "true if the confidence scores are greater than 0.5")."""
  y = np.array([[1, 0], [0, 1]])
  s = np.array([[0.5, 0.2], [0.1, 0.5000001]])
  np.testing.assert_array_equal(metrics.decide(s, 0.5, '>'), [[False, False], [False, True]])
  np.testing.assert_array_equal(metrics.decide(s, 0.5, '>='), [[True, False], [False, True]])
  ml = metrics.multilabel_metrics(s, y)
  assert ml['ml/hamming_loss'] == pytest.approx(0.25)   # the 0.5 of example 0 is a miss
  assert ml['ml/micro_f1'] == pytest.approx(2 / 3)
  assert metrics.multilabel_metrics(s, y, rule='>=')['ml/hamming_loss'] == 0.0
  assert metrics.au_metrics(s[:, :1], y[:, :1])['f1/AU0'] == 1.0  # AUs keep >=
  acc = metrics.Accumulator()
  acc.add({metrics.ML_PROB: s, metrics.ML_LABEL: y})
  assert acc.compute()['ml/hamming_loss'] == pytest.approx(0.25)
  with pytest.raises(ValueError, match='decision rule'):
    metrics.decide(s, 0.5, '<')


def test_roc_auc_matches_sklearn_with_heavy_ties():
  rng = np.random.default_rng(11)
  for _ in range(20):
    y = rng.integers(0, 2, 30)
    y[:2] = [0, 1]
    s = rng.integers(0, 3, 30).astype(float)
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
  s[3] = np.nan  # a diverged model: undefined, not a number from an arbitrary NaN rank
  assert np.isnan(metrics.roc_auc(y, s))


# ----------------------------------------------------------------------------- expressions


@pytest.mark.parametrize('n,k', [(10, 7), (200, 7), (57, 8)])
def test_expression_metrics_equal_sklearn(n, k):
  rng = np.random.default_rng(n)
  labels = rng.integers(0, k - 1, n)  # class k-1 never occurs in the labels
  scores = rng.normal(size=(n, k))
  scores[np.arange(n), labels] += 1.0
  out = metrics.expression_metrics(scores, labels)
  pred = scores.argmax(1)
  acc = skm.accuracy_score(labels, pred)
  macro = skm.f1_score(labels, pred, labels=list(range(k)), average='macro', zero_division=0)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # sklearn warns about classes predicted but absent
    bal = skm.balanced_accuracy_score(labels, pred)
  assert out['accuracy'] == pytest.approx(acc)
  assert out['macro_f1'] == pytest.approx(macro)
  assert out['mean_class_accuracy'] == pytest.approx(bal)
  assert out['affwild2_score'] == pytest.approx(0.67 * macro + 0.33 * acc)
  cm = metrics.confusion_matrix(labels, pred, k)
  np.testing.assert_array_equal(cm, skm.confusion_matrix(labels, pred, labels=list(range(k))))
  per_recall = skm.recall_score(labels, pred, labels=list(range(k)), average=None,
                                zero_division=0)
  per_f1 = skm.f1_score(labels, pred, labels=list(range(k)), average=None, zero_division=0)
  for c in range(k):
    assert out[f'f1/class{c}'] == pytest.approx(per_f1[c])
    if np.any(labels == c):
      assert out[f'recall/class{c}'] == pytest.approx(per_recall[c])
    else:
      assert np.isnan(out[f'recall/class{c}'])
  assert np.isnan(out[f'recall/class{k - 1}'])


def test_expression_metrics_mask():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 7, 50)
  scores = rng.normal(size=(50, 7))
  mask = rng.random(50) < 0.5
  a = metrics.expression_metrics(scores, np.where(mask, labels, -1), mask)
  b = metrics.expression_metrics(scores[mask], labels[mask])
  assert a == pytest.approx(b, nan_ok=True)


def test_ccc_numpy():
  rng = np.random.default_rng(5)
  x = rng.normal(size=100)
  y = 0.5 * x + rng.normal(scale=0.5, size=100) + 0.2
  ref = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
  assert metrics.ccc(x, y) == pytest.approx(ref)
  assert metrics.ccc(x, x) == pytest.approx(1.0)
  xc = x - x.mean()
  assert metrics.ccc(xc, -xc) == pytest.approx(-1.0)
  out = metrics.va_metrics(np.stack([x, y], 1), np.stack([y, x], 1))
  assert out['ccc_valence'] == pytest.approx(ref) and out['ccc_arousal'] == pytest.approx(ref)
  assert out['ccc_mean'] == pytest.approx(ref)


def test_ccc_public_code_normalization():
  rng = np.random.default_rng(6)
  x = rng.normal(size=20)
  y = 0.5 * x + rng.normal(scale=0.5, size=20) + 0.2
  # The public code: covariance over n, variances over n - 1.
  ref = 2 * np.cov(x, y, bias=True)[0, 1] / (np.var(x, ddof=1) + np.var(y, ddof=1)
                                            + (x.mean() - y.mean()) ** 2)
  got = metrics.ccc(x, y, normalization='public_code')
  assert got == pytest.approx(ref, rel=1e-12)
  assert abs(got - metrics.ccc(x, y)) > 1e-3
  assert metrics.ccc(x, x, normalization='public_code') == pytest.approx(19 / 20)
  assert np.isnan(metrics.ccc(np.ones(1), np.ones(1), normalization='public_code'))
  assert metrics.ccc(np.ones(1), np.zeros(1), normalization='public_code') == 0.0
  out = metrics.va_metrics(np.stack([x, y], 1), np.stack([y, x], 1), normalization='public_code')
  assert out['ccc_valence'] == pytest.approx(ref) and out['ccc_mean'] == pytest.approx(ref)
  acc = metrics.Accumulator(ccc_normalization='public_code')
  acc.add({metrics.VA_PRED: np.stack([x, y], 1), metrics.VA_LABEL: np.stack([y, x], 1)})
  assert acc.compute()['ccc_arousal'] == pytest.approx(ref)
  with pytest.raises(ValueError, match='normalization'):
    metrics.ccc(x, y, normalization='torch')
  with pytest.raises(ValueError, match='ccc_normalization'):
    metrics.Accumulator(ccc_normalization='torch')


# ----------------------------------------------------------------------------- multi-label


def _one_error_loop(y, s):
  errs = []
  for i in range(y.shape[0]):
    top = int(np.argmax(s[i]))
    errs.append(0.0 if y[i, top] == 1 else 1.0)
  return np.mean(errs)


def _coverage_eq9_loop(y, s):
  vals = []
  for i in range(y.shape[0]):
    rel = [c for c in range(y.shape[1]) if y[i, c]]
    vals.append(max((sum(s[i, k] >= s[i, c] for k in range(y.shape[1])) for c in rel), default=0))
  return np.mean(vals)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('ties', [False, True])
def test_multilabel_metrics_equal_sklearn(shape, ties):
  n, c = shape
  y, s = _ml_data(n, c, seed=3 * n + c, ties=ties)
  y[2] = 0  # an example with no relevant label
  y[3] = 1  # and one with all labels relevant
  # Rows 4 and 5 give every label both classes, so sklearn's macro AUC is defined.
  y[4, :], y[4, 0] = 1, 0
  y[5, :], y[5, 0] = 0, 1
  out = metrics.multilabel_metrics(s, y)
  pred = (s > 0.5).astype(int)  # SVML-RGCN sec. 4.1 (ties=True puts scores at exactly 0.5)
  assert out['ml/hamming_loss'] == pytest.approx(skm.hamming_loss(y, pred))
  assert out['ml/coverage'] == pytest.approx(skm.coverage_error(y, s))
  assert out['ml/coverage'] == pytest.approx(_coverage_eq9_loop(y, s))
  assert metrics.coverage(y, s, zero_based=True) == pytest.approx(
      np.mean([(v - 1) if y[i].any() else 0 for i, v in enumerate(
          [_coverage_eq9_loop(y[i:i + 1], s[i:i + 1]) for i in range(n)])]))
  assert out['ml/one_error'] == pytest.approx(_one_error_loop(y, s))
  assert out['ml/ranking_loss'] == pytest.approx(skm.label_ranking_loss(y, s))
  assert out['ml/average_precision'] == pytest.approx(
      skm.label_ranking_average_precision_score(y, s))
  assert out['ml/micro_f1'] == pytest.approx(skm.f1_score(y, pred, average='micro', zero_division=0))
  assert out['ml/macro_f1'] == pytest.approx(skm.f1_score(y, pred, average='macro', zero_division=0))
  assert out['ml/micro_auc'] == pytest.approx(skm.roc_auc_score(y, s, average='micro'))
  assert out['ml/macro_auc'] == pytest.approx(skm.roc_auc_score(y, s, average='macro'))


def test_ranking_loss_equation_11_without_ties():
  y, s = _ml_data(30, 6, seed=1)
  ref = []
  for i in range(30):
    pos, neg = np.flatnonzero(y[i]), np.flatnonzero(1 - y[i])
    if len(pos) and len(neg):
      bad = sum(s[i, c] < s[i, k] for c in pos for k in neg)  # eq. 11: strict inversions
      ref.append(bad / (len(pos) * len(neg)))
    else:
      ref.append(0.0)
  assert metrics.ranking_loss(y, s) == pytest.approx(np.mean(ref))


def test_multilabel_macro_auc_skips_label_without_positives():
  y, s = _ml_data(50, 4, seed=9, no_pos_col=2)
  assert np.isnan(_sk_auc_or_nan(y, s, average='macro'))
  defined = [skm.roc_auc_score(y[:, j], s[:, j]) for j in (0, 1, 3)]
  assert metrics.auc_macro(y, s) == pytest.approx(np.mean(defined))
  assert metrics.f1_macro(y, s >= 0.5) == pytest.approx(
      skm.f1_score(y, s >= 0.5, average='macro', zero_division=0))


# ----------------------------------------------------------------------------- accumulation


def _batches(arrays, sizes, pad_to, rng):
  """Splits arrays into uneven batches, each padded with garbage rows (valid 0) to pad_to."""
  start = 0
  for size in sizes:
    batch, valid = {}, np.zeros(pad_to, bool)
    valid[:size] = True
    for k, v in arrays.items():
      chunk = v[start:start + size]
      pad = rng.random((pad_to - size,) + v.shape[1:]) * 3
      batch[k] = np.concatenate([chunk, pad.astype(v.dtype)], 0)
    perm = rng.permutation(pad_to)  # padding rows anywhere in the batch
    yield {k: v[perm] for k, v in batch.items()}, valid[perm]
    start += size


def test_accumulator_equals_one_shot():
  rng = np.random.default_rng(0)
  n, c, k = 53, 5, 7
  y, s = _ml_data(n, c, seed=4, no_pos_col=4)
  au_mask = (rng.random((n, c)) < 0.8).astype(np.float32)
  expr = rng.integers(0, k, n)
  expr_scores = rng.normal(size=(n, k))
  va_p, va_t = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
  ml_y, ml_s = _ml_data(n, 4, seed=8)
  loss = rng.random(n)
  arrays = {'au_prob': s, 'au_label': y, 'au_mask': au_mask, 'expr_score': expr_scores,
            'expr_label': expr, 'va_pred': va_p, 'va_label': va_t, 'ml_prob': ml_s,
            'ml_label': ml_y, 'loss': loss}
  names = [f'AU{i}' for i in (1, 2, 4, 6, 7)]
  acc = metrics.Accumulator(au_names=names, class_names=[f'e{i}' for i in range(k)])
  for batch, valid in _batches(arrays, [16, 3, 16, 11, 7], 16, rng):
    acc.add(batch, valid)
  assert acc.num_examples == n
  got = acc.compute()
  one = {}
  one.update(metrics.au_metrics(s, y, au_mask, au_names=names))
  one.update(metrics.expression_metrics(expr_scores, expr, class_names=[f'e{i}' for i in range(k)]))
  one.update(metrics.va_metrics(va_p, va_t))
  one.update(metrics.multilabel_metrics(ml_s, ml_y))
  one['loss'] = loss.mean()
  assert got.keys() == one.keys()
  for key in one:
    assert got[key] == pytest.approx(one[key], nan_ok=True), key
  for key in ('f1/AU1', 'auc_mean', 'mean_class_accuracy', 'affwild2_score', 'ccc_valence',
              'ccc_arousal', 'ml/coverage'):
    assert key in got
  assert np.isnan(got['auc/AU7'])
  # Every valid row kept exactly once.
  np.testing.assert_array_equal(np.sort(acc.arrays()['loss']), np.sort(loss))


def test_accumulator_per_batch_average_differs_from_global():
  """Guard: the accumulator is not a mean of per-batch F1s."""
  y = np.array([[1], [0], [0], [0], [1], [1]])
  s = np.array([[0.9], [0.6], [0.1], [0.2], [0.3], [0.8]])
  acc = metrics.Accumulator()
  acc.add({'au_prob': s[:3], 'au_label': y[:3]})
  acc.add({'au_prob': s[3:], 'au_label': y[3:]})
  glob = skm.f1_score(y[:, 0], s[:, 0] >= 0.5)
  assert acc.compute()['f1/AU0'] == pytest.approx(glob)


def test_accumulator_device_axis_and_errors():
  rng = np.random.default_rng(1)
  s = rng.random((2, 4, 3))
  y = (rng.random((2, 4, 3)) < 0.5).astype(int)
  y[0, 0], y[0, 1] = 1, 0
  valid = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
  acc = metrics.Accumulator()
  acc.add({'au_prob': s, 'au_label': y}, valid)
  flat = valid.reshape(-1)
  ref = metrics.au_metrics(s.reshape(-1, 3)[flat], y.reshape(-1, 3)[flat])
  assert acc.compute() == pytest.approx(ref, nan_ok=True)
  with pytest.raises(ValueError, match='keys'):
    acc.add({'au_prob': s}, valid)
  with pytest.raises(ValueError, match='au_label'):
    metrics.Accumulator().add({'au_prob': s, 'au_label': y[:1]}, valid)
  assert metrics.Accumulator().compute() == {}


# ----------------------------------------------------------------------------- tables


def test_format_tables():
  y, s = _ml_data(40, 3, seed=2, no_pos_col=2)
  names = ['AU1', 'AU2', 'AU4']
  m = metrics.au_metrics(s, y, au_names=names)
  table = metrics.format_au_table(m, names)
  lines = table.strip().splitlines()
  assert lines[0] == '| AU | F1 | AUC |'
  assert len(lines) == 2 + 3 + 1
  assert lines[2].startswith('| AU1 | ' + f"{100 * m['f1/AU1']:.1f}")
  assert lines[4].endswith('| - |')  # undefined AUC for the AU without positives
  assert lines[-1] == f"| **Avg.** | {100 * m['f1_mean']:.1f} | {100 * m['auc_mean']:.1f} |"
  m2 = metrics.au_metrics(s[::-1] * 0.9, y, au_names=names)
  fold = metrics.format_fold_table([m, m2], names)
  flines = fold.strip().splitlines()
  assert flines[0] == '| AU | F1 fold 1 | F1 fold 2 | F1 avg | AUC fold 1 | AUC fold 2 | AUC avg |'
  avg_f1 = (m['f1/AU2'] + m2['f1/AU2']) / 2
  cells = [c.strip() for c in flines[3].strip('|').split('|')]
  assert cells[0] == 'AU2' and cells[3] == f'{100 * avg_f1:.1f}'
  last = [c.strip() for c in flines[-1].strip('|').split('|')]
  assert last[3] == f"{100 * (m['f1_mean'] + m2['f1_mean']) / 2:.1f}"

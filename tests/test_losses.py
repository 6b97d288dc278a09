"""Tests of faujax.losses against plain numpy loops written from the papers' equations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from faujax import losses
from faujax import statistics

B, C = 6, 5


def _data(b=B, c=C, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, c)).astype(np.float32) * 2
  labels = (rng.random((b, c)) < 0.4).astype(np.float32)
  mask = (rng.random((b, c)) < 0.7).astype(np.float32)
  weights = rng.uniform(0.2, 2.0, size=c).astype(np.float32)
  return logits, labels, mask, weights


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


# ----------------------------------------------------------------------------- weights


def test_occurrence_weights_formula():
  r = np.array([0.1, 0.3, 0.05, 0.6])
  w = np.asarray(losses.occurrence_weights(r))
  expected = [(1 / r[i]) * len(r) / sum(1 / r[j] for j in range(len(r))) for i in range(len(r))]
  np.testing.assert_allclose(w, expected, rtol=1e-6)
  np.testing.assert_allclose(w.sum(), len(r), rtol=1e-6)
  assert np.argmax(w) == 2  # rarest AU weighs most


def test_occurrence_weights_zero_rate_is_zero_and_jittable():
  # statistics.inverse_rate_weights' rule: a never-occurring label weighs 0, the others keep
  # their 1/r proportions and still sum to N (an eps clip would give label 0 nearly all of N).
  w = np.asarray(losses.occurrence_weights(np.array([0.0, 0.5, 0.2])))
  assert w.dtype == np.float32
  np.testing.assert_allclose(w, [0.0, 6 / 7, 15 / 7], rtol=1e-6)
  wj = jax.jit(losses.occurrence_weights)(jnp.array([0.0, 0.5, 0.2]))
  np.testing.assert_allclose(w, wj, rtol=1e-6)


def test_occurrence_weights_bad_input():
  with pytest.raises(ValueError, match='rates'):
    losses.occurrence_weights(np.array([0.2, 1.5]))
  with pytest.raises(ValueError, match='rates'):
    losses.occurrence_weights(np.ones((2, 2)) * 0.1)
  with pytest.raises(ValueError, match='rates'):
    losses.occurrence_weights(np.zeros(3))  # no label ever occurs


def test_occurrence_weights_from_rates_ignoring_unknown():
  # The rates come from faujax.statistics (unknown entries never count); the weights of losses
  # are those of statistics in float32.
  labels = np.array([[1, 0], [1, 1], [0, 9]], np.float32)
  mask = np.array([[1, 1], [1, 1], [1, 0]], np.float32)
  r = statistics.occurrence_rates(labels, mask)
  np.testing.assert_allclose(r, [2 / 3, 1 / 2])
  np.testing.assert_allclose(losses.occurrence_weights(r), [2 * 1.5 / 3.5, 2 * 2 / 3.5], rtol=1e-6)
  np.testing.assert_allclose(losses.occurrence_weights(r), statistics.inverse_rate_weights(r),
                             rtol=1e-6)


def test_class_balance_weights():
  counts = np.array([74874, 134415, 25459, 14090, 6378, 3803, 24882])
  w = np.asarray(losses.class_balance_weights(counts))
  np.testing.assert_allclose(w, 3803 / counts, rtol=1e-6)
  assert w[5] == 1.0 and np.argmin(w) == 1
  w0 = np.asarray(losses.class_balance_weights(np.array([10, 0, 5])))
  np.testing.assert_allclose(w0, [0.5, 0.0, 1.0])
  labels = np.repeat(np.arange(3), [10, 0, 5])
  np.testing.assert_allclose(losses.class_balance_weights(statistics.class_counts(labels, 3)), w0)
  with pytest.raises(ValueError, match='counts'):
    losses.class_balance_weights(np.array([0, 0]))


# ----------------------------------------------------------------------------- multi-label losses


def test_weighted_bce_matches_equation_7():
  x, y, m, w = _data()
  got = float(losses.weighted_bce_with_logits(x, y, w, m))
  num = den = 0.0
  for b in range(B):
    for i in range(C):
      if m[b, i]:
        p = _sigmoid(x[b, i])
        num += -w[i] * (y[b, i] * np.log(p) + (1 - y[b, i]) * np.log(1 - p))
        den += 1
  np.testing.assert_allclose(got, num / den, rtol=1e-5)
  # No mask: eq. 7's 1/C sum_i, averaged over the batch.
  full = np.mean([-np.mean(w * (y[b] * np.log(_sigmoid(x[b])) + (1 - y[b]) *
                                np.log(1 - _sigmoid(x[b])))) for b in range(B)])
  np.testing.assert_allclose(float(losses.weighted_bce_with_logits(x, y, w)), full, rtol=1e-5)


def test_weighted_bce_extreme_logits_finite():
  x = np.array([[80.0, -80.0]], np.float32)
  y = np.array([[0.0, 1.0]], np.float32)
  val, g = jax.value_and_grad(losses.weighted_bce_with_logits)(x, y)
  np.testing.assert_allclose(val, 80.0, rtol=1e-5)
  assert np.all(np.isfinite(g))


def test_multilabel_bce_matches_equation_2():
  x, y, m, _ = _data(seed=1)
  got = float(losses.multilabel_bce_with_logits(x, y))
  ref = np.mean([-np.sum(y[b] * np.log(_sigmoid(x[b])) + (1 - y[b]) * np.log(1 - _sigmoid(x[b])))
                 for b in range(B)])
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  t = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(y))
  np.testing.assert_allclose(float(losses.multilabel_bce_with_logits(x, y, class_reduction='mean')),
                             float(t), rtol=1e-5)
  # Masked: per example sum over known labels, mean over examples with a known label.
  m[0] = 0
  per = [-np.sum(m[b] * (y[b] * np.log(_sigmoid(x[b])) + (1 - y[b]) * np.log(1 - _sigmoid(x[b]))))
         for b in range(1, B) if m[b].any()]
  np.testing.assert_allclose(float(losses.multilabel_bce_with_logits(x, y, m)), np.mean(per),
                             rtol=1e-5)


@pytest.mark.parametrize('over_batch', [False, True])
def test_dice_matches_equation_8(over_batch):
  x, y, m, w = _data(seed=2)
  p = _sigmoid(x)
  eps = 1.0
  got = float(losses.weighted_dice_loss(p, y, w, m, smooth=eps, over_batch=over_batch))
  if not over_batch:
    terms = [w[i] * (1 - (2 * y[b, i] * p[b, i] + eps) / (y[b, i] ** 2 + p[b, i] ** 2 + eps))
             for b in range(B) for i in range(C) if m[b, i]]
    ref = np.mean(terms)
  else:
    terms = []
    for i in range(C):
      v = m[:, i] > 0
      if v.any():
        inter = np.sum(y[v, i] * p[v, i])
        den = np.sum(y[v, i] ** 2) + np.sum(p[v, i] ** 2)
        terms.append(w[i] * (1 - (2 * inter + eps) / (den + eps)))
    ref = np.mean(terms)
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_dice_perfect_prediction_is_zero():
  y = np.array([[1.0, 0.0, 1.0]], np.float32)
  assert float(losses.weighted_dice_loss(y, y)) == pytest.approx(0.0, abs=1e-7)


def test_asymmetric_matches_equation_15():
  x, y, m, w = _data(seed=3)
  p = _sigmoid(x).astype(np.float32)
  got = float(losses.weighted_asymmetric_loss(p, y, w, m))
  terms = []
  for b in range(B):
    for i in range(C):
      if m[b, i]:
        terms.append(-w[i] * (y[b, i] * np.log(max(p[b, i], 1e-8)) +
                              (1 - y[b, i]) * p[b, i] * np.log(max(1 - p[b, i], 1e-8))))
  np.testing.assert_allclose(got, np.mean(terms), rtol=1e-5)


def test_asymmetric_stop_gradient():
  """d/dp of -(w/n) sg(p) log(1-p) is (w/n) p/(1-p), not (w/n)(p/(1-p) - log(1-p))."""
  p = np.array([[0.3, 0.8], [0.6, 0.1]], np.float32)
  y = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
  w = np.array([1.5, 0.5], np.float32)
  g = np.asarray(jax.grad(losses.weighted_asymmetric_loss)(p, y, w))
  n = p.size
  expected = np.where(y > 0, -w / (n * p), w * p / (n * (1 - p)))
  np.testing.assert_allclose(g, expected, rtol=1e-5)
  # Without the stop-gradient, the negatives' gradient would also contain -log(1-p).
  assert not np.allclose(g[0, 0], w[0] * (p[0, 0] / (1 - p[0, 0]) - np.log(1 - p[0, 0])) / n)


# ----------------------------------------------------------------------------- expressions


def test_class_weighted_ce_equals_torch():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(9, 7)).astype(np.float32) * 3
  labels = rng.integers(0, 7, size=9)
  w = np.asarray(losses.class_balance_weights(
      np.array([74874, 134415, 25459, 14090, 6378, 3803, 24882])))
  got = float(losses.class_weighted_cross_entropy(logits, labels, w))
  ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels),
                                          weight=torch.tensor(w))
  np.testing.assert_allclose(got, float(ref), rtol=1e-5)
  # Masked examples (label -1 here) are dropped: equals torch on the valid subset.
  mask = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0])
  lab_m = np.where(mask > 0, labels, -1)
  got_m = float(losses.class_weighted_cross_entropy(logits, lab_m, w, mask))
  v = mask > 0
  ref_m = torch.nn.functional.cross_entropy(torch.tensor(logits[v]), torch.tensor(labels[v]),
                                            weight=torch.tensor(w))
  np.testing.assert_allclose(got_m, float(ref_m), rtol=1e-5)
  # Unweighted = plain mean CE.
  np.testing.assert_allclose(
      float(losses.class_weighted_cross_entropy(logits, labels)),
      float(torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels))),
      rtol=1e-5)


def test_class_weighted_ce_bad_labels_dtype():
  with pytest.raises(ValueError, match='labels'):
    losses.class_weighted_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def _ccc_np(x, y):
  x, y = x.astype(np.float64), y.astype(np.float64)
  sxy = np.mean((x - x.mean()) * (y - y.mean()))
  return 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_ccc_and_loss_match_equations_11_12():
  rng = np.random.default_rng(5)
  pred = rng.uniform(-1, 1, size=(10, 2)).astype(np.float32)
  tgt = (0.6 * pred + rng.normal(scale=0.3, size=(10, 2))).astype(np.float32)
  np.testing.assert_allclose(float(losses.ccc(pred[:, 0], tgt[:, 0])), _ccc_np(pred[:, 0], tgt[:, 0]),
                             rtol=1e-5)
  ref = 1 - (_ccc_np(pred[:, 0], tgt[:, 0]) + _ccc_np(pred[:, 1], tgt[:, 1])) / 2
  np.testing.assert_allclose(float(losses.ccc_loss(pred, tgt)), ref, rtol=1e-5)
  # Masked: statistics over valid examples only, whatever the masked rows hold.
  mask = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 0], np.float32)
  v = mask > 0
  pred2 = pred.copy()
  pred2[~v] = 1e4
  ref_m = 1 - (_ccc_np(pred[v, 0], tgt[v, 0]) + _ccc_np(pred[v, 1], tgt[v, 1])) / 2
  np.testing.assert_allclose(float(losses.ccc_loss(pred2, tgt, mask)), ref_m, rtol=1e-5)
  # Perfect agreement.
  assert float(losses.ccc_loss(tgt, tgt)) == pytest.approx(0.0, abs=1e-5)


def _ccc_public_np(x, y):
  """The public code's CCC: covariance over n, variances over n - 1 (torch.var default)."""
  x, y = x.astype(np.float64), y.astype(np.float64)
  sxy = np.mean((x - x.mean()) * (y - y.mean()))
  return 2 * sxy / (np.var(x, ddof=1) + np.var(y, ddof=1) + (x.mean() - y.mean()) ** 2)


def test_ccc_public_code_normalization():
  rng = np.random.default_rng(6)
  pred = rng.uniform(-1, 1, size=(12, 2)).astype(np.float32)
  tgt = (0.6 * pred + rng.normal(scale=0.3, size=(12, 2)) + 0.1).astype(np.float32)
  got = float(losses.ccc(pred[:, 0], tgt[:, 0], normalization='public_code'))
  np.testing.assert_allclose(got, _ccc_public_np(pred[:, 0], tgt[:, 0]), rtol=1e-5)
  assert abs(got - _ccc_np(pred[:, 0], tgt[:, 0])) > 1e-3  # really a different convention
  ref = 1 - (_ccc_public_np(pred[:, 0], tgt[:, 0]) + _ccc_public_np(pred[:, 1], tgt[:, 1])) / 2
  np.testing.assert_allclose(float(losses.ccc_loss(pred, tgt, normalization='public_code')), ref,
                             rtol=1e-5)
  # Masked: n counts the valid examples only.
  mask = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1], np.float32)
  v = mask > 0
  ref_m = 1 - (_ccc_public_np(pred[v, 0], tgt[v, 0]) + _ccc_public_np(pred[v, 1], tgt[v, 1])) / 2
  np.testing.assert_allclose(
      float(jax.jit(lambda a, b, m: losses.ccc_loss(a, b, m, normalization='public_code'))(
          pred, tgt, mask)), ref_m, rtol=1e-5)
  # Perfect agreement scores (n - 1) / n, so the loss is 1 / n; one valid example gives 0.
  assert float(losses.ccc(tgt[:, 0], tgt[:, 0], normalization='public_code')) == pytest.approx(
      11 / 12, rel=1e-5)
  one = np.eye(12, dtype=np.float32)[0]
  assert float(losses.ccc(pred[:, 0], tgt[:, 0], one, normalization='public_code')) == 0.0
  with pytest.raises(ValueError, match='normalization'):
    losses.ccc_loss(pred, tgt, normalization='torch')


# ----------------------------------------------------------------------------- landmarks / pixels


@pytest.mark.parametrize('num_points', [68, 49])
def test_landmark_alignment_matches_equation_10(num_points):
  rng = np.random.default_rng(6)
  tgt = rng.uniform(0, 176, size=(3, num_points, 2)).astype(np.float32)
  pred = (tgt + rng.normal(scale=2.0, size=tgt.shape)).astype(np.float32)
  eyes = {68: (range(36, 42), range(42, 48)), 49: (range(19, 25), range(25, 31))}[num_points]
  per = []
  for b in range(3):
    right = tgt[b, list(eyes[0])].mean(0)
    left = tgt[b, list(eyes[1])].mean(0)
    d_o = np.sqrt(np.sum((right - left) ** 2))
    per.append(np.sum((tgt[b] - pred[b]) ** 2) / (2 * d_o ** 2))
  got = float(losses.landmark_alignment_loss(pred, tgt, eyes=num_points))
  np.testing.assert_allclose(got, np.mean(per), rtol=1e-5)
  # Interleaved (B, 2M) layout gives the same value; explicit index sets too.
  flat = float(losses.landmark_alignment_loss(pred.reshape(3, -1), tgt.reshape(3, -1),
                                              eyes=num_points))
  np.testing.assert_allclose(flat, got, rtol=1e-6)
  expl = float(losses.landmark_alignment_loss(pred, tgt, eyes=(list(eyes[0]), list(eyes[1]))))
  np.testing.assert_allclose(expl, got, rtol=1e-6)


def test_landmark_bad_eyes():
  x = np.zeros((1, 49, 2), np.float32)
  with pytest.raises(ValueError, match='eyes'):
    losses.landmark_alignment_loss(x, x, eyes=68)  # 68-point eye indices exceed 49 points
  with pytest.raises(ValueError, match='eyes'):
    losses.landmark_alignment_loss(x, x, eyes=51)


def test_l1_reconstruction_matches_equation_1():
  rng = np.random.default_rng(7)
  rec = rng.normal(size=(4, 3, 5, 5, 3)).astype(np.float32)
  gt = rng.normal(size=(4, 3, 5, 5, 3)).astype(np.float32)
  # Eq. 1 per ROI (channels averaged), then mean over ROIs and examples.
  per_roi = np.abs(gt - rec).mean(axis=(2, 3, 4))
  np.testing.assert_allclose(float(losses.l1_reconstruction_loss(rec, gt)), per_roi.mean(), rtol=1e-5)
  m = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 1, 0]], np.float32)
  np.testing.assert_allclose(float(losses.l1_reconstruction_loss(rec, gt, m)),
                             per_roi[m > 0].mean(), rtol=1e-5)
  mb = np.array([1, 0, 1, 1], np.float32)
  np.testing.assert_allclose(float(losses.l1_reconstruction_loss(rec, gt, mb)),
                             per_roi[mb > 0].mean(), rtol=1e-5)


# ----------------------------------------------------------------------------- shared properties


def _all_losses(seed=8):
  """(name, fn(pred, mask) -> scalar, pred, mask, garbage) for every loss; garbage replaces the
  masked entries of pred and of the targets to show they change nothing."""
  x, y, m, w = _data(seed=seed)
  p = _sigmoid(x).astype(np.float32)
  rng = np.random.default_rng(seed)
  ex_mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
  cls = rng.integers(0, 4, size=B)
  cls_logits = rng.normal(size=(B, 4)).astype(np.float32)
  va_t = rng.uniform(-1, 1, size=(B, 2)).astype(np.float32)
  va_p = rng.uniform(-1, 1, size=(B, 2)).astype(np.float32)
  lm_t = rng.uniform(0, 100, size=(B, 68, 2)).astype(np.float32)
  lm_p = lm_t + rng.normal(size=lm_t.shape).astype(np.float32)
  img_t = rng.normal(size=(B, 2, 4, 4)).astype(np.float32)
  img_p = rng.normal(size=(B, 2, 4, 4)).astype(np.float32)
  cw = np.array([0.5, 1.0, 0.3, 0.8], np.float32)
  return [
      ('bce', lambda a, t, mk: losses.weighted_bce_with_logits(a, t, w, mk), x, y, m),
      ('ml_bce', lambda a, t, mk: losses.multilabel_bce_with_logits(a, t, mk), x, y, m),
      ('dice', lambda a, t, mk: losses.weighted_dice_loss(a, t, w, mk), p, y, m),
      ('dice_batch', lambda a, t, mk: losses.weighted_dice_loss(a, t, w, mk, over_batch=True), p, y, m),
      ('asym', lambda a, t, mk: losses.weighted_asymmetric_loss(a, t, w, mk), p, y, m),
      ('ce', lambda a, t, mk: losses.class_weighted_cross_entropy(a, t, cw, mk), cls_logits, cls, ex_mask),
      ('ccc', lambda a, t, mk: losses.ccc_loss(a, t, mk), va_p, va_t, ex_mask),
      ('align', lambda a, t, mk: losses.landmark_alignment_loss(a, t, mk), lm_p, lm_t, ex_mask),
      ('l1', lambda a, t, mk: losses.l1_reconstruction_loss(a, t, mk), img_p, img_t, ex_mask),
  ]


_CASES = _all_losses()
_JITTED = {}


def _jit_value_and_grad(case):
  """One compiled value_and_grad per loss, shared by the tests (compiles are the slow part)."""
  if case[0] not in _JITTED:
    _JITTED[case[0]] = jax.jit(jax.value_and_grad(case[1]))
  return _JITTED[case[0]]


@pytest.mark.parametrize('case', _CASES, ids=lambda c: c[0])
def test_masked_entries_change_nothing(case):
  _, fn, pred, tgt, mask = case
  base = float(fn(pred, tgt, mask))
  bad = mask == 0
  if mask.ndim < pred.ndim:
    bad_p = np.broadcast_to(bad.reshape(bad.shape + (1,) * (pred.ndim - bad.ndim)), pred.shape)
  else:
    bad_p = bad
  pred2 = np.where(bad_p, np.asarray(pred) * 3 + 0.7, pred).astype(pred.dtype)
  if np.issubdtype(tgt.dtype, np.integer):
    tgt2 = np.where(bad, -1, tgt)
  else:
    bad_t = np.broadcast_to(bad.reshape(bad.shape + (1,) * (tgt.ndim - bad.ndim)), tgt.shape)
    tgt2 = np.where(bad_t, 1 - np.asarray(tgt) + 5 * (tgt.ndim > 2), tgt).astype(tgt.dtype)
  if case[0] in ('dice', 'dice_batch', 'asym'):
    pred2 = np.clip(pred2, 0, 1)
  np.testing.assert_allclose(float(fn(pred2, tgt2, mask)), base, rtol=1e-5, atol=1e-7)
  assert np.isfinite(base) and base > 0


@pytest.mark.parametrize('case', _CASES, ids=lambda c: c[0])
def test_fully_masked_is_zero_with_finite_grads(case):
  _, _, pred, tgt, mask = case
  zero = np.zeros_like(mask)
  val, g = _jit_value_and_grad(case)(jnp.asarray(pred), tgt, zero)
  assert float(val) == 0.0
  assert np.all(np.asarray(g) == 0.0)


@pytest.mark.parametrize('case', _CASES, ids=lambda c: c[0])
def test_jit_grad_finite_scalar_f32_and_bf16(case):
  _, fn, pred, tgt, mask = case
  val, g = _jit_value_and_grad(case)(jnp.asarray(pred), tgt, mask)
  assert val.shape == () and val.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)
  np.testing.assert_allclose(float(val), float(fn(pred, tgt, mask)), rtol=1e-5)
  # bf16 inputs: maths in float32, result float32 and close to the f32 value of the same inputs.
  pb = jnp.asarray(pred).astype(jnp.bfloat16)
  vb = fn(pb, tgt, mask)
  assert vb.dtype == jnp.float32
  np.testing.assert_allclose(float(vb), float(fn(pb.astype(jnp.float32), tgt, mask)), rtol=1e-6)


def test_bad_shapes_raise_value_error():
  x, y, m, w = _data()
  with pytest.raises(ValueError, match='labels'):
    losses.weighted_bce_with_logits(x, y[:, :3])
  with pytest.raises(ValueError, match='weights'):
    losses.weighted_bce_with_logits(x, y, w[:3])
  with pytest.raises(ValueError, match='mask'):
    losses.weighted_asymmetric_loss(x, y, mask=m[:2])
  with pytest.raises(ValueError, match='logits'):
    losses.weighted_bce_with_logits(x[0], y[0])
  with pytest.raises(ValueError, match='targets'):
    losses.ccc_loss(x[:, :2], x[:, :3])


def test_landmark_default_eyes_follow_scheme():
  rng = np.random.default_rng(9)
  t = rng.uniform(0, 100, size=(2, 49, 2)).astype(np.float32)
  p = t + 1.0
  np.testing.assert_allclose(float(losses.landmark_alignment_loss(p, t)),
                             float(losses.landmark_alignment_loss(p, t, eyes=(tuple(range(19, 25)), tuple(range(25, 31))))))
  with pytest.raises(ValueError, match='pred'):
    losses.landmark_alignment_loss(np.zeros((1, 10, 2)), np.zeros((1, 10, 2)))

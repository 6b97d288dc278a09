"""Tests of AU centres from landmarks (faujax.geometry.au_centres): JAA-Net and EAC-Net rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faujax import labels
from faujax.geometry import au_centres
from faujax.geometry import conversions
from faujax.geometry import mean_face

FACE = mean_face.MEAN_FACE_68

# The published rules written out independently, in each method's own 0-based indices:
# AU -> ((point, dy in units of r), (point, dy)).
JAANET_49 = {
    1: ((4, -1 / 2), (5, -1 / 2)), 2: ((1, -1 / 3), (8, -1 / 3)), 4: ((2, 1 / 3), (7, 1 / 3)),
    6: ((24, 1), (29, 1)), 7: ((21, 0), (26, 0)), 10: ((43, 0), (45, 0)),
    12: ((31, 0), (37, 0)), 14: ((31, 0), (37, 0)), 15: ((31, 0), (37, 0)),
    17: ((39, 1 / 2), (41, 1 / 2)), 23: ((34, 0), (40, 0)), 24: ((34, 0), (40, 0)),
    9: ((15, -1 / 2), (17, -1 / 2)), 25: ((34, 0), (40, 0)), 26: ((39, 1 / 2), (41, 1 / 2)),
}
EACNET_68 = {
    1: ((21, -1 / 2), (22, -1 / 2)), 2: ((18, -1 / 3), (25, -1 / 3)),
    4: ((19, 1 / 3), (24, 1 / 3)), 6: ((41, 1), (46, 1)), 7: ((38, 0), (43, 0)),
    10: ((49, 0), (53, 0)), 12: ((48, 0), (54, 0)), 14: ((48, 0), (54, 0)),
    17: ((51, 0), (57, 0)), 23: ((61, 0), (63, 0)), 24: ((61, 0), (63, 0)),
}


def _random_faces(n, seed=0):
  rng = np.random.default_rng(seed)
  return (FACE + rng.normal(0, 1.5, (n, 68, 2))).astype(np.float32)


@pytest.mark.parametrize('rules,table,scheme', [('jaanet', JAANET_49, 49), ('eacnet', EACNET_68, 68)])
@pytest.mark.parametrize('input_points', [68, 66, 49])
def test_published_rules_match_loop_reference(rules, table, scheme, input_points):
  faces = _random_faces(3, 1)
  native = np.asarray(conversions.convert_landmarks(faces, scheme))
  given = np.asarray(conversions.convert_landmarks(faces, input_points))
  aus = tuple(table)
  centres, ok = au_centres.au_centres(given, aus, rules)
  assert centres.shape == (3, len(aus), 2, 2)
  assert np.asarray(ok).all()
  for b in range(3):
    lm = native[b]
    r = abs(lm[22, 0] - lm[25, 0]) if scheme == 49 else abs(lm[39, 0] - lm[42, 0])
    for a, au in enumerate(aus):
      for k, (pt, dy) in enumerate(table[au]):
        expected = (lm[pt, 0], lm[pt, 1] + dy * r)
        np.testing.assert_allclose(np.asarray(centres[b, a, k]), expected, atol=1e-4)


@pytest.mark.parametrize('rules', ['jaanet', 'eacnet'])
def test_centres_fall_on_the_right_regions(rules):
  aus = labels.ALL_AUS
  c = np.asarray(au_centres.au_centres(FACE, aus, rules)[0])
  at = {au: c[i] for i, au in enumerate(aus)}
  brow_y = FACE[17:27, 1].max()
  eye_y = FACE[36:48, 1]
  # AU12: exactly the lip corners.
  np.testing.assert_allclose(at[12], FACE[[48, 54]])
  # AU1 above the inner brow ends, AU2 above the outer brows (further out than AU1).
  assert (at[1][:, 1] < FACE[[21, 22], 1]).all()
  np.testing.assert_allclose(at[1][:, 0], FACE[[21, 22], 0])
  assert (at[2][:, 1] < FACE[[18, 25], 1]).all()
  assert at[2][0, 0] < at[1][0, 0] and at[2][1, 0] > at[1][1, 0]
  # AU4 just below the brows, above the eyes.
  assert (at[4][:, 1] > FACE[[19, 24], 1]).all() and (at[4][:, 1] < eye_y.min()).all()
  # AU6 on the cheeks: below the eyes, above the mouth, lateral to the nose.
  assert (at[6][:, 1] > eye_y.max()).all() and (at[6][:, 1] < FACE[48, 1]).all()
  assert at[6][0, 0] < FACE[31, 0] and at[6][1, 0] > FACE[35, 0]
  # AU7 / AU5 / AU43 on the eyes, AU5 above AU43, each on its own eye.
  for au in (5, 7, 43):
    assert (at[au][:, 1] > brow_y).all() and (at[au][:, 1] <= eye_y.max()).all()
    assert FACE[36, 0] <= at[au][0, 0] <= FACE[39, 0]
    assert FACE[42, 0] <= at[au][1, 0] <= FACE[45, 0]
  assert (at[5][:, 1] < at[43][:, 1]).all()
  # AU9 on the nose sides above the nostrils, AU17 below the lower lip (JAA-Net) / mouth.
  assert (at[9][:, 1] < FACE[31:36, 1].min()).all() and (at[9][:, 1] > eye_y.max()).all()
  assert (at[17][:, 1] >= FACE[51, 1]).all()
  # Mouth AUs inside the lip box.
  lips = FACE[48:60]
  for au in (10, 20, 23, 24, 25):
    assert (at[au][:, 0] >= lips[:, 0].min()).all() and (at[au][:, 0] <= lips[:, 0].max()).all()
    assert (at[au][:, 1] >= lips[:, 1].min()).all() and (at[au][:, 1] <= lips[:, 1].max()).all()


@pytest.mark.parametrize('rules', ['jaanet', 'eacnet'])
@pytest.mark.parametrize('aus', ['bp4d', 'disfa', 'emotionet', 'all'])
def test_flip_consistency(rules, aus):
  faces = _random_faces(4, 2)
  width = 240
  c, ok = au_centres.au_centres(faces, aus, rules)
  cf, okf = au_centres.au_centres(conversions.flip_landmarks(faces, width), aus, rules)
  idx = au_centres.centre_flip_index(aus, rules)
  c = np.asarray(c)
  mirrored = c.copy()
  mirrored[..., 0] = width - 1 - c[..., 0]
  expected = np.take_along_axis(mirrored, idx[None, :, :, None], axis=2)
  np.testing.assert_allclose(np.asarray(cf), expected, atol=1e-3)
  assert np.asarray(ok).all() and np.asarray(okf).all()


def test_flip_index_swaps_pairs_and_keeps_midline():
  aus = (1, 12, 17, 23)
  np.testing.assert_array_equal(au_centres.centre_flip_index(aus, 'eacnet'),
                                [[1, 0], [1, 0], [0, 1], [1, 0]])
  np.testing.assert_array_equal(au_centres.centre_flip_index(aus, 'jaanet'),
                                [[1, 0], [1, 0], [1, 0], [0, 1]])


def test_roi_table_sharing_and_counts():
  table = au_centres.roi_table('bp4d', 'jaanet')
  assert [r.aus for r in table] == [(1,), (2,), (4,), (6,), (7,), (10,), (12, 14, 15), (17,),
                                    (23, 24)]
  # AU-GCN: 9 x 2 + whole face = 19 ROIs on BP4D, 7 x 2 = 14 on DISFA (EAC-Net rules).
  assert len(au_centres.roi_table('bp4d', 'eacnet')) == 9
  assert len(au_centres.roi_table('disfa', 'eacnet')) == 7
  mapping = au_centres.au_to_roi('bp4d', 'jaanet')
  assert mapping.tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 8, 8]
  per_au, _ = au_centres.au_centres(FACE, 'bp4d', 'jaanet')
  per_roi, _ = au_centres.roi_centres(FACE, 'bp4d', 'jaanet')
  np.testing.assert_allclose(np.asarray(per_roi)[mapping], np.asarray(per_au))
  assert all(s in ('published', 'faujax') for s in au_centres.RULE_SOURCES['eacnet'].values())
  assert au_centres.RULE_SOURCES['jaanet'][5] == 'faujax'
  assert au_centres.RULE_SOURCES['jaanet'][26] == 'published'


def test_jit_vmap_and_gradient():
  faces = jnp.asarray(_random_faces(5, 3))
  fn = jax.jit(lambda l: au_centres.au_centres(l, 'all', 'jaanet'))
  batched, _ = fn(faces)
  single = jax.vmap(lambda l: au_centres.au_centres(l, 'all', 'jaanet')[0])(faces)
  np.testing.assert_allclose(np.asarray(batched), np.asarray(single), atol=1e-5)
  g = jax.grad(lambda l: au_centres.au_centres(l, (1,), 'jaanet')[0][0, 0, 1])(faces[0])
  # AU1 right centre y = y21 - |x39 - x42| / 2: gradient 1 on y21, -/+ 1/2 on x39 / x42.
  assert float(g[21, 1]) == pytest.approx(1.0)
  assert float(g[39, 0]) == pytest.approx(0.5) and float(g[42, 0]) == pytest.approx(-0.5)
  assert float(jnp.abs(g).sum()) == pytest.approx(2.0)


def test_bad_input_flags_and_errors():
  nan_used = FACE.copy()
  nan_used[21] = np.nan
  nan_jaw = FACE.copy()
  nan_jaw[3] = np.nan
  degenerate = FACE.copy()
  degenerate[39, 0] = degenerate[42, 0]  # coincident inner eye corners: ruler 0
  ok = np.asarray(au_centres.au_centres(np.stack([FACE, nan_used, nan_jaw, degenerate]))[1])
  assert ok.tolist() == [True, False, True, False]
  with pytest.raises(ValueError, match='degenerate face'):
    au_centres.au_centres_checked(degenerate)
  with pytest.raises(ValueError, match='non-finite'):
    au_centres.au_centres_checked(nan_used)
  with pytest.raises(ValueError, match='P in'):
    au_centres.au_centres(FACE[:60])
  with pytest.raises(ValueError, match=r'AU\[3\]'):
    au_centres.au_centres(FACE, (1, 3))
  with pytest.raises(ValueError, match='rules'):
    au_centres.au_centres(FACE, (1,), 'openface')
  with pytest.raises(ValueError, match='label space'):
    au_centres.au_centres(FACE, 'ck+')

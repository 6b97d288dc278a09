"""Geometry on rendered synthetic faces (faujax.data.synthetic_faces): centres, flips, alignment."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from faujax import labels
from faujax.geometry import alignment
from faujax.geometry import au_centres
from faujax.geometry import conversions
from faujax.geometry import roi

face_model = pytest.importorskip('faujax.data.synthetic_faces.face_model',
                                 reason='synthetic face renderer not available')
renderer = pytest.importorskip('faujax.data.synthetic_faces.renderer',
                               reason='synthetic face renderer not available')

SIZE = 128


def _render(subject, au_strength=None, **nuisance):
  idn = face_model.sample_identity(0, subject)
  au = np.zeros(len(labels.ALL_AUS)) if au_strength is None else au_strength
  nu = dataclasses.replace(face_model.neutral_nuisance(), **nuisance)
  image, lm = renderer.render_face(idn, au, nu, SIZE)
  return image.astype(np.float32) / 255.0, lm


@pytest.mark.parametrize('rules', ['jaanet', 'eacnet'])
def test_centres_on_the_right_regions_of_rendered_faces(rules):
  for subject in range(3):
    strength = np.random.default_rng(subject).uniform(0, 3, len(labels.ALL_AUS))
    _, lm = _render(subject, strength)
    c, ok = au_centres.au_centres(lm, 'all', rules)
    assert bool(ok)
    at = dict(zip(labels.ALL_AUS, np.asarray(c)))
    np.testing.assert_allclose(at[12], lm[[48, 54]], atol=1e-4)  # lip corners
    assert (at[1][:, 1] < lm[[21, 22], 1]).all()  # above the inner brows
    assert np.abs(at[1][:, 0] - lm[[21, 22], 0]).max() < 1e-3
    assert (at[2][:, 1] < lm[[18, 25], 1]).all()  # above the outer brows, lateral to AU1
    assert at[2][0, 0] < at[1][0, 0] < at[1][1, 0] < at[2][1, 0]
    assert (at[6][:, 1] > lm[36:48, 1].max()).all()  # cheeks below the eyes
    assert (at[6][:, 1] < lm[48:60, 1].min()).all()
    assert (at[17][:, 1] >= lm[51, 1]).all()  # chin / lower mouth
    assert (at[43][0] > lm[36:42].min(0)).all() and (at[43][0] < lm[36:42].max(0)).all()


def test_roi_crops_flip_with_the_rendered_face():
  image, lm = _render(5, rotation=0.1)
  fimage = np.asarray(conversions.flip_image(jnp.asarray(image)))
  flm = conversions.flip_landmarks(lm, SIZE)
  p, v = roi.crop_au_rois(jnp.asarray(image), lm, 'emotionet', 'jaanet', 13, unique=False)
  pf, vf = roi.crop_au_rois(jnp.asarray(fimage), flm, 'emotionet', 'jaanet', 13, unique=False)
  assert np.asarray(v).all() and np.asarray(vf).all()
  idx = au_centres.centre_flip_index('emotionet', 'jaanet')
  p, pf = np.asarray(p), np.asarray(pf)
  for a in range(idx.shape[0]):
    for k in range(2):
      np.testing.assert_allclose(pf[a, k], p[a, idx[a, k], :, ::-1], atol=1e-4)


def test_alignment_of_rotated_renders():
  _, lm0 = _render(7)
  image, lm = _render(7, rotation=0.3, scale=0.26, shift=np.array([0.04, 0.02]))
  # The same face under a similarity: the 5-point fit to the upright face's own five points
  # maps the eye centres onto them, and the JAA-Net rule gives identical aligned landmarks.
  template = np.asarray(alignment.five_points(lm0))
  res = alignment.align_five_point(jnp.asarray(image), lm, out_size=SIZE, template=template)
  eyes = np.stack([np.asarray(e) for e in alignment.eye_centres(res.landmarks)])
  assert np.abs(eyes - template[:2]).max() < 0.5
  a0 = alignment.align_jaanet(jnp.zeros((SIZE, SIZE, 3)), lm0)
  a1 = alignment.align_jaanet(jnp.asarray(image), lm)
  assert np.abs(np.asarray(a0.landmarks) - np.asarray(a1.landmarks)).max() < 0.5
  e = alignment.align_emotiongcn(jnp.asarray(image), lm)
  eyes = [np.asarray(x) for x in alignment.eye_centres(e.landmarks)]
  assert abs(eyes[0][1] - eyes[1][1]) < 0.5 and bool(e.ok)
  # The aligned image shows the face where the aligned landmarks say: the lips are red-ish.
  aligned = np.asarray(a1.image)
  lx, ly = np.asarray(a1.landmarks)[[51, 57]].mean(0)
  lip = aligned[int(round(ly)), int(round(lx))]
  cheek_x, cheek_y = np.asarray(a1.landmarks)[[31, 1]][:, 0].mean(), np.asarray(a1.landmarks)[31, 1]
  skin = aligned[int(round(cheek_y)), int(round(cheek_x))]
  assert lip[0] - lip[1] > skin[0] - skin[1]

"""Tests of offline face detection + 68 landmarks (faujax.geometry.face_detection, tools.landmarks).

Needs the optional extra ``pip install 'faujax[face]'`` (dlib-bin, face_recognition_models)
and scikit-image for the test photograph; skipped with the reason otherwise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from faujax.geometry import face_detection
from faujax.tools import landmarks as landmarks_tool

needs_extra = pytest.mark.skipif(
    not face_detection.available(),
    reason="optional extra not installed: pip install 'faujax[face]' (dlib-bin, "
           'face_recognition_models)')


def _astronaut():
  data = pytest.importorskip('skimage.data', reason='scikit-image provides the test photograph')
  return data.astronaut()


@needs_extra
def test_finds_the_astronaut_face_with_sane_landmarks():
  image = _astronaut()
  face = face_detection.detect_landmarks(image)
  lm, box = face.landmarks, face.box
  assert lm.shape == (68, 2)
  x0, y0, x1, y1 = box
  w, h = x1 - x0, y1 - y0
  assert 60 < w < 200 and 60 < h < 200  # the face is ~90 px wide in the 512 px photo
  # Landmarks inside the box enlarged by 15 % (dlib boxes cut the chin / brows a little).
  assert (lm[:, 0] > x0 - 0.15 * w).all() and (lm[:, 0] < x1 + 0.15 * w).all()
  assert (lm[:, 1] > y0 - 0.15 * h).all() and (lm[:, 1] < y1 + 0.15 * h).all()
  eyes_y = lm[36:48, 1].mean()
  assert lm[17:27, 1].mean() < eyes_y < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
  # Subject's right eye / mouth corner on the image left.
  assert lm[36:42, 0].mean() < lm[42:48, 0].mean() and lm[48, 0] < lm[54, 0]
  eye_dist = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
  assert 0.25 * w < eye_dist < 0.6 * w


@needs_extra
def test_no_face_is_an_explicit_error():
  grey = np.full((96, 128, 3), 128, np.uint8)
  assert face_detection.detect_faces(grey) == []
  with pytest.raises(face_detection.NoFaceError, match='no face found'):
    face_detection.detect_landmarks(grey)
  with pytest.raises(ValueError, match='image: expected'):
    face_detection.detect_faces(np.zeros((10, 10, 5), np.uint8))


@needs_extra
def test_cli_prints_and_draws(tmp_path, capsys):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  src = tmp_path / 'astronaut.png'
  Image.fromarray(_astronaut()).save(src)
  out = tmp_path / 'drawn.png'
  assert landmarks_tool.main([str(src), '--out', str(out)]) == 0
  text = capsys.readouterr().out
  assert '1 face(s)' in text and 'face 0: box' in text and len(text.splitlines()) == 2 + 68
  drawn = np.asarray(Image.open(out))
  assert drawn.shape[:2] == (512, 512)
  assert landmarks_tool.main([str(src), '--json']) == 0
  result = json.loads(capsys.readouterr().out)
  assert len(result['faces']) == 1 and len(result['faces'][0]['landmarks']) == 68
  grey = tmp_path / 'grey.png'
  Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(grey)
  assert landmarks_tool.main([str(grey)]) == 1
  assert 'no face found' in capsys.readouterr().err


def test_cli_reports_unreadable_images(tmp_path, capsys):
  bad = tmp_path / 'not_an_image.png'
  bad.write_text('hello')
  assert landmarks_tool.main([str(bad)]) == 2
  err = capsys.readouterr().err
  assert 'not_an_image.png' in err


def test_missing_extra_names_the_install_command(monkeypatch):
  monkeypatch.setattr(face_detection.importlib.util, 'find_spec', lambda name: None)
  assert not face_detection.available()
  with pytest.raises(face_detection.FaceExtraMissing, match=r"faujax\[face\]"):
    face_detection._model_path('shape_predictor_68_face_landmarks.dat')

"""Offline face detection and 68 iBUG landmarks for users' own images (optional extra).

Needs ``pip install 'faujax[face]'``: ``dlib-bin`` (prebuilt dlib) and
``face_recognition_models`` (ships dlib's model files, so nothing is downloaded). Both are
imported lazily: importing this module never fails; calling it without the extra raises
``FaceExtraMissing`` (an ImportError) naming the install command.

Detection uses dlib's HOG frontal-face detector; landmarks come from dlib's 68-point
shape predictor (the iBUG 300-W scheme, the same 0-based order as ``schemes.py``). The
model file is located on disk without importing ``face_recognition_models`` itself
(its ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ship).
Host-level numpy code (not jit-able).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os

import numpy as np

INSTALL_HINT = "pip install 'faujax[face]'  (dlib-bin and face_recognition_models)"


class FaceExtraMissing(ImportError):
  """The optional face-detection extra is not installed."""


class NoFaceError(ValueError):
  """No face was found in an image."""


@dataclasses.dataclass(frozen=True)
class Face:
  """A detected face: box (x0, y0, x1, y1) pixels, landmarks (68, 2) (x, y), detector score."""
  box: np.ndarray
  landmarks: np.ndarray
  score: float


def available() -> bool:
  """True when dlib and face_recognition_models are importable."""
  return (importlib.util.find_spec('dlib') is not None
          and importlib.util.find_spec('face_recognition_models') is not None)


def _model_path(name: str) -> str:
  spec = importlib.util.find_spec('face_recognition_models')
  if spec is None or not spec.submodule_search_locations:
    raise FaceExtraMissing(f'face_recognition_models is not installed; {INSTALL_HINT}.')
  path = os.path.join(list(spec.submodule_search_locations)[0], 'models', name)
  if not os.path.exists(path):
    raise FaceExtraMissing(f'model file {path} is missing; reinstall with {INSTALL_HINT}.')
  return path


@functools.lru_cache(maxsize=1)
def _models():
  try:
    dlib = importlib.import_module('dlib')
  except ImportError as e:
    raise FaceExtraMissing(f'dlib is not installed; {INSTALL_HINT}.') from e
  detector = dlib.get_frontal_face_detector()
  predictor = dlib.shape_predictor(_model_path('shape_predictor_68_face_landmarks.dat'))
  return dlib, detector, predictor


def _as_uint8_rgb(image) -> np.ndarray:
  arr = np.asarray(image)
  if arr.ndim == 3 and arr.shape[-1] == 4:
    arr = arr[..., :3]
  if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
    raise ValueError(f'image: expected (H, W), (H, W, 3) or (H, W, 4) pixels, got shape '
                     f'{arr.shape}.')
  if arr.dtype != np.uint8:
    if np.issubdtype(arr.dtype, np.floating) and arr.size and np.nanmax(arr) <= 1.0:
      arr = arr * 255.0
    arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
  return np.ascontiguousarray(arr)


def detect_faces(image, upsample: int = 1) -> list[Face]:
  """All faces in an image, largest first.

  Args:
    image: (H, W, 3) RGB or (H, W) grey image, uint8 (or float in [0, 1] / [0, 255]).
    upsample: times the detector upsamples the image (finds smaller faces, slower).

  Returns:
    list of ``Face`` (empty when there is no face).
  """
  dlib, detector, predictor = _models()
  arr = _as_uint8_rgb(image)
  rects, scores, _ = detector.run(arr, int(upsample), 0.0)
  faces = []
  for rect, score in zip(rects, scores):
    shape = predictor(arr, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)],
                   np.float32)
    box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float32)
    faces.append(Face(box=box, landmarks=pts, score=float(score)))
  faces.sort(key=lambda f: -float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
  return faces


def detect_landmarks(image, upsample: int = 1) -> Face:
  """The largest face of an image; raises ``NoFaceError`` (a ValueError) if there is none."""
  faces = detect_faces(image, upsample)
  if not faces:
    raise NoFaceError(f'image: no face found (image shape {np.shape(image)}, upsample '
                      f'{upsample}); try a larger upsample or a frontal, well-lit face.')
  return faces[0]

"""The face pipeline of inference: faces in a frame -> the face image the model's dataset stores.

A trained model has only seen faces the way its dataset builder stored them (then preprocessed on
the device by ``faujax.data.augment.preprocess`` with ``train=False``). So inference first makes,
from every face of a user's frame, the *stored frame* (``info.image_size`` square, uint8) and its
landmarks in the dataset's scheme (``info.num_landmarks`` points), with the builder's own
alignment (``STORED_ALIGNMENT``):

  'jaanet'       the AU builders (BP4D, DISFA, EmotioNet): ``stored_faces.align_jaanet``, the
                 JAA-Net rule alignment with box enlargement 2.9 and the grey border
                 (docs/reference/face_geometry.md, "JAA-Net alignment").
  'emotion_gcn'  AffectNet: ``stored_faces.align_emotion_gcn``, the Emotion-GCN eye-level
                 rotation and face-box crop (Emotion-GCN sec. IV-B), with the detector's box in
                 place of AffectNet's.
  'eye_level'    imported ME-GraphAU, OpenGraphAU and MACG runs: ``stored_faces.
                 align_eye_level``, the MACG data tool's dlib + imutils aligner (eyes level,
                 0.3 of the width apart, their midpoint at (0.5, 0.35) of the face).
  'template'     datasets distributed already aligned by another tool (RAF-DB / RAF-ML,
                 Aff-Wild2 ``cropped_aligned``, JAFFE) and the synthetic faces: the least-squares
                 similarity (``alignment.umeyama``) that puts the face's five points (eye
                 centres, nose tip, mouth corners) on ``template``, the mean five points of the
                 training faces as stored (``template_from_landmarks``); without stored
                 landmarks the ArcFace five-point template (``FIVE_POINT_TEMPLATE_224``).

Then ``augment.preprocess`` applies the config's own evaluation crop and, with
``config.augment.align='five_point'``, the on-device alignment, exactly as in evaluation.

A dataset record may name another alignment (``DatasetInfo.alignment``: imported runs).

Where faces come from (``--faces``): ``detect`` (dlib's HOG detector and 68-point model, the
``face`` extra, ``faujax.geometry.face_detection``), ``cropped`` (every input already is a
stored-style face crop: its shorter side resized to the stored size and its centre square kept,
torchvision's ``Resize`` + ``CenterCrop``, ``stored_faces.resize_centre_crop``; its landmarks come
from an OpenFace CSV when one is given, else faujax's mean face scaled to the crop,
``mean_face.MEAN_FACE_68``), ``openface_csv`` (landmarks ``x_0..x_67, y_0..y_67`` read from an
OpenFace CSV, ``read_openface_csv``).

Found faces scoring under ``MIN_CONFIDENCE`` or smaller than ``MIN_FACE`` are dropped
(``above_floors``; how the two were chosen: beside them). In a video, ``FaceTracker`` gives each
face an id that follows it from frame to frame by the overlap of its box with the previous ones.

Host-side numpy (and small jitted warps); one face at a time.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from faujax.geometry import alignment
from faujax.geometry import conversions
from faujax.geometry import face_detection
from faujax.geometry import mean_face
from faujax.geometry import stored_faces

FACE_SOURCES = ('detect', 'cropped', 'openface_csv')
ALIGNMENTS = ('jaanet', 'emotion_gcn', 'eye_level', 'template')
# The alignment each dataset builder stores its faces with (see the module docstring).
STORED_ALIGNMENT: dict[str, str] = {
    'bp4d': 'jaanet', 'disfa': 'jaanet', 'emotionet': 'jaanet', 'affectnet': 'emotion_gcn',
    'aff_wild2': 'template', 'raf_ml': 'template', 'raf_db': 'template', 'jaffe': 'template',
    'synthetic_faces': 'template'}


@dataclasses.dataclass(frozen=True)
class FaceBox:
  """A face of a frame: box (x0, y0, x1, y1) and 68 landmarks (x, y) in frame pixels, score."""
  box: np.ndarray
  landmarks: np.ndarray
  confidence: float


@dataclasses.dataclass(frozen=True)
class StoredFace:
  """The face as the dataset stores it: uint8 (S, S, 3) and landmarks (P, 2) in its pixels."""
  image: np.ndarray
  landmarks: np.ndarray


def template_from_landmarks(landmarks: np.ndarray) -> np.ndarray | None:
  """The mean five points (5, 2) of stored (N, P, 2) landmarks (None without usable ones)."""
  lm = np.asarray(landmarks, np.float32)
  if lm.ndim != 3 or lm.shape[1] not in (68, 66, 49) or lm.shape[0] == 0:
    return None
  pts = np.asarray(alignment.five_points(jnp.asarray(lm)))
  keep = np.all(np.isfinite(pts), axis=(1, 2)) & (np.abs(pts).sum(axis=(1, 2)) > 0)
  if not keep.any():
    return None
  return pts[keep].mean(axis=0).astype(np.float32)


def default_template(image_size: int) -> np.ndarray:
  """The ArcFace five-point template scaled to ``image_size`` (no stored landmarks)."""
  return (alignment.FIVE_POINT_TEMPLATE_224 * (image_size / 224.0)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _template_warp(size: int):
  return jax.jit(lambda image, landmarks, template: alignment.align_five_point(
      image, landmarks, size, template))


class Aligner:
  """Frame + ``FaceBox`` -> ``StoredFace`` with the dataset's alignment (module docstring).

  Args:
    image_size: S, the stored side (``info.image_size``).
    num_landmarks: P of the dataset's scheme (68, 66, 49; 0 = the dataset stores none).
    method: one of ``ALIGNMENTS``.
    template: (5, 2) target five points in stored pixels ('template' only; None: ArcFace's).
  """

  def __init__(self, image_size: int, num_landmarks: int, method: str,
               template: np.ndarray | None = None):
    if method not in ALIGNMENTS:
      raise ValueError(f'alignment {method!r}: expected one of {ALIGNMENTS}.')
    self.image_size = int(image_size)
    self.num_landmarks = int(num_landmarks)
    self.method = method
    self.template = (default_template(self.image_size) if template is None
                     else np.asarray(template, np.float32))

  def _scheme(self, landmarks68: np.ndarray) -> np.ndarray:
    if self.num_landmarks == 0:
      return np.zeros((0, 2), np.float32)
    return np.asarray(conversions.convert_landmarks(landmarks68, self.num_landmarks), np.float32)

  def __call__(self, image: np.ndarray, face: FaceBox) -> StoredFace | None:
    """The stored face, or None when the face cannot be aligned (degenerate landmarks)."""
    lm = np.asarray(face.landmarks, np.float32)
    if not np.all(np.isfinite(lm)):
      return None
    s = self.image_size
    try:
      if self.method == 'jaanet':
        stored, lm68 = stored_faces.align_jaanet(image, lm, s)
      elif self.method == 'emotion_gcn':
        x0, y0, x1, y1 = (float(v) for v in face.box)
        stored, lm68 = stored_faces.align_emotion_gcn(image, lm, (x0, y0, x1 - x0, y1 - y0), s)
      elif self.method == 'eye_level':
        stored, lm68 = stored_faces.align_eye_level(image, lm, s)
      else:
        out = _template_warp(s)(np.asarray(image, np.float32) / 255.0, lm, self.template)
        if not bool(out.ok):
          return None
        stored = np.clip(np.rint(np.asarray(out.image) * 255.0), 0, 255).astype(np.uint8)
        lm68 = out.landmarks
    except ValueError:
      return None
    return StoredFace(stored, self._scheme(np.asarray(lm68, np.float32)))


def cropped(image: np.ndarray, image_size: int, num_landmarks: int,
            landmarks: np.ndarray | None = None) -> tuple[StoredFace, FaceBox]:
  """An input that already is a face crop: its shorter side resized to ``image_size`` and its
  centre square (``stored_faces.resize_centre_crop``, torchvision's ``Resize`` + ``CenterCrop``),
  and the square's box in the input's pixels. Its landmarks are ``landmarks`` (68, 2) in the
  input's pixels when given (e.g. from an OpenFace CSV), else the mean face scaled to the crop."""
  crop, scale, offset = stored_faces.resize_centre_crop(image, image_size)
  if landmarks is None:
    lm68 = mean_face.MEAN_FACE_68 * (image_size / float(mean_face.FRAME_SIZE))
    frame_lm = (lm68 + offset) / scale
  else:
    frame_lm = np.asarray(landmarks, np.float32)
    lm68 = frame_lm * scale - offset
  aligner = Aligner(image_size, num_landmarks, 'template')
  stored = StoredFace(crop, aligner._scheme(lm68))  # pylint: disable=protected-access
  x0, y0 = offset / scale
  side = image_size / scale
  box = np.array([x0, y0, x0 + side, y0 + side], np.float32)
  return stored, FaceBox(box, frame_lm.astype(np.float32), 1.0)


def detect(image: np.ndarray, upsample: int | None = None, max_faces: int = 0,
           method: str = '') -> list[FaceBox]:
  """Faces of a frame from dlib (largest first; ``max_faces`` > 0 keeps that many), found as the
  tool of the alignment ``method`` finds them, in ``image``'s pixels: 'eye_level' (MACG's data
  tool) in the grey frame resized to 800 px wide with 2 upsamplings
  (``stored_faces.eye_level_frame``), the others in ``image`` itself with 1. ``upsample``
  overrides the upsampling."""
  scale = 1.0
  if method == 'eye_level':
    frame, scale = stored_faces.eye_level_frame(image)
    image = stored_faces.grey(frame)
    upsample = stored_faces.EYE_LEVEL_UPSAMPLE if upsample is None else upsample
  faces = [FaceBox(f.box / scale, f.landmarks / scale, f.score)
           for f in face_detection.detect_faces(image, 1 if upsample is None else upsample)]
  return faces[:max_faces] if max_faces > 0 else faces


def read_openface_csv(path: str) -> dict[int, list[FaceBox]]:
  """Faces per frame (OpenFace's 1-based ``frame``) of an OpenFace FeatureExtraction CSV.

  Reads ``frame``, ``face_id`` (optional), ``confidence``, ``success`` and the 2-D landmarks
  ``x_0..x_67``, ``y_0..y_67``; rows with ``success`` 0 give no face. The box is the landmarks'
  bounding box. OpenFace writes ", " separators; both forms are read.
  """
  try:
    with open(path, newline='', encoding='utf-8') as f:
      rows = list(csv.DictReader(f, skipinitialspace=True))
  except OSError as e:
    raise ValueError(f'--landmarks_csv {path!r}: cannot read it ({e}).') from None
  if not rows:
    return {}
  names = [f'x_{i}' for i in range(68)] + [f'y_{i}' for i in range(68)]
  missing = [n for n in ['frame'] + names if n not in rows[0]]
  if missing:
    raise ValueError(f'--landmarks_csv {path!r}: an OpenFace CSV needs the columns frame, '
                     f'x_0..x_67, y_0..y_67; missing {missing[:5]}.')
  out: dict[int, list[FaceBox]] = {}
  for line, row in enumerate(rows, start=2):
    try:
      frame = int(float(row['frame']))
      success = float(row.get('success', 1) or 1)
      pts = np.array([[float(row[f'x_{i}']), float(row[f'y_{i}'])] for i in range(68)],
                     np.float32)
      conf = float(row.get('confidence', 1.0) or 1.0)
    except (TypeError, ValueError) as e:
      raise ValueError(f'--landmarks_csv {path!r} line {line}: not a number ({e}).') from None
    faces = out.setdefault(frame, [])
    if success > 0:
      box = np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
      faces.append(FaceBox(box, pts, conf))
  return out


# The floors below which a found face is not passed to the model (``faces_of``; the defaults of
# ``Predictor.predict`` and of ``python -m faujax.predict``'s --min_confidence / --min_face).
# Chosen with dlib's HOG detector on real photos: scikit-image's astronaut and matplotlib's
# grace_hopper, each also scaled down to 0.1-0.75 of its size (upsampling 1 and 2), and the 100
# LFW faces of ``skimage.data.lfw_subset`` (25 px, resized to 100 px):
#   confidence: real faces score 0.45-1.58 with a box side of 22 px or more (0.23 at 18 px), and
#   89 of the 92 LFW faces found score 0.2 or more; the false faces score 0.117 and 0.122 (the
#   mission patch on the astronaut's suit, 89 px, as large as her face: no size floor can drop
#   it) and 0.00 (in the astronaut at half size, upsampled twice). 0.2 drops the false faces and
#   keeps every face of the two photos and 89 of the 92 LFW ones.
#   size: the 68 landmarks found in a scaled-down photo are off those of the full-size one by
#   0.7-6.8% of the eye distance (mean) at a box side of 38 px or more, by 6.2-13.5% at 31 px or
#   less (landmark failure is commonly put at 8-10%). 32 px drops the second.
MIN_CONFIDENCE = 0.2
MIN_FACE = 32


def box_side(face: FaceBox) -> float:
  """The longer side of a face's box, in its frame's pixels."""
  x0, y0, x1, y1 = (float(v) for v in face.box)
  return max(x1 - x0, y1 - y0)


def above_floors(faces: Sequence[FaceBox], min_confidence: float = MIN_CONFIDENCE,
                 min_face: float = MIN_FACE) -> list[FaceBox]:
  """The faces whose detector score is at least ``min_confidence`` and whose box's longer side
  (``box_side``, in the frame's pixels) is at least ``min_face``; their order kept."""
  return [f for f in faces
          if float(f.confidence) >= min_confidence and box_side(f) >= min_face]


def faces_of(source: str, image: np.ndarray, *, upsample: int | None = None,
             max_faces: int = 0, given: Sequence[FaceBox] | None = None,
             method: str = '', min_confidence: float = MIN_CONFIDENCE,
             min_face: float = MIN_FACE) -> list[FaceBox]:
  """The faces of one frame from ``source`` ('detect', as ``detect`` for the alignment
  ``method``, or given ones, 'openface_csv') at or above the floors (``above_floors``), then
  the ``max_faces`` largest (0 = all; the given ones in their order)."""
  if source == 'detect':
    faces = detect(image, upsample, 0, method)
  elif source == 'openface_csv':
    faces = list(given or [])
  else:
    raise ValueError(f'faces {source!r}: expected one of {FACE_SOURCES}.')
  faces = above_floors(faces, min_confidence, min_face)
  return faces[:max_faces] if max_faces > 0 else faces


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  """Intersection over union of two (x0, y0, x1, y1) boxes."""
  w = min(a[2], b[2]) - max(a[0], b[0])
  h = min(a[3], b[3]) - max(a[1], b[1])
  inter = max(w, 0.0) * max(h, 0.0)
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return float(inter / union) if union > 0 else 0.0


class FaceTracker:
  """Face ids that follow each face through a video's frames by its position.

  Call it once per frame, in order, with that frame's faces (an empty list for a frame without
  one): each face takes the id of the face of the previous frames whose last box overlaps its
  box most (intersection over union at least ``min_iou``), matched greedily, largest overlap
  first, one face per id; a face that matches none gets a new id (0, 1, 2, ... in order of
  appearance). An id unseen for more than ``max_gap`` frames is not matched again.

  Args:
    min_iou: the least overlap of the same face in two frames (0.3, as SORT's tracker: a face
      moving a third of its width between frames still overlaps 0.5).
    max_gap: frames a face may be missed (a blink, a turned head: the detector drops it) and
      keep its id; 25 is one second at 25 frames/s.
  """

  def __init__(self, min_iou: float = 0.3, max_gap: int = 25):
    self.min_iou = float(min_iou)
    self.max_gap = int(max_gap)
    self._frame = 0
    self._tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (last box, frame last seen)

  def __call__(self, faces: Sequence[FaceBox]) -> list[int]:
    """The id of each face of the next frame, in ``faces``' order."""
    self._frame += 1
    live = {i: box for i, (box, seen) in self._tracks.items()
            if self._frame - seen <= self.max_gap + 1}
    pairs = sorted(((_iou(np.asarray(f.box, np.float64), box), k, i)
                    for k, f in enumerate(faces) for i, box in live.items()),
                   key=lambda p: (-p[0], p[1], p[2]))
    ids: list[int | None] = [None] * len(faces)
    taken: set[int] = set()
    for overlap, k, i in pairs:
      if overlap < self.min_iou:
        break
      if ids[k] is None and i not in taken:
        ids[k] = i
        taken.add(i)
    next_id = max(self._tracks, default=-1) + 1
    for k, f in enumerate(faces):
      if ids[k] is None:
        ids[k], next_id = next_id, next_id + 1
      self._tracks[ids[k]] = (np.asarray(f.box, np.float64), self._frame)
    return [int(i) for i in ids]


def method_for(info: Any) -> str:
  """The alignment ``info`` names (imported runs), else its dataset's stored one
  (``STORED_ALIGNMENT``; 'template' otherwise)."""
  named = getattr(info, 'alignment', '')
  if named:
    if named not in ALIGNMENTS:
      raise ValueError(f'the dataset record names the alignment {named!r}; faujax has '
                       f'{ALIGNMENTS}.')
    return named
  return STORED_ALIGNMENT.get(getattr(info, 'name', ''), 'template')

"""Inference on users' images and videos: ``Predictor.from_checkpoint(workdir).predict(...)``.

  predictor = faujax.predictor.Predictor.from_checkpoint('/tmp/faujax/default')
  table = predictor.predict(['face.jpg', 'photos/'])      # pandas DataFrame, one row per face
  clip = predictor.predict_video('clip.mp4')

The run is loaded by ``faujax.trained_run.load_run``: the config, label space, parameters,
statistics and model constants all come from the verified checkpoint (nothing is moved or
written), so new models plug in by config and a copied or imported workdir predicts without its
dataset. Every face goes through the dataset's stored alignment (``faujax.faces``) and then the
run's own evaluation step, ``faujax.train.predict_batch`` (``augment.preprocess`` with
``train=False``, the model with ``train=False``, ``task.eval_outputs``): the predictions are the
model's evaluation outputs on those faces. Faces are batched to ``batch_size`` (the last batch
padded, so one compiled program serves every batch); decoding, detection and alignment run in a
background thread while the device runs the model.

Columns (OpenFace's names where OpenFace has the concept): ``input`` (file or ``array:<i>``),
``frame`` (1-based), ``timestamp`` (s), ``face_id`` (in an image 0 = its largest face; in a video
an id that follows one face from frame to frame by its position, ``faces.FaceTracker``: 0 for
the first face seen, a new id for a new face), ``face_x, face_y, face_w, face_h`` (box in input
pixels), ``confidence`` (detector score; 1 for given crops), ``success``
(1 = a face was found and aligned; 0 = a row with only the frame columns), ``x_0..x_67,
y_0..y_67`` (68 landmarks in input pixels), then by task: ``AUxx_p`` (probability) and ``AUxx_c``
(0/1 at ``config.eval.threshold``) per AU; the probability of each expression class (softmax of
``expression_logits``, column = the class name in lower case) and ``valence``, ``arousal``; per
multi-label expression ``<name>`` (probability) and ``<name>_c``.

"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from faujax import config_base
from faujax.data import dataset_info
from faujax import faces as faces_lib
from faujax import metrics as metrics_lib
from faujax import tasks
from faujax import train
from faujax import trained_run

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm',
                    '.pgm')
FRAME_COLUMNS = ('input', 'frame', 'timestamp', 'face_id', 'face_x', 'face_y', 'face_w',
                 'face_h', 'confidence', 'success')
LANDMARK_COLUMNS = tuple(f'x_{i}' for i in range(68)) + tuple(f'y_{i}' for i in range(68))


# ------------------------------------------------------------------------------------------------
# Columns.


def au_column(name: str) -> str:
  """'AU1' -> 'AU01' (OpenFace's AU names); OpenGraphAU's sided 'AUL1' -> 'AUL01'."""
  m = re.fullmatch(r'AU([LR]?)(\d+)', str(name))
  return f'AU{m.group(1)}{int(m.group(2)):02d}' if m else str(name)


def prediction_columns(task: tasks.Task, outputs: dict[str, np.ndarray],
                       threshold: float) -> dict[str, np.ndarray]:
  """Per-example prediction columns (module docstring) of ``task.eval_outputs`` arrays."""
  cols: dict[str, np.ndarray] = {}
  names = task.label_names
  if metrics_lib.AU_PROB in outputs:
    p = np.asarray(outputs[metrics_lib.AU_PROB], np.float64)
    for j, n in enumerate(names):
      cols[f'{au_column(n)}_p'] = p[:, j]
      cols[f'{au_column(n)}_c'] = _decision(p[:, j], threshold, metrics_lib.AU_RULE)
  if metrics_lib.EXPR_SCORE in outputs:
    p = np.asarray(jax.nn.softmax(jnp.asarray(outputs[metrics_lib.EXPR_SCORE], jnp.float32), -1),
                   np.float64)
    for j, n in enumerate(names):
      cols[str(n).lower()] = p[:, j]
  if metrics_lib.VA_PRED in outputs:
    va = np.asarray(outputs[metrics_lib.VA_PRED], np.float64)
    cols['valence'], cols['arousal'] = va[:, 0], va[:, 1]
  if metrics_lib.ML_PROB in outputs:
    p = np.asarray(outputs[metrics_lib.ML_PROB], np.float64)
    for j, n in enumerate(names):
      cols[str(n).lower()] = p[:, j]
      cols[f'{str(n).lower()}_c'] = _decision(p[:, j], threshold, metrics_lib.MULTILABEL_RULE)
  return cols


def _decision(p: np.ndarray, threshold: float, rule: str) -> np.ndarray:
  """1.0 / 0.0 by ``metrics.decide`` (the task's rule, as its metrics decide); NaN where ``p``
  is NaN (no decision)."""
  return np.where(np.isnan(p), np.nan, metrics_lib.decide(p, threshold, rule).astype(np.float64))


# ------------------------------------------------------------------------------------------------
# Work items flowing through the pipeline.


@dataclasses.dataclass
class _Face:
  face_id: int
  box: faces_lib.FaceBox
  stored: faces_lib.StoredFace | None  # None: detected but not alignable


@dataclasses.dataclass
class _Frame:
  input: str
  frame: int
  timestamp: float
  faces: list[_Face]
  image: np.ndarray | None = None  # kept for annotation only


@dataclasses.dataclass
class StageTimes:
  """Seconds spent per stage (decode, detect, align run in the background thread)."""
  decode: float = 0.0
  detect: float = 0.0
  align: float = 0.0
  model: float = 0.0
  frames: int = 0
  faces: int = 0
  wall: float = 0.0

  def rates(self) -> dict[str, float]:
    """Frames (faces for the model) per second of each stage alone, and end to end."""
    per = lambda n, t: n / t if t > 0 else float('inf')
    return {'decode': per(self.frames, self.decode), 'detect': per(self.frames, self.detect),
            'align': per(self.faces, self.align), 'model': per(self.faces, self.model),
            'end_to_end': per(self.frames, self.wall)}


_DONE = object()


def _background(items: Iterator[Any], depth: int = 8) -> Iterator[Any]:
  """Runs the iterator ``items`` in a thread, ``depth`` items ahead; exceptions re-raised here."""
  q: queue.Queue = queue.Queue(maxsize=depth)
  stop = threading.Event()

  def work():
    try:
      for item in items:
        while not stop.is_set():
          try:
            q.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      q.put(_DONE)
    except BaseException as e:  # pylint: disable=broad-except
      q.put(e)

  thread = threading.Thread(target=work, daemon=True)
  thread.start()
  try:
    while True:
      item = q.get()
      if item is _DONE:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()


# ------------------------------------------------------------------------------------------------


def expand_inputs(inputs: Iterable[Any]) -> list[Any]:
  """Paths with folders expanded (recursively, sorted) to their image and video files; arrays
  and other files pass through. A path that does not exist, or a folder without an image or a
  video, raises ValueError naming it."""
  from faujax import video  # pylint: disable=g-import-not-at-top
  out = []
  for x in inputs:
    if isinstance(x, np.ndarray):
      out.append(x)
      continue
    if not isinstance(x, (str, os.PathLike)):
      raise ValueError(f'input {x!r}: expected a path or a uint8 (H, W, 3) array, got '
                       f'{type(x).__name__}.')
    path = os.fspath(x)
    if os.path.isdir(path):
      found = []
      for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
          ext = os.path.splitext(name)[1].lower()
          if ext in IMAGE_EXTENSIONS or video.is_video(name):
            found.append(os.path.join(root, name))
      if not found:
        raise ValueError(f'{path}: the folder holds no image or video (searched recursively for '
                         f'{", ".join(IMAGE_EXTENSIONS + video.VIDEO_EXTENSIONS)}).')
      out.extend(found)
    elif not os.path.exists(path):
      raise ValueError(f'{path}: no such file or folder.')
    else:
      out.append(path)
  return out


# Transparent pixels are composited onto white, as image viewers and web pages show them.
_BACKGROUND = (255, 255, 255)
# The bit ranges a high-depth grey image (PIL modes I;16*, I, F) is read in: the smallest that
# holds every value (an 8-bit image stored in 16 bits reads back exactly; a 16-bit image maps
# 65535 to 255), floats in [0, 1] first. Values in none: the image's own min..max.
_INT_RANGES = (255.0, 65535.0)
_FLOAT_RANGES = (1.0, 255.0, 65535.0)


def _grey_to_uint8(values: np.ndarray, ranges: Sequence[float]) -> np.ndarray:
  """(H, W) grey values of any depth -> uint8, scaled by their range (``_INT_RANGES``)."""
  a = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
  lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
  top = next((r for r in ranges if lo >= 0 and hi <= r), None)
  if top is None:
    a, top = a - lo, max(hi - lo, 1e-12)
  return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)


def image_to_rgb(im: Any) -> np.ndarray:
  """(H, W, 3) uint8 RGB of a PIL image of any mode.

  1, L, P, RGB, CMYK, YCbCr, HSV, LAB: PIL's conversion. With an alpha channel or a transparent
  colour (RGBA, LA, PA, a P or L with ``transparency``): composited onto white (``_BACKGROUND``).
  I;16, I;16B, I (16- or 32-bit integers, e.g. a 16-bit grey PNG) and F (floats): scaled by
  their range onto 0..255 (``_INT_RANGES`` / ``_FLOAT_RANGES``), not clipped.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  mode = im.mode
  if mode.startswith('I') or mode == 'F':
    grey = _grey_to_uint8(np.asarray(im), _FLOAT_RANGES if mode == 'F' else _INT_RANGES)
    return np.repeat(grey[..., None], 3, -1)
  if mode in ('RGBA', 'RGBa', 'LA', 'La', 'PA') or 'transparency' in im.info:
    rgba = im.convert('RGBA')
    canvas = Image.new('RGBA', rgba.size, _BACKGROUND + (255,))
    return np.asarray(Image.alpha_composite(canvas, rgba).convert('RGB'))
  return np.asarray(im.convert('RGB'))


def read_image(path: str) -> np.ndarray:
  """(H, W, 3) uint8 RGB of an image file (``image_to_rgb``: any PIL mode, 16-bit included);
  ValueError naming the file otherwise."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise ValueError(f'{path}: no such file or folder.')
  try:
    with Image.open(path) as im:
      return image_to_rgb(im)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: cannot read it as an image ({type(e).__name__}: {e}).') from None


class Predictor:
  """A trained faujax model with its run's evaluation preprocessing (see the module docstring).

  Args:
    run: the loaded run (``faujax.trained_run.load_run``).
    batch_size: faces per device batch.
  """

  def __init__(self, run: trained_run.TrainedRun, *, batch_size: int = 32):
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f'batch_size: expected an int >= 1, got {batch_size!r}.')
    self.run = run
    self.config, self.info, self.task = run.config, run.info, run.task
    self.variables = run.variables
    self.batch_size = batch_size
    self.checkpoint = run.path
    self.threshold = float(config_base.config_sections(run.config)['eval'].threshold)
    self.aug_config = run.aug_config
    method = faces_lib.method_for(run.info)
    self.aligner = faces_lib.Aligner(run.info.image_size, run.info.num_landmarks, method,
                                     run.face_template if method == 'template' else None)
    self._eval = jax.jit(lambda v, b: train.predict_batch(run.apply_fn, v, b, task=run.task,
                                                          aug_config=run.aug_config))
    self.times = StageTimes()
    self._columns: list[str] | None = None
    self.skipped: list[tuple[str, str]] = []

  # ---------------------------------------------------------------------------------------------
  @classmethod
  def from_checkpoint(cls, path: str, *, which: str | int = 'best',
                      batch_size: int = 32) -> 'Predictor':
    """The model of a training (or imported) run's workdir.

    Args:
      path: the workdir, or one checkpoint's step directory inside it
        (``workdir/checkpoints/<step>`` or ``workdir/best/<step>``: that checkpoint, whatever
        ``which`` says).
      which: 'best' (the best-by-validation checkpoint, else the newest periodic one), 'latest'
        (the newest periodic one), or a step (an int, or its digits: that periodic checkpoint,
        else the best one if it is of that step).
      batch_size: faces per batch.
    """
    return cls(trained_run.load_run(path, which), batch_size=batch_size)

  # ---------------------------------------------------------------------------------------------
  def evaluate_faces(self, stored: Sequence[faces_lib.StoredFace]) -> dict[str, np.ndarray]:
    """The task's evaluation outputs (``task.eval_outputs``) of stored faces, in batches of
    ``batch_size`` (the last one padded)."""
    outs: list[dict[str, np.ndarray]] = []
    for start in range(0, len(stored), self.batch_size):
      chunk = stored[start:start + self.batch_size]
      batch = dataset_info.dummy_batch(self.info, self.batch_size)
      for i, face in enumerate(chunk):
        batch['image'][i] = face.image
        batch['landmarks'][i] = face.landmarks
      batch['valid'][len(chunk):] = 0
      t0 = time.perf_counter()
      out = jax.device_get(self._eval(self.variables, batch))
      self.times.model += time.perf_counter() - t0
      outs.append({k: np.asarray(v)[:len(chunk)] for k, v in out.items()})
    if not outs:
      return {}
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

  def _faces_of_frame(self, name: str, frame: int, timestamp: float, image: np.ndarray,
                      faces: str, given: Sequence[faces_lib.FaceBox] | None,
                      upsample: int | None, max_faces: int, keep_image: bool,
                      floors: tuple[float, float],
                      tracker: faces_lib.FaceTracker | None = None) -> _Frame:
    """The faces of one frame (``faces_lib.faces_of``; ``floors`` = (min_confidence, min_face))
    aligned; ids by size (0 = largest) or, with ``tracker``, following the video's faces."""
    if faces == 'cropped':
      t0 = time.perf_counter()
      lm = given[0].landmarks if given else None
      stored, box = faces_lib.cropped(image, self.info.image_size, self.info.num_landmarks, lm)
      self.times.align += time.perf_counter() - t0
      found = [_Face(0, box, stored)]
    else:
      t0 = time.perf_counter()
      boxes = faces_lib.faces_of(faces, image, upsample=upsample, max_faces=max_faces,
                                 given=given, method=self.aligner.method,
                                 min_confidence=floors[0], min_face=floors[1])
      t1 = time.perf_counter()
      ids = tracker(boxes) if tracker is not None else range(len(boxes))
      found = sorted((_Face(i, b, self.aligner(image, b)) for i, b in zip(ids, boxes)),
                     key=lambda f: f.face_id)
      self.times.detect += t1 - t0
      self.times.align += time.perf_counter() - t1
    return _Frame(name, frame, timestamp, found, image if keep_image else None)

  def _run(self, frames: Iterator[_Frame], on_frame: Callable[[_Frame, list[dict]], None] | None,
           progress: Any = None) -> list[dict[str, Any]]:
    """Batches the faces of ``frames`` (a background iterator) through the model -> rows."""
    rows: list[dict[str, Any]] = []
    pending: list[tuple[_Frame, list[dict[str, Any]]]] = []
    queue_faces: list[tuple[dict[str, Any], faces_lib.StoredFace]] = []

    def flush():
      nonlocal pending, queue_faces
      if queue_faces:
        outputs = self.evaluate_faces([s for _, s in queue_faces])
        cols = prediction_columns(self.task, outputs, self.threshold)
        for i, (row, _) in enumerate(queue_faces):
          row.update({k: v[i] for k, v in cols.items()})
        queue_faces = []
      for frame, frame_rows in pending:
        rows.extend(frame_rows)
        if on_frame is not None:
          on_frame(frame, frame_rows)
      pending = []

    for frame in frames:
      frame_rows = _frame_rows(frame)
      for row, face in zip(frame_rows, frame.faces or []):
        if face.stored is not None:
          queue_faces.append((row, face.stored))
      pending.append((frame, frame_rows))
      self.times.frames += 1
      self.times.faces += sum(f.stored is not None for f in frame.faces)
      if progress is not None:
        progress.update(1)
      if len(queue_faces) >= self.batch_size:
        flush()
    flush()
    return rows

  # ---------------------------------------------------------------------------------------------
  def predict(self, images_or_paths: Any, *, faces: str = 'detect',
              upsample: int | None = None,
              max_faces: int = 0, landmarks: dict[int, list[faces_lib.FaceBox]] | None = None,
              min_confidence: float = faces_lib.MIN_CONFIDENCE,
              min_face: float = faces_lib.MIN_FACE,
              on_frame: Callable[[_Frame, list[dict]], None] | None = None,
              keep_images: bool = False, progress: Any = None):
    """One row per face of each image (a row with ``success`` 0 for an image without one).

    Args:
      images_or_paths: an image path, a folder (searched recursively), a uint8 (H, W, 3) array,
        or a sequence of them. A path that does not exist, or a folder without an image or a
        video, raises ValueError (``expand_inputs``); unreadable files are skipped and listed in
        ``self.skipped`` and in the DataFrame's ``attrs['skipped']``.
      faces: 'detect' (dlib), 'cropped' (inputs are face crops; their landmarks from
        ``landmarks`` when given, else the mean face) or 'openface_csv' (with ``landmarks``).
      landmarks: faces per 1-based input index (``faces.read_openface_csv``).
      upsample: dlib detector upsampling (None: the alignment's tool's, ``faces.detect``).
      max_faces: keep at most this many faces per image (largest first; 0 = all).
      min_confidence: faces found (``detect`` / ``openface_csv``) with a lower detector score
        are not passed to the model (``faces.MIN_CONFIDENCE``: how it was chosen).
      min_face: nor are faces whose box's longer side is shorter, in the input's pixels
        (``faces.MIN_FACE``). Neither applies to ``cropped`` inputs.
      on_frame: called with each frame and its rows once predicted (annotation).
      keep_images: keep each frame's pixels for ``on_frame``.
      progress: a tqdm-like object whose ``update(1)`` is called per image.

    Returns:
      pandas DataFrame with the module docstring's columns.
    """
    self._check_faces(faces, landmarks)
    if isinstance(images_or_paths, (str, os.PathLike, np.ndarray)):
      images_or_paths = [images_or_paths]
    items = expand_inputs(images_or_paths)
    skipped_before = len(self.skipped)
    start = time.perf_counter()

    def produce():
      for k, item in enumerate(items, start=1):
        t0 = time.perf_counter()
        if isinstance(item, np.ndarray):
          name, image = f'array:{k - 1}', _as_rgb(item, f'array {k - 1}')
        else:
          name = str(item)
          try:
            image = read_image(name)
          except ValueError as e:
            self.skipped.append((name, str(e).removeprefix(f'{name}: ')))
            continue
        self.times.decode += time.perf_counter() - t0
        given = (landmarks or {}).get(k, [])
        yield self._faces_of_frame(name, k, 0.0, image, faces, given, upsample, max_faces,
                                   keep_images, (min_confidence, min_face))

    rows = self._run(_background(produce()), on_frame, progress)
    self.times.wall += time.perf_counter() - start
    return self._table(rows, self.skipped[skipped_before:])

  def predict_video(self, path: str, *, faces: str = 'detect', upsample: int | None = None,
                    max_faces: int = 0,
                    landmarks: dict[int, list[faces_lib.FaceBox]] | None = None,
                    min_confidence: float = faces_lib.MIN_CONFIDENCE,
                    min_face: float = faces_lib.MIN_FACE,
                    on_frame: Callable[[_Frame, list[dict]], None] | None = None,
                    keep_images: bool = False, progress: Any = None):
    """One row per face per frame of a video (arguments as ``predict``; ``landmarks`` is keyed
    by OpenFace's 1-based frame number). ``face_id`` follows each face from frame to frame by
    its position (``faces.FaceTracker``). A video that fails to decode part-way, or yields fewer
    frames than its container lists (``video.read_frames``), keeps the rows of the frames read
    and is listed in ``attrs['skipped']`` with their number."""
    from faujax import video  # pylint: disable=g-import-not-at-top
    self._check_faces(faces, landmarks)
    skipped_before = len(self.skipped)
    start = time.perf_counter()

    def produce():
      frames = video.read_frames(path)
      tracker = faces_lib.FaceTracker()
      while True:
        t0 = time.perf_counter()
        try:
          n, t, image = next(frames)
        except StopIteration:
          return
        except ValueError as e:
          self.skipped.append((path, str(e).removeprefix(f'{path}: ')))
          return
        self.times.decode += time.perf_counter() - t0
        yield self._faces_of_frame(path, n, t, image, faces, (landmarks or {}).get(n, []),
                                   upsample, max_faces, keep_images, (min_confidence, min_face),
                                   tracker)

    rows = self._run(_background(produce()), on_frame, progress)
    self.times.wall += time.perf_counter() - start
    return self._table(rows, self.skipped[skipped_before:])

  # ---------------------------------------------------------------------------------------------
  def _check_faces(self, faces: str, landmarks) -> None:
    if faces not in faces_lib.FACE_SOURCES:
      raise ValueError(f'faces {faces!r}: expected one of {faces_lib.FACE_SOURCES}.')
    if faces == 'openface_csv' and landmarks is None:
      raise ValueError("faces='openface_csv' needs landmarks (faces.read_openface_csv(path)).")

  def columns(self) -> list[str]:
    """Every column of this model's tables, in order."""
    if self._columns is None:
      self._columns = self._make_columns()
    return self._columns

  def _make_columns(self) -> list[str]:
    shapes = jax.eval_shape(self._eval, self.variables, dataset_info.dummy_batch(self.info, 1))
    dummy = {k: np.zeros(v.shape, v.dtype) for k, v in shapes.items()}
    return (list(FRAME_COLUMNS) + list(LANDMARK_COLUMNS)
            + list(prediction_columns(self.task, dummy, self.threshold)))

  def _table(self, rows: list[dict[str, Any]], skipped: list[tuple[str, str]]):
    import pandas as pd  # pylint: disable=g-import-not-at-top
    cols = self.columns()
    table = pd.DataFrame.from_records(rows, columns=cols)
    for c in ('frame', 'face_id', 'success'):
      table[c] = table[c].astype('int64')
    for c in cols:
      if c.endswith('_c'):
        table[c] = table[c].astype('Int64')  # missing (no face) stays <NA>
    table.attrs['skipped'] = list(skipped)
    return table


def _frame_rows(frame: _Frame) -> list[dict[str, Any]]:
  base = {'input': frame.input, 'frame': frame.frame, 'timestamp': frame.timestamp}
  rows = []
  for face in frame.faces:
    if face.stored is None:
      continue
    x0, y0, x1, y1 = (float(v) for v in face.box.box)
    row = {**base, 'face_id': face.face_id, 'face_x': x0, 'face_y': y0, 'face_w': x1 - x0,
           'face_h': y1 - y0, 'confidence': float(face.box.confidence), 'success': 1}
    lm = np.asarray(face.box.landmarks, np.float64)
    row.update({f'x_{i}': lm[i, 0] for i in range(68)})
    row.update({f'y_{i}': lm[i, 1] for i in range(68)})
    rows.append(row)
  if not rows:
    rows.append({**base, 'face_id': 0, 'success': 0})
  return rows


def _as_rgb(array: np.ndarray, where: str) -> np.ndarray:
  a = np.asarray(array)
  if a.ndim == 2:
    a = np.repeat(a[..., None], 3, -1)
  if a.ndim != 3 or a.shape[-1] not in (3, 4):
    raise ValueError(f'{where}: expected an (H, W, 3) RGB image, got shape {a.shape}.')
  if a.dtype != np.uint8:
    raise ValueError(f'{where}: expected uint8 pixels, got {a.dtype}.')
  return np.ascontiguousarray(a[..., :3])

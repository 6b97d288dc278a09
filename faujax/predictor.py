"""Inference on users' images and videos: ``Predictor.from_checkpoint(workdir).predict(...)``.

  predictor = faujax.predictor.Predictor.from_checkpoint('/tmp/faujax/default')
  table = predictor.predict(['face.jpg', 'photos/'])      # pandas DataFrame, one row per face
  clip = predictor.predict_video('clip.mp4')

The run's config (``workdir/config.json``, written by training) travels with the checkpoint; the
model, the task and the evaluation preprocessing are rebuilt from it, and the arrays are restored
with ``faujax.checkpoint.Checkpointer`` (verified: checksums, tree, finite values), so new models
plug in by config. Every face goes through the dataset's stored alignment (``faujax.faces``) and
then the run's own evaluation step, ``faujax.train.eval_step`` (``augment.preprocess`` with
``train=False``, the model with ``train=False``, ``task.eval_outputs``): the predictions are the
model's evaluation outputs on those faces. Faces are batched to ``batch_size`` (the last batch
padded, so one compiled program serves every batch); decoding, detection and alignment run in a
background thread while the device runs the model.

Columns (OpenFace's names where OpenFace has the concept): ``input`` (file or ``array:<i>``),
``frame`` (1-based), ``timestamp`` (s), ``face_id`` (0 = largest face), ``face_x, face_y, face_w,
face_h`` (box in input pixels), ``confidence`` (detector score; 1 for given crops), ``success``
(1 = a face was found and aligned; 0 = a row with only the frame columns), ``x_0..x_67,
y_0..y_67`` (68 landmarks in input pixels), then by task: ``AUxx_p`` (probability) and ``AUxx_c``
(0/1 at ``config.eval.threshold``) per AU; the probability of each expression class (softmax of
``expression_logits``, column = the class name in lower case) and ``valence``, ``arousal``; per
multi-label expression ``<name>`` (probability) and ``<name>_c``.

The dataset's label space: ``workdir/dataset_info.json`` (+ ``train_labels.npz``,
``faujax.stored_info``; training and the checkpoint importer write them, so a workdir predicts
without its dataset) when present, else the configured dataset
(``input_pipeline.get_dataset_info``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from faujax import checkpoint as ckpt_lib
from faujax import faces as faces_lib
from faujax import metrics as metrics_lib
from faujax import stored_info
from faujax import tasks
from faujax import train
from faujax.data import input_pipeline

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm',
                    '.pgm')
FRAME_COLUMNS = ('input', 'frame', 'timestamp', 'face_id', 'face_x', 'face_y', 'face_w',
                 'face_h', 'confidence', 'success')
LANDMARK_COLUMNS = tuple(f'x_{i}' for i in range(68)) + tuple(f'y_{i}' for i in range(68))


# ------------------------------------------------------------------------------------------------
# Columns.


def au_column(name: str) -> str:
  """'AU1' -> 'AU01' (OpenFace's AU names)."""
  m = re.fullmatch(r'AU(\d+)', str(name))
  return f'AU{int(m.group(1)):02d}' if m else str(name)


def prediction_columns(task: tasks.Task, outputs: dict[str, np.ndarray],
                       threshold: float) -> dict[str, np.ndarray]:
  """Per-example prediction columns (module docstring) of ``task.eval_outputs`` arrays."""
  cols: dict[str, np.ndarray] = {}
  names = task.label_names
  if metrics_lib.AU_PROB in outputs:
    p = np.asarray(outputs[metrics_lib.AU_PROB], np.float64)
    for j, n in enumerate(names):
      cols[f'{au_column(n)}_p'] = p[:, j]
      cols[f'{au_column(n)}_c'] = _decision(p[:, j], threshold)
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
      cols[f'{str(n).lower()}_c'] = _decision(p[:, j], threshold)
  return cols


def _decision(p: np.ndarray, threshold: float) -> np.ndarray:
  """1.0 / 0.0 where ``p`` >= / < ``threshold``; NaN where ``p`` is NaN (no decision)."""
  return np.where(np.isnan(p), np.nan, (p >= threshold).astype(np.float64))


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
  and other paths pass through."""
  from faujax import video  # pylint: disable=g-import-not-at-top
  out = []
  for x in inputs:
    if isinstance(x, (str, os.PathLike)) and os.path.isdir(x):
      for root, dirs, files in os.walk(x):
        dirs.sort()
        for name in sorted(files):
          ext = os.path.splitext(name)[1].lower()
          if ext in IMAGE_EXTENSIONS or video.is_video(name):
            out.append(os.path.join(root, name))
    else:
      out.append(os.fspath(x) if isinstance(x, os.PathLike) else x)
  return out


def read_image(path: str) -> np.ndarray:
  """(H, W, 3) uint8 RGB of an image file; ValueError naming the file otherwise."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: cannot read it as an image ({type(e).__name__}: {e}).') from None


class Predictor:
  """A trained faujax model with its run's evaluation preprocessing (see the module docstring).

  Args:
    config: the run's (resolved) config.
    info: the dataset's label space.
    state: a ``train.TrainState`` with the trained arrays.
    batch_size: faces per device batch.
    template: stored-face five-point template ('template' alignment; None: from the dataset).
  """

  def __init__(self, config: ml_collections.ConfigDict, info: input_pipeline.DatasetInfo,
               state: train.TrainState, *, batch_size: int = 32,
               template: np.ndarray | None = None, checkpoint: str = ''):
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f'batch_size: expected an int >= 1, got {batch_size!r}.')
    sections = train._sections(config)  # pylint: disable=protected-access
    self.config, self.info, self.state = config, info, state
    self.batch_size = batch_size
    self.checkpoint = checkpoint
    self.threshold = float(sections['eval'].threshold)
    self.task = tasks.build(info, sections['loss'], threshold=self.threshold)
    self.aug_config = sections['augment']
    if template is None and faces_lib.method_for(info) == 'template':
      template = faces_lib.template_from_landmarks(
          stored_info.labels_to_store(info).get('landmarks', np.zeros((0, 0, 2))))
    self.aligner = faces_lib.Aligner(info.image_size, info.num_landmarks,
                                     faces_lib.method_for(info), template)
    self._eval = jax.jit(lambda s, b: train.eval_step(s, b, task=self.task,
                                                      aug_config=self.aug_config))
    self.times = StageTimes()
    self._columns: list[str] | None = None
    self.skipped: list[tuple[str, str]] = []

  # ---------------------------------------------------------------------------------------------
  @classmethod
  def from_checkpoint(cls, path: str, *, which: str | int = 'best', batch_size: int = 32,
                      data_dir: str | None = None) -> 'Predictor':
    """The model of a training (or imported) run's workdir.

    Args:
      path: the workdir (holding ``config.json``), or one checkpoint's step directory inside it
        (``workdir/checkpoints/<step>`` or ``workdir/best/<step>``: that checkpoint, whatever
        ``which`` says).
      which: 'best' (the best-by-validation checkpoint, else the newest periodic one), 'latest'
        (the newest periodic one), or a step (an int, or its digits: that periodic checkpoint,
        else the best one if it is of that step).
      batch_size: faces per batch.
      data_dir: tfds data directory of the configured dataset (when the workdir holds no
        ``dataset_info.json``).
    """
    workdir, step_dir = _workdir_of(path)
    step = _step_of(which) if step_dir is None else step_dir[1]
    with open(os.path.join(workdir, ckpt_lib.CONFIG_FILE), encoding='utf-8') as f:
      config = train.resolve_config(ml_collections.ConfigDict(json.load(f)))
    stored = stored_info.load(workdir)
    template = None
    if stored is not None:
      info, template = stored
    else:
      data = config.data
      if data_dir is not None:
        data = ml_collections.ConfigDict(config.data.to_dict())
        data.data_dir = data_dir
      info = input_pipeline.get_dataset_info(data)
    sections = train._sections(config)  # pylint: disable=protected-access
    task = tasks.build(info, sections['loss'], threshold=sections['eval'].threshold)
    state, _ = train.create_train_state(jax.random.key(0), config, info, steps_per_epoch=1,
                                        total_steps=1)
    target = jax.device_get(state.to_host())
    checkpointer = ckpt_lib.Checkpointer(workdir, config, best_metric=task.selection_metric)
    try:
      restored, where = None, ''
      if step is not None:
        best = step_dir[0] == 'best' if step_dir is not None else (
            step not in checkpointer.periodic_steps and step in checkpointer.best_steps)
        restored = checkpointer.restore_step(step, target, best=best)
        restored, where = restored.state, restored.path
      elif which == 'best':
        best = checkpointer.restore_best(target)
        if best is not None:
          restored, where = best[0], f'{workdir}/best/{best[1]}'
      if restored is None:
        latest = checkpointer.restore_latest(target)
        if latest is None:
          raise ckpt_lib.CheckpointError(f'{workdir} holds no checkpoint to predict with.')
        restored, where = latest.state, latest.path
    finally:
      checkpointer.close()
    state = state.replace_from_host(jax.tree.map(jnp.asarray, restored))
    return cls(config, info, state, batch_size=batch_size, template=template, checkpoint=where)

  # ---------------------------------------------------------------------------------------------
  def evaluate_faces(self, stored: Sequence[faces_lib.StoredFace]) -> dict[str, np.ndarray]:
    """The task's evaluation outputs (``task.eval_outputs``) of stored faces, in batches of
    ``batch_size`` (the last one padded)."""
    outs: list[dict[str, np.ndarray]] = []
    for start in range(0, len(stored), self.batch_size):
      chunk = stored[start:start + self.batch_size]
      batch = train.dummy_batch(self.info, self.batch_size)
      for i, face in enumerate(chunk):
        batch['image'][i] = face.image
        batch['landmarks'][i] = face.landmarks
      batch['valid'][len(chunk):] = 0
      t0 = time.perf_counter()
      out = jax.device_get(self._eval(self.state, batch))
      self.times.model += time.perf_counter() - t0
      outs.append({k: np.asarray(v)[:len(chunk)] for k, v in out.items()})
    if not outs:
      return {}
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

  def _faces_of_frame(self, name: str, frame: int, timestamp: float, image: np.ndarray,
                      faces: str, given: Sequence[faces_lib.FaceBox] | None, upsample: int,
                      max_faces: int, keep_image: bool) -> _Frame:
    if faces == 'cropped':
      t0 = time.perf_counter()
      lm = given[0].landmarks if given else None
      stored, box = faces_lib.cropped(image, self.info.image_size, self.info.num_landmarks, lm)
      self.times.align += time.perf_counter() - t0
      found = [_Face(0, box, stored)]
    else:
      t0 = time.perf_counter()
      boxes = faces_lib.faces_of(faces, image, upsample=upsample, max_faces=max_faces,
                                 given=given)
      t1 = time.perf_counter()
      found = [_Face(i, b, self.aligner(image, b)) for i, b in enumerate(boxes)]
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
  def predict(self, images_or_paths: Any, *, faces: str = 'detect', upsample: int = 1,
              max_faces: int = 0, landmarks: dict[int, list[faces_lib.FaceBox]] | None = None,
              on_frame: Callable[[_Frame, list[dict]], None] | None = None,
              keep_images: bool = False, progress: Any = None):
    """One row per face of each image (a row with ``success`` 0 for an image without one).

    Args:
      images_or_paths: an image path, a folder (searched recursively), a uint8 (H, W, 3) array,
        or a sequence of them. Unreadable files are skipped and listed in ``self.skipped`` and in
        the DataFrame's ``attrs['skipped']``.
      faces: 'detect' (dlib), 'cropped' (inputs are face crops; their landmarks from
        ``landmarks`` when given, else the mean face) or 'openface_csv' (with ``landmarks``).
      landmarks: faces per 1-based input index (``faces.read_openface_csv``).
      upsample: dlib detector upsampling.
      max_faces: keep at most this many faces per image (largest first; 0 = all).
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
                                   keep_images)

    rows = self._run(_background(produce()), on_frame, progress)
    self.times.wall += time.perf_counter() - start
    return self._table(rows, self.skipped[skipped_before:])

  def predict_video(self, path: str, *, faces: str = 'detect', upsample: int = 1,
                    max_faces: int = 0,
                    landmarks: dict[int, list[faces_lib.FaceBox]] | None = None,
                    on_frame: Callable[[_Frame, list[dict]], None] | None = None,
                    keep_images: bool = False, progress: Any = None):
    """One row per face per frame of a video (arguments as ``predict``; ``landmarks`` is keyed
    by OpenFace's 1-based frame number). A video that fails to decode part-way keeps the rows of
    the frames before and is listed in ``attrs['skipped']``."""
    from faujax import video  # pylint: disable=g-import-not-at-top
    self._check_faces(faces, landmarks)
    skipped_before = len(self.skipped)
    start = time.perf_counter()

    def produce():
      frames = video.read_frames(path)
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
                                   upsample, max_faces, keep_images)

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
    shapes = jax.eval_shape(self._eval, self.state, train.dummy_batch(self.info, 1))
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


def _step_of(which: str | int) -> int | None:
  """None for 'best' / 'latest', else the step that ``which`` names."""
  if which in ('best', 'latest'):
    return None
  if isinstance(which, (int, np.integer)) and not isinstance(which, bool) and which >= 0:
    return int(which)
  if isinstance(which, str) and which.isdigit():
    return int(which)
  raise ValueError(f"which: expected 'best', 'latest' or a step (an int >= 0), got {which!r}.")


def _workdir_of(path: str) -> tuple[str, tuple[str, int] | None]:
  """(workdir, None) when ``path`` holds config.json; (workdir, (kind, step)) when ``path`` is a
  step directory ``workdir/{checkpoints,best}/<step>``."""
  p = os.path.abspath(path)
  if os.path.exists(os.path.join(p, ckpt_lib.CONFIG_FILE)):
    return p, None
  parent, name = os.path.split(p)
  workdir, kind = os.path.split(parent)
  if (name.isdigit() and kind in ('checkpoints', 'best')
      and os.path.exists(os.path.join(workdir, ckpt_lib.CONFIG_FILE))):
    return workdir, ('best' if kind == 'best' else 'periodic', int(name))
  raise ckpt_lib.CheckpointError(
      f'{path}: not a faujax workdir (no {ckpt_lib.CONFIG_FILE} in it or above it); expected the '
      '--workdir of a training run or of python -m faujax.tools.import_checkpoint.')

"""Video files: decode frames (with their timestamps) and encode MP4s, with PyAV (the ``video``
extra, ``pip install 'faujax[video]'``; FFmpeg's libraries ship inside its wheels).

Imported lazily by ``faujax.predict`` / ``faujax.predictor``: importing this module never fails;
reading a video without PyAV raises ``VideoExtraMissing`` naming the install command.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Iterator

import numpy as np

INSTALL_HINT = "pip install 'faujax[video]'  (PyAV)"
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')


class VideoExtraMissing(ImportError):
  """PyAV is not installed."""


def _av():
  try:
    return importlib.import_module('av')
  except ImportError as e:
    raise VideoExtraMissing(f'reading or writing videos needs PyAV; {INSTALL_HINT}.') from e


def is_video(path: str) -> bool:
  return isinstance(path, str) and os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Frames per second, frame count (0 when the container does not say) and (width, height)."""
  fps: float
  num_frames: int
  size: tuple[int, int]


def probe(path: str) -> VideoInfo:
  """The ``VideoInfo`` of a video file (ValueError naming the file when it cannot be opened)."""
  av = _av()
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ValueError(f'{path}: no video stream.')
      stream = container.streams.video[0]
      fps = float(stream.average_rate or stream.guessed_rate or 0.0)
      return VideoInfo(fps=fps, num_frames=int(stream.frames or 0),
                       size=(int(stream.width), int(stream.height)))
  except av.error.FFmpegError as e:
    raise ValueError(f'{path}: cannot open it as a video ({e}).') from None


def read_frames(path: str) -> Iterator[tuple[int, float, np.ndarray]]:
  """(1-based frame number, timestamp in seconds, uint8 (H, W, 3) RGB) of every frame.

  The timestamp is the frame's presentation time (frame number / fps when the stream has none).
  A file that cannot be decoded raises ValueError naming it (frames before the damage are
  yielded first).
  """
  av = _av()
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError) as e:
    raise ValueError(f'{path}: cannot open it as a video ({e}).') from None
  with container:
    if not container.streams.video:
      raise ValueError(f'{path}: no video stream.')
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    fps = float(stream.average_rate or 0.0) or 25.0
    n = 0
    try:
      for frame in container.decode(stream):
        n += 1
        t = float(frame.time) if frame.time is not None else (n - 1) / fps
        yield n, t, frame.to_ndarray(format='rgb24')
    except av.error.FFmpegError as e:
      raise ValueError(f'{path}: decoding failed after {n} frames ({e}).') from None


class VideoWriter:
  """Writes uint8 (H, W, 3) RGB frames to an H.264 MP4 (odd sizes padded to even)."""

  def __init__(self, path: str, fps: float, codec: str = 'libx264'):
    av = _av()
    self._container = av.open(path, mode='w')
    self._stream = None
    self._fps = max(round(float(fps) or 25.0), 1)
    self._codec = codec

  def write(self, frame: np.ndarray) -> None:
    av = _av()
    frame = np.asarray(frame, np.uint8)
    h, w = frame.shape[:2]
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
      frame = np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)))
    if self._stream is None:
      self._stream = self._container.add_stream(self._codec, rate=self._fps)
      self._stream.width, self._stream.height = pw, ph
      self._stream.pix_fmt = 'yuv420p'
    for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
      self._container.mux(packet)

  def close(self) -> None:
    if self._stream is not None:
      for packet in self._stream.encode():
        self._container.mux(packet)
    self._container.close()

  def __enter__(self) -> 'VideoWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

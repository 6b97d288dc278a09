"""Video files: decode frames (with their timestamps) and encode MP4s, with PyAV (the ``video``
extra, ``pip install 'faujax[video]'``; FFmpeg's libraries ship inside its wheels).

Imported lazily by ``faujax.predict`` / ``faujax.predictor``: importing this module never fails;
reading a video without PyAV raises ``VideoExtraMissing`` naming the install command.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
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


def _reason(error: Exception) -> str:
  """An FFmpeg error's message without the file name PyAV appends (the caller names the file
  once)."""
  return getattr(error, 'strerror', None) or str(error)


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
  except (av.error.FFmpegError, OSError) as e:
    raise ValueError(f'{path}: cannot open it as a video ({_reason(e)}).') from None


def _listed_duration(container, stream) -> tuple[float, bool]:
  """Seconds of video the container lists, and whether they are the video stream's own: the
  stream's duration, else its Matroska ``DURATION`` tag (HH:MM:SS.fraction), else the
  container's (which may include a longer audio track); (0, False) when it lists none."""
  if stream.duration is not None and stream.time_base is not None:
    return float(stream.duration * stream.time_base), True
  tag = re.fullmatch(r'(\d+):(\d+):(\d+(?:\.\d*)?)', str(stream.metadata.get('DURATION', '')))
  if tag:
    return int(tag[1]) * 3600 + int(tag[2]) * 60 + float(tag[3]), True
  return float(container.duration or 0) / 1e6, False  # microseconds (FFmpeg's AV_TIME_BASE)


# A container that lists no frame count (Matroska, WebM) is damaged when its last decoded frame
# ends before the duration it lists by more than: 2 frames of the video stream's own duration,
# or this many seconds of the container's (an audio track may outlast the video a little).
CONTAINER_SLACK_S = 1.0


def read_frames(path: str) -> Iterator[tuple[int, float, np.ndarray]]:
  """(1-based frame number, timestamp in seconds, uint8 (H, W, 3) RGB) of every frame.

  The timestamp is the frame's presentation time (frame number / fps when the stream has none).
  A file that cannot be opened or decoded raises ValueError naming it once, with the number of
  frames read (the frames before the damage are yielded first). A truncated file is one too:
  FFmpeg's threaded decoding drops the error of a stream cut short (e.g. an MP4 with its index
  at the front), so the frames decoded are checked against the container's frame count, or,
  where it lists none, against its duration (``CONTAINER_SLACK_S``).
  """
  av = _av()
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError) as e:
    raise ValueError(f'{path}: cannot open it as a video ({_reason(e)}).') from None
  with container:
    if not container.streams.video:
      raise ValueError(f'{path}: no video stream.')
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    listed_fps = float(stream.average_rate or 0.0)
    fps = listed_fps or 25.0
    listed = int(stream.frames or 0)
    duration, own = _listed_duration(container, stream)
    slack = 2.0 / fps if own else CONTAINER_SLACK_S
    start = float(stream.start_time * stream.time_base) if (
        stream.start_time is not None and stream.time_base is not None) else 0.0
    n, end = 0, 0.0
    try:
      for frame in container.decode(stream):
        n += 1
        t = float(frame.time) if frame.time is not None else (n - 1) / fps
        end = t + 1.0 / fps
        yield n, t, frame.to_ndarray(format='rgb24')
    except av.error.FFmpegError as e:
      raise ValueError(f'{path}: decoding failed after {n} frame(s) ({_reason(e)}); the file '
                       'is damaged.') from None
    if listed and n < listed:
      raise ValueError(f'{path}: decoded {n} of the {listed} frames its container lists; the '
                       'file is truncated or damaged.')
    if not listed and listed_fps and duration and end - start < duration - slack:
      raise ValueError(f'{path}: decoded {n} frame(s), {end - start:.2f} s of the {duration:.2f}'
                       ' s its container lists; the file is truncated or damaged.')


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

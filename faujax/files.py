"""Atomic file writes: a kill or a full disk leaves the previous file, never half of a new one.

Every small file faujax writes beside a run (``config.json``, ``results.json``, the dataset's
label space) goes through ``write_atomic``: the bytes go to a temporary file in the same
directory, are flushed to disk, and the file is renamed over ``path`` (``os.replace`` is atomic
on POSIX and Windows).
"""

from __future__ import annotations

import errno
import json
import os
from typing import IO, Any, Callable

# errno values of a write that failed for lack of room: a full disk, a quota, a file-size limit.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_ROOM_TEXT = ('No space left on device', 'Disk quota exceeded', 'File too large')


class NoRoomError(ValueError):
  """A write that failed for lack of room (full disk, quota, file-size limit); the message names
  the file and what was kept."""


def no_room(e: BaseException) -> str:
  """Why ``e`` (or an exception it was raised from) is a write failing for lack of room ('No
  space left on device', ...), or '' when it is not; also recognises the errors of libraries
  that report errno only as text (orbax, TensorBoard)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _NO_ROOM:
      return os.strerror(e.errno)
    reason = next((t for t in _NO_ROOM_TEXT if t in str(e)), '')
    if reason:
      return reason
    e = e.__cause__ or e.__context__
  return ''



def write_atomic(path: str, write: Callable[[IO], None], *, binary: bool = False) -> None:
  """Calls ``write(f)`` on a temporary file, then renames it over ``path``.

  Raises:
    NoRoomError: the disk is full (or a quota or file-size limit is reached), naming ``path``;
      OSError: any other failure, naming ``path``.
  """
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb' if binary else 'w', **({} if binary else {'encoding': 'utf-8'})) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    kept = ('; the previous version of the file is intact' if os.path.exists(path) else '')
    if no_room(e):
      raise NoRoomError(f'cannot write {path}: {no_room(e)} (no room on its disk){kept}.'
                        ) from None
    raise OSError(e.errno, f'cannot write {path}: {e.strerror or e}') from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  write_atomic(path, lambda f: f.write(text))


def write_json(path: str, value: Any) -> None:
  """``value`` as indented JSON with sorted keys (stable diffs of configs and results)."""
  write_atomic(path, lambda f: json.dump(value, f, indent=2, sort_keys=True))

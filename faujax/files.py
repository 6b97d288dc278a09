"""Atomic file writes: a kill or a full disk leaves the previous file, never half of a new one.

Every small file faujax writes beside a run (``config.json``, ``results.json``, the dataset's
label space) goes through ``write_atomic``: the bytes go to a temporary file in the same
directory, are flushed to disk, and the file is renamed over ``path`` (``os.replace`` is atomic
on POSIX and Windows).
"""

from __future__ import annotations

import json
import os
from typing import IO, Any, Callable


def write_atomic(path: str, write: Callable[[IO], None], *, binary: bool = False) -> None:
  """Calls ``write(f)`` on a temporary file, then renames it over ``path``."""
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb' if binary else 'w', **({} if binary else {'encoding': 'utf-8'})) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  write_atomic(path, lambda f: f.write(text))


def write_json(path: str, value: Any) -> None:
  """``value`` as indented JSON with sorted keys (stable diffs of configs and results)."""
  write_atomic(path, lambda f: json.dump(value, f, indent=2, sort_keys=True))

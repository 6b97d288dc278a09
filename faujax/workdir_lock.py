"""One writer per workdir: the lock a training holds on its ``--workdir`` while it runs.

  with workdir_lock.hold(workdir):   # WorkdirInUseError when another process holds it
    ...train...

The lock is ``workdir/writer.lock``, locked with ``flock`` (an exclusive, non-blocking lock that
the operating system releases when its process ends, however it ends: a killed or crashed
training never leaves a lock behind, so a stale file of a dead process is simply locked again).
The file holds the holder's pid, host, start time and command line, which a refused process
names. A second ``hold`` of the same workdir is refused even within one process (``flock``
locks belong to an open file, not to a process).

Only trainings write a workdir; reading commands (``faujax.predict``, ``faujax.trained_run``,
the tools) never take the lock and never change the workdir. In a multi-process run only process
0 takes the lock (every process of one run writes the same workdir) and tells the others whether
it got it, so that a refused run stops on every host.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
from typing import Iterator

import jax
import numpy as np

LOCK_FILE = 'writer.lock'


class WorkdirError(ValueError):
  """A workdir that cannot be written (a file, not writable, cannot be created or locked)."""


class WorkdirInUseError(WorkdirError):
  """Another process (or another open of the lock in this one) is training in the workdir."""


def _holder(path: str) -> str:
  try:
    with open(path, encoding='utf-8') as f:
      info = json.load(f)
    return (f'pid {info["pid"]} on host {info["host"]} (started {info["started"]}: '
            f'{info["command"]})')
  except (OSError, ValueError, KeyError, TypeError):
    return 'a process that has not yet written its name into it'


def _acquire(workdir: str) -> int:
  """Locks ``workdir/writer.lock`` -> its file descriptor (held open while the lock is held)."""
  import fcntl  # pylint: disable=g-import-not-at-top  # POSIX
  path = os.path.join(workdir, LOCK_FILE)
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise WorkdirError(f'cannot create the workdir lock {path}: {e.strerror}') from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise WorkdirInUseError(
          f'{workdir} is in use: another training writes it, {_holder(path)} (lock file {path}). '
          'Wait for it to finish, or use another --workdir; two runs on one workdir would '
          'overwrite each other\'s checkpoints.') from None
    raise WorkdirError(f'cannot lock {path}: {e.strerror}') from None
  info = {'pid': os.getpid(), 'host': socket.gethostname(),
          'started': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
          'command': ' '.join(sys.argv)[:500]}
  os.ftruncate(fd, 0)
  os.write(fd, json.dumps(info).encode())
  os.fsync(fd)
  return fd


def _make_workdir(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'the workdir {workdir} is a file; expected a directory (a new one, or '
                       'the workdir of a run to resume)')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f'cannot create the workdir {workdir}: {e.strerror}') from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f'the workdir {workdir} is not writable; a training writes its '
                       'checkpoints there (use another --workdir)')


def _agree(ok: bool) -> bool:
  """Process 0's ``ok`` on every process of a multi-process run."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the lock of ``workdir`` (created if needed) for the ``with`` block.

  Raises:
    WorkdirInUseError: another writer holds it (named by pid, host, start time and command).
    WorkdirError: the workdir is a file, or cannot be created, written or locked (naming it).
  """
  workdir = os.path.abspath(workdir)
  fd, error = None, None
  if jax.process_index() == 0:
    try:
      _make_workdir(workdir)
      fd = _acquire(workdir)
    except WorkdirError as e:
      error = e
  if not _agree(error is None):
    if error is not None:
      raise error
    raise WorkdirInUseError(f'{workdir}: process 0 of this run could not lock it (see its '
                            'message).')
  try:
    yield
  finally:
    if fd is not None:
      os.close(fd)  # releases the flock

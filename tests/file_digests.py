"""The SHA-256 of every file under a directory: what a test compares to show nothing changed."""

import hashlib
import os


def digests(root):
  """{path relative to ``root``: sha256 hex} of every file under ``root``."""
  out = {}
  for d, _, names in os.walk(root):
    for n in names:
      with open(os.path.join(d, n), 'rb') as f:
        out[os.path.relpath(os.path.join(d, n), root)] = hashlib.sha256(f.read()).hexdigest()
  return out

"""Minimal lossless PNG encoder (8-bit RGB, zlib) so render workers can encode without TensorFlow.

PNG layout (ISO/IEC 15948): signature, IHDR, IDAT (zlib stream of rows, each prefixed by filter
type 1 = "Sub": byte minus the byte one pixel to the left), IEND; every chunk carries a CRC-32.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _chunk(kind: bytes, data: bytes) -> bytes:
  return (struct.pack('>I', len(data)) + kind + data
          + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
  """PNG bytes of a uint8 (H, W, 3) image."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'encode_png expects uint8 (H, W, 3); got {image.dtype} {image.shape}.')
  h, w, _ = image.shape
  sub = image.copy()
  sub[:, 1:] = image[:, 1:] - image[:, :-1]  # uint8 wrap-around is the PNG Sub filter
  rows = np.concatenate([np.ones((h, 1), np.uint8), sub.reshape(h, w * 3)], axis=1)
  ihdr = struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)
  return (_SIGNATURE + _chunk(b'IHDR', ihdr)
          + _chunk(b'IDAT', zlib.compress(rows.tobytes(), level)) + _chunk(b'IEND', b''))

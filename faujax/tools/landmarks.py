"""Command line: detect faces and their 68 landmarks in an image, print and draw them.

  python -m faujax.tools.landmarks IMAGE [--out PNG] [--upsample N] [--all] [--json]
                                   [--repeat N]

Prints, per face, the box (x0 y0 x1 y1), the detector score and the 68 (x, y) points, and
the time spent (the first call includes loading dlib's models, ~2 s; ``--repeat N``
reports the median of N further calls, the time per image); ``--out`` writes the image with boxes and landmarks drawn. Needs the
optional extra ``pip install 'faujax[face]'``. Exit status 0 with faces, 1 without a face,
2 for a missing extra or an unreadable image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import numpy as np

from faujax.geometry import face_detection


def load_image(path: str) -> np.ndarray:
  """Reads an image file as (H, W, 3) uint8 RGB (ValueError naming the file otherwise)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except (OSError, ValueError) as e:
    raise ValueError(f'IMAGE {path!r}: cannot read it as an image ({e}).') from e


def draw(image: np.ndarray, faces: Sequence[face_detection.Face], out: str) -> None:
  """Writes ``image`` with the faces' boxes and landmarks drawn to the PNG ``out``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  h, w = image.shape[:2]
  fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
  ax = fig.add_axes([0, 0, 1, 1])
  ax.imshow(image)
  for face in faces:
    x0, y0, x1, y1 = face.box
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color='lime', lw=1.5))
    ax.scatter(face.landmarks[:, 0], face.landmarks[:, 1], s=6, c='red')
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  ax.axis('off')
  fig.savefig(out)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m faujax.tools.landmarks',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('image', help='image file (any format Pillow reads)')
  parser.add_argument('--out', help='PNG to draw the landmarks into')
  parser.add_argument('--upsample', type=int, default=1, help='detector upsampling (default 1)')
  parser.add_argument('--all', action='store_true', help='report every face, not the largest')
  parser.add_argument('--json', action='store_true', help='print JSON instead of text')
  parser.add_argument('--repeat', type=int, default=0,
                      help='time N more detections and report the median per image')
  args = parser.parse_args(argv)
  try:
    image = load_image(args.image)
    t0 = time.perf_counter()
    faces = face_detection.detect_faces(image, args.upsample)
    elapsed = time.perf_counter() - t0
    times = []
    for _ in range(max(args.repeat, 0)):
      t0 = time.perf_counter()
      face_detection.detect_faces(image, args.upsample)
      times.append(time.perf_counter() - t0)
    if times:
      elapsed = float(np.median(times))
  except face_detection.FaceExtraMissing as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if not args.all:
    faces = faces[:1]
  if args.json:
    print(json.dumps({'image': args.image, 'seconds': elapsed, 'faces': [
        {'box': f.box.tolist(), 'score': f.score, 'landmarks': f.landmarks.tolist()}
        for f in faces]}))
  else:
    print(f'{args.image}: {len(faces)} face(s), {elapsed * 1000:.1f} ms '
          f'({image.shape[1]} x {image.shape[0]} px)')
    for k, f in enumerate(faces):
      print(f'face {k}: box {" ".join(f"{v:.0f}" for v in f.box)} score {f.score:.3f}')
      for i, (x, y) in enumerate(f.landmarks):
        print(f'  {i:2d} {x:.1f} {y:.1f}')
  if args.out:
    draw(image, faces, args.out)
  if not faces:
    print(f'{args.image}: no face found', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())

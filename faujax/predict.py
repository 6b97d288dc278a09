"""Command line: AU / expression predictions for images, folders and videos -> one CSV.

  python -m faujax.predict --checkpoint WORKDIR INPUT... --out results.csv
      [--batch_size 32] [--faces {detect,cropped,openface_csv}] [--landmarks_csv FILE]
      [--save_annotated DIR] [--which {best,latest,STEP}] [--upsample N] [--max_faces 0]
      [--min_confidence 0.2] [--min_face 32]
  python -m faujax.predict --checkpoint WORKDIR --benchmark [INPUT...]
  python -m faujax.predict --checkpoint OpenGraphAU-ResNet50_second_stage.pth photos/ --out au.csv

``--checkpoint`` is a faujax run (a training run's or an import's workdir, or one of its step
directories) or one of the authors' released files (``.pth`` / ``.pt`` / ``.safetensors``):
that is converted once by ``faujax.tools.import_checkpoint`` into a cache directory keyed by the
file's SHA-256 (``$FAUJAX_CACHE_DIR/imported``), then used like a run (``--dataset`` /
``--embeddings`` as the importer's, where the file needs them). Nothing is downloaded.

INPUT is an image, a folder (searched recursively for images and videos) or a video (MP4 and
other FFmpeg formats, the ``video`` extra). One row per face per frame, columns as
``faujax.predictor`` describes; a frame without a face gives a row with ``success`` 0; unreadable
files are reported by name, skipped and counted. A progress bar shows frames/s and the ETA.
Images of every PIL mode are read as 8-bit RGB: a 16-bit (or 32-bit, float) grey image scaled by
its range, transparency composited onto white (``predictor.image_to_rgb``). A video that stops
decoding, or yields fewer frames than its container lists (a truncated file), is reported by
name with the number of frames read; the rows of those frames are kept. In a video ``face_id``
follows each face from frame to frame by its position (``faces.FaceTracker``), and the plot
follows the face seen in the most frames; in an image 0 is the largest face.

Found faces (``--faces detect`` and ``openface_csv``) scoring under ``--min_confidence``
(default 0.2) or with a box side, in the input's pixels, under ``--min_face`` (default 32) are
not passed to the model. Both defaults were chosen with dlib on real photos (scikit-image's
astronaut, matplotlib's grace_hopper, at full size and scaled down, and scikit-image's LFW
faces): real faces scored 0.45-1.58 (0.23 at 18 px), the mission patch on the astronaut's suit
0.12 (as large as her face, so only the confidence floor drops it); the landmarks of faces of
38 px and more were off the full-size ones by 7% of the eye distance at most, of 31 px and less
by 6-14%. The measurements are written out beside ``faces.MIN_CONFIDENCE``. Pass 0 to keep
every face dlib finds (rendered cartoon faces, e.g. ``faujax.data.synthetic_faces``, score
lower than real ones).

``--save_annotated DIR`` writes every image with the face boxes, landmarks and active AUs (or the
expression) drawn (``DIR/<name>.png``) and each video as ``DIR/<stem>_annotated.mp4``; each video
also gets a plot of its AU probabilities over time (``DIR/<stem>_au.png``, or beside ``--out``).

``--benchmark`` prints frames/s for each stage (decode, detect, align, model) and end to end, for
the inputs given, or, with none, for synthetic faces rendered as PNGs and as an MP4.
Exit status: 0 when every input was read; 1 when some were skipped or read in part (a damaged
video; the CSV holds the rest); 2 for a usage or checkpoint error, which includes an INPUT that
does not exist ("no such file or folder") and a folder without an image or a video in it (an
empty folder is a mistake in the command, not an input with no face: nothing is written).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

from faujax import faces as faces_lib


def _which(value: str) -> str:
  if value in ('best', 'latest') or value.isdigit():
    return value
  raise argparse.ArgumentTypeError(f"expected 'best', 'latest' or a step number, got {value!r}")


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m faujax.predict', description=__doc__.splitlines()[0])
  p.add_argument('inputs', nargs='*', help='images, folders (recursive) or videos')
  p.add_argument('--checkpoint', required=True,
                 help='workdir of a training run or of faujax.tools.import_checkpoint, or a '
                      'released .pth / .safetensors file (converted once, then cached)')
  p.add_argument('--dataset', choices=('bp4d', 'disfa', 'emotionet', 'aff_wild2'),
                 help='a released file whose keys do not say its dataset (12-AU MACG: bp4d or '
                      'emotionet; Emotion-GCN: aff_wild2 for its Aff-Wild2 model)')
  p.add_argument('--embeddings', help='a released Emotion-GCN file: the GloVe or authors\' '
                                      'embedding file of its 9 node words')
  p.add_argument('--out', help='CSV file to write (required unless --benchmark)')
  p.add_argument('--batch_size', type=int, default=32, help='faces per device batch')
  p.add_argument('--faces', choices=faces_lib.FACE_SOURCES, default='detect',
                 help='detect (dlib, the face extra), cropped (inputs are face crops) or '
                      'openface_csv (landmarks from --landmarks_csv)')
  p.add_argument('--landmarks_csv', help="OpenFace CSV for --faces openface_csv (frame = the "
                                         "video frame, or the input's 1-based position)")
  p.add_argument('--upsample', type=int, default=None,
                 help="dlib detector upsampling (default: the alignment's tool's: 2 for the "
                      'imported eye-level runs, in an 800 px wide frame; else 1)')
  p.add_argument('--max_faces', type=int, default=0, help='faces per frame, largest first (0: all)')
  p.add_argument('--min_confidence', type=float, default=faces_lib.MIN_CONFIDENCE,
                 help='faces found with a lower detector score are not predicted '
                      '(default %(default)s, chosen on real photos; 0: keep every face)')
  p.add_argument('--min_face', type=float, default=faces_lib.MIN_FACE,
                 help="nor faces whose box's longer side is shorter, in the input's pixels "
                      '(default %(default)s)')
  p.add_argument('--which', type=_which, default='best',
                 help="which checkpoint: best (by validation, else the newest), latest, or a "
                      "step number; --checkpoint may also be a step directory "
                      "(WORKDIR/checkpoints/<step>)")
  p.add_argument('--save_annotated', help='directory for annotated images / MP4s and plots')
  p.add_argument('--benchmark', action='store_true', help='print frames/s of every stage')
  return p


def _annotated_name(directory: str, name: str, used: set[str], suffix: str) -> str:
  stem = os.path.splitext(os.path.basename(name))[0] or 'frame'
  out, k = os.path.join(directory, stem + suffix), 1
  while out in used:
    k += 1
    out = os.path.join(directory, f'{stem}.{k}{suffix}')
  used.add(out)
  return out


def resolve_checkpoint(args: argparse.Namespace) -> str:
  """The run directory of ``--checkpoint``: itself, or the cached conversion of a released file."""
  path = args.checkpoint
  if os.path.isfile(path):
    from faujax.tools import import_checkpoint  # pylint: disable=g-import-not-at-top
    options = {k: getattr(args, k) for k in ('dataset', 'embeddings') if getattr(args, k)}
    path = import_checkpoint.cached_import(path, **options)
    print(f'{args.checkpoint}: converted into {path}', file=sys.stderr)
  return path


def run(args: argparse.Namespace, progress_file: Any = None) -> tuple[Any, list, Any]:
  """Predicts every input -> (DataFrame, skipped [(file, reason)], the Predictor)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from faujax import annotate  # pylint: disable=g-import-not-at-top
  from faujax import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  from faujax import video  # pylint: disable=g-import-not-at-top

  if args.faces == 'openface_csv' and not args.landmarks_csv:
    raise ValueError('--faces openface_csv needs --landmarks_csv FILE.')
  landmarks = faces_lib.read_openface_csv(args.landmarks_csv) if args.landmarks_csv else None
  items = predictor_lib.expand_inputs(args.inputs)  # a missing or empty INPUT: before the model
  pred = predictor_lib.Predictor.from_checkpoint(resolve_checkpoint(args), which=args.which,
                                                 batch_size=args.batch_size)
  images = [x for x in items if not video.is_video(x)]
  videos = [x for x in items if video.is_video(x)]
  total, skipped = len(images), []
  for v in list(videos):
    try:
      total += video.probe(v).num_frames
    except ValueError as e:
      skipped.append((v, str(e).removeprefix(f'{v}: ')))
      videos.remove(v)
  keep = bool(args.save_annotated)
  if keep:
    os.makedirs(args.save_annotated, exist_ok=True)
  used: set[str] = set()
  tables = []
  common = dict(faces=args.faces, upsample=args.upsample, max_faces=args.max_faces,
                landmarks=landmarks, keep_images=keep, min_confidence=args.min_confidence,
                min_face=args.min_face)
  with tqdm(total=total or None, unit='frame', file=progress_file or sys.stderr,
            dynamic_ncols=True, disable=progress_file is False) as bar:
    if images:
      def save_image(frame, rows):
        out = _annotated_name(args.save_annotated, frame.input, used, '.png')
        from PIL import Image  # pylint: disable=g-import-not-at-top
        Image.fromarray(annotate.draw_frame(frame.image, rows, pred.columns())).save(out)
      tables.append(pred.predict(images, on_frame=save_image if keep else None, progress=bar,
                                 **common))
    for v in videos:
      writer = None
      if keep:
        writer = video.VideoWriter(_annotated_name(args.save_annotated, v, used,
                                                   '_annotated.mp4'), video.probe(v).fps)
      try:
        table = pred.predict_video(
            v, on_frame=(lambda f, r: writer.write(annotate.draw_frame(f.image, r,
                                                                      pred.columns())))
            if keep else None, progress=bar, **common)
      finally:
        if writer is not None:
          writer.close()
      tables.append(table)
      plot_dir = args.save_annotated or os.path.dirname(os.path.abspath(args.out or '.'))
      if len(table):
        annotate.plot_over_time(table, _annotated_name(plot_dir, v, used, '_au.png'),
                                title=os.path.basename(v))
  skipped += [s for t in tables for s in t.attrs.get('skipped', [])]
  table = (pd.concat(tables, ignore_index=True) if tables
           else pd.DataFrame(columns=pred.columns()))
  return table, skipped, pred


def _benchmark_inputs(directory: str, n: int = 32, size: int = 128) -> tuple[list[str], str]:
  """``n`` synthetic faces as PNGs and as one MP4 in ``directory``."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from faujax import video  # pylint: disable=g-import-not-at-top
  from faujax.data.synthetic_faces import examples  # pylint: disable=g-import-not-at-top
  paths = []
  mp4 = os.path.join(directory, 'faces.mp4')
  with video.VideoWriter(mp4, 25) as writer:
    for k in range(n):
      image = examples.make_example(0, 1 + k % 6, k, size)['image']
      paths.append(os.path.join(directory, f'face_{k:03d}.png'))
      Image.fromarray(image).save(paths[-1])
      writer.write(image)
  return paths, mp4


def _report(label: str, pred: Any) -> None:
  rates = pred.times.rates()
  t = pred.times
  print(f'{label}: {t.frames} frames, {t.faces} faces, {t.wall:.2f} s; frames/s per stage: '
        + ', '.join(f'{k} {v:.1f}' if np.isfinite(v) else f'{k} -' for k, v in rates.items()))


def benchmark(args: argparse.Namespace) -> int:
  from faujax import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  pred = predictor_lib.Predictor.from_checkpoint(resolve_checkpoint(args), which=args.which,
                                                 batch_size=args.batch_size)
  common = dict(faces=args.faces, upsample=args.upsample, max_faces=args.max_faces,
                min_confidence=args.min_confidence, min_face=args.min_face)
  with tempfile.TemporaryDirectory() as tmp:
    if args.inputs:
      from faujax import video  # pylint: disable=g-import-not-at-top
      items = predictor_lib.expand_inputs(args.inputs)
      images = [x for x in items if not video.is_video(x)]
      videos = [x for x in items if video.is_video(x)]
    else:
      images, mp4 = _benchmark_inputs(tmp)
      videos = [mp4]
    t0 = time.perf_counter()
    pred.evaluate_faces([faces_lib.StoredFace(
        np.zeros((pred.info.image_size,) * 2 + (3,), np.uint8),
        np.zeros((pred.info.num_landmarks, 2), np.float32))])  # compile outside the timings
    if images:  # the alignment compiles per input shape: once, outside the timings
      first = predictor_lib.read_image(images[0])
      pred.aligner(first, faces_lib.cropped(first, pred.info.image_size,
                                            pred.info.num_landmarks)[1])
      if args.faces == 'detect':
        faces_lib.detect(first, args.upsample, method=pred.aligner.method)  # loads dlib's models
    print(f'compile: {time.perf_counter() - t0:.2f} s (model {pred.config.model.name}, batch '
          f'{pred.batch_size}, faces {args.faces})')
    if images:
      pred.times = predictor_lib.StageTimes()
      pred.predict(images, **common)
      _report(f'images ({len(images)})', pred)
    for v in videos:
      pred.times = predictor_lib.StageTimes()
      pred.predict_video(v, **common)
      _report(f'video {os.path.basename(v)}', pred)
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  from faujax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  try:
    if args.benchmark:
      return benchmark(args)
    if not args.out:
      print('error: --out CSV is required (or --benchmark).', file=sys.stderr)
      return 2
    if not args.inputs:
      print('error: no INPUT given (images, folders or videos).', file=sys.stderr)
      return 2
    table, skipped, _ = run(args)
  except (ValueError, ImportError, OSError, ckpt_lib.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  table.to_csv(args.out, index=False)
  found = int((table['success'] == 1).sum()) if len(table) else 0
  print(f'{args.out}: {len(table)} rows, {found} faces, '
        f'{int(table["success"].eq(0).sum()) if len(table) else 0} frames without a face.')
  if skipped:
    print(f'{len(skipped)} input(s) skipped or read in part:', file=sys.stderr)
    for name, reason in skipped:
      print(f'  {name}: {reason}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  from faujax import runtime  # pylint: disable=g-import-not-at-top
  runtime.configure()
  sys.exit(main())

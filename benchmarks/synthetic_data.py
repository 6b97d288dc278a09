"""Benchmark of the synthetic face dataset: build time, generator images/s, host pipeline images/s.

  python benchmarks/synthetic_data.py [--builder_config bp4d] [--data_dir DIR] [--batch_size 64]

Builds the registered config (default 'bp4d': 112 px, 30 subjects x 60 frames) into a fresh
temporary directory unless --data_dir is given, then reads training batches through
`faujax.data.input_pipeline.create_split` (decode, shuffle, batch; no augmentation).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import ml_collections


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--builder_config', default='bp4d')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--num_batches', type=int, default=100)
  parser.add_argument('--generator_images', type=int, default=200)
  args = parser.parse_args()

  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from faujax.data import builders  # pylint: disable=g-import-not-at-top
  from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from faujax.data.synthetic_faces import builder as builder_lib  # pylint: disable=g-import-not-at-top
  from faujax.data.synthetic_faces import examples  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()

  base = {c.name: c for c in builder_lib.SyntheticFaces.BUILDER_CONFIGS}[args.builder_config]
  print(f'machine: {os.cpu_count()} CPUs; config {base.name}: {base.image_size} px, '
        f'{base.num_subjects} subjects x {base.frames_per_subject} frames')

  # Generator alone (one process).
  examples.make_example(0, 0, 0, base.image_size)
  t = time.perf_counter()
  for i in range(args.generator_images):
    examples.make_example(base.seed, i % base.num_subjects, i, base.image_size)
  dt = time.perf_counter() - t
  print(f'generator (1 process): {args.generator_images / dt:.1f} images/s')

  tmp = None
  data_dir = args.data_dir
  if data_dir is None:
    tmp = data_dir = tempfile.mkdtemp(prefix='faujax_bench_')
  try:
    cfg = ml_collections.ConfigDict(dict(
        name='synthetic_faces', builder_config=args.builder_config, image_size=base.image_size,
        fold=1, data_dir=data_dir, manual_dir=None, shuffle_buffer=2048))
    builder = builders.get_builder(cfg, prepare=False)
    n = base.num_subjects * base.frames_per_subject
    t = time.perf_counter()
    builders.get_builder(cfg)
    dt = time.perf_counter() - t
    workers = base.num_workers or min(4, os.cpu_count() or 1)
    print(f'build ({workers} workers, {n} images): {dt:.1f} s = {n / dt:.1f} images/s '
          f'(into {builder.data_dir})')

    it = input_pipeline.create_split(cfg, 'train', batch_size=args.batch_size, train=True)
    for _ in range(5):
      next(it)
    t = time.perf_counter()
    for _ in range(args.num_batches):
      next(it)
    dt = time.perf_counter() - t
    print(f'host input pipeline (train, batch {args.batch_size}): '
          f'{args.num_batches * args.batch_size / dt:.0f} images/s')
  finally:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
  main()

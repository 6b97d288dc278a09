"""faujax against torchvision: ResNet-50 and DenseNet-121 train and forward steps, same cores.

Both sides run the same work on the same random batch: the backbone with a global average pool and
a 1000-way linear head (torchvision's own ``fc`` / ``classifier``), softmax cross-entropy, SGD with
momentum 0.9, BatchNorm in train mode for the train step and in eval mode for the forward step
(``torch.inference_mode``; faujax's jitted forward). faujax runs with the XLA CPU options of its
commands (``faujax.runtime.xla_flags``, unless ``XLA_FLAGS`` is set); torch with
``torch.set_num_threads(--threads)`` (default: every core). The two are alternated (A/B, then B/A,
``--pairs`` times, ``--steps`` steps each after one warm-up step), and each side's median images/s
over the pairs is reported with the ratio faujax / torchvision.

Usage::

  python benchmarks/torchvision_comparison.py [--cases resnet50:224:16,densenet121:227:16]
      [--pairs 5] [--steps 2] [--threads N] [--json out.json]

Needs torchvision built for the installed torch (``pip install torch torchvision`` together; the
test extra has torch only). Prints a table and a JSON record.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from faujax import runtime

_FLAGS = runtime.xla_flags()
if _FLAGS is not None:  # before JAX creates its CPU backend
  os.environ['XLA_FLAGS'] = _FLAGS

import backbones as backbone_bench  # pylint: disable=g-import-not-at-top,wrong-import-position

_TORCHVISION = {'resnet50': 'resnet50', 'densenet121': 'densenet121'}


class TorchCase:
  """torchvision's model with the same train and forward steps as ``backbone_bench.Case``."""

  def __init__(self, arch: str, size: int, batch: int):
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
    self.torch = torch
    torch.manual_seed(0)
    self.model = getattr(torchvision.models, _TORCHVISION[arch])(num_classes=1000)
    self.num_params = sum(p.numel() for p in self.model.parameters())
    self.x = torch.randn(batch, 3, size, size)
    self.y = torch.randint(0, 1000, (batch,))
    self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
    self.loss = float('nan')

  def train(self, n: int) -> float:
    torch = self.torch
    self.model.train()
    t0 = time.perf_counter()
    for _ in range(n):
      self.opt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
      loss.backward()
      self.opt.step()
    self.loss = float(loss.detach())
    return time.perf_counter() - t0

  def forward(self, n: int) -> float:
    self.model.eval()
    t0 = time.perf_counter()
    with self.torch.inference_mode():
      for _ in range(n):
        self.model(self.x)
    return time.perf_counter() - t0


def compare(arch: str, size: int, batch: int, pairs: int, steps: int) -> list[dict[str, Any]]:
  """Train and forward rows for one backbone: median images/s of each side and the ratio."""
  t0 = time.perf_counter()
  ours = backbone_bench.Case(arch, size, 'float32', batch)
  build_s = time.perf_counter() - t0
  theirs = TorchCase(arch, size, batch)
  rows = []
  for mode in ('train', 'forward'):
    getattr(ours, mode)(1)  # warm-up (and, for the forward, its compilation)
    getattr(theirs, mode)(1)
    rates: dict[str, list[float]] = {'faujax': [], 'torchvision': []}
    for p in range(pairs):
      order = (('faujax', ours), ('torchvision', theirs))
      for name, case in (order if p % 2 == 0 else order[::-1]):
        rates[name].append(batch * steps / getattr(case, mode)(steps))
    f, t = (statistics.median(rates[k]) for k in ('faujax', 'torchvision'))
    rows.append({
        'arch': arch, 'size': size, 'batch': batch, 'mode': mode, 'pairs': pairs, 'steps': steps,
        'faujax_images_per_s': round(f, 2), 'torchvision_images_per_s': round(t, 2),
        'ratio': round(f / t, 3),
        'faujax_per_pair': [round(r, 2) for r in rates['faujax']],
        'torchvision_per_pair': [round(r, 2) for r in rates['torchvision']],
        'faujax_compile_s': round(ours.compile_s if mode == 'train' else ours.forward_compile_s,
                                  1),
        'faujax_build_and_compile_s': round(build_s, 1) if mode == 'train' else None,
        'params': {'faujax': ours.num_params, 'torchvision': theirs.num_params}})
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cases', default='resnet50:224:16,densenet121:227:16',
                      help='comma-separated arch:size:batch triples')
  parser.add_argument('--pairs', type=int, default=5)
  parser.add_argument('--steps', type=int, default=2)
  parser.add_argument('--threads', type=int, default=os.cpu_count() or 1,
                      help='torch.set_num_threads (XLA uses every core)')
  parser.add_argument('--json', default=None, help='also write the JSON record here')
  args = parser.parse_args(argv)
  cases = []
  for item in args.cases.split(','):
    parts = item.split(':')
    if len(parts) != 3 or parts[0] not in _TORCHVISION or not all(
        x.isdigit() for x in parts[1:]):
      parser.error(f'--cases entry {item!r}: expected arch:size:batch with arch in '
                   f'{sorted(_TORCHVISION)}')
    cases.append((parts[0], int(parts[1]), int(parts[2])))
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except  # e.g. a CUDA torchvision on CPU torch
    print(f'torchvision is not importable ({type(e).__name__}: {e}); install torch and '
          'torchvision together (pip install torch torchvision).', file=sys.stderr)
    return 2
  torch.set_num_threads(args.threads)
  rows = []
  print(f'{"arch":<12} {"px":>4} {"batch":>5} {"mode":<8} {"faujax img/s":>12} '
        f'{"torchvision img/s":>17} {"ratio":>6}')
  for arch, size, batch in cases:
    for r in compare(arch, size, batch, args.pairs, args.steps):
      rows.append(r)
      print(f'{arch:<12} {size:>4} {batch:>5} {r["mode"]:<8} {r["faujax_images_per_s"]:>12.2f} '
            f'{r["torchvision_images_per_s"]:>17.2f} {r["ratio"]:>6.2f}', flush=True)
  backbone_bench.write_record(rows, args.json, cores=os.cpu_count(), torch=torch.__version__,
                              torchvision=torchvision.__version__,
                              torch_threads=torch.get_num_threads())
  return 0


if __name__ == '__main__':
  sys.exit(main())

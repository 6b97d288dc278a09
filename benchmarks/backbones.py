"""Train-step throughput (images/s) of the CNN backbones: forward + backward + SGD update under jit.

Default cases are the papers' settings: ResNet-50 at 224 px (MACG, SVML-RGCN) and DenseNet-121 at
227 px (Emotion-GCN), each in float32 and bfloat16 compute (parameters float32). ME-GraphAU /
OpenGraphAU's transformer trunks run as ``--cases swin_base:224`` (``swin_tiny``, ``swin_small``,
``mae_vit_base`` likewise; trained with their stochastic depth active). A global-average pool +
1000-way linear head and softmax cross-entropy on random labels stand in for the task head; the
optimiser is SGD with momentum 0.9; BatchNorm runs in train mode (batch statistics updated).
``--eval`` also times the eval-mode forward (its compile seconds and images/s).

Usage::

  python benchmarks/backbones.py [--batch 8] [--steps 3] [--warmup 1] [--json out.json]
      [--cases resnet50:224,densenet121:227] [--dtypes float32,bfloat16] [--eval]

Prints a table and a JSON record (device, jax version, per-case compile seconds and images/s).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from faujax import backbones, model_state

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class _Classifier(nnx.Module):
  """Backbone + global average pool + linear head (the benchmark's stand-in task)."""

  def __init__(self, arch: str, size: int, dtype: Any, num_classes: int = 1000, *,
               rngs: nnx.Rngs):
    # The JAA-Net stem's landmark branch is sized for its input side.
    kwargs = {'input_size': size} if arch == 'jaanet_stem' else {}
    self.backbone = backbones.build(arch, dtype=dtype, rngs=rngs, **kwargs)
    self.head = nnx.Linear(self.backbone.num_features, num_classes, dtype=dtype, rngs=rngs)
    # Trunks with stochastic depth / dropout (the transformers) take a dropout key in training.
    self.takes_rngs = 'rngs' in inspect.signature(self.backbone.__call__).parameters

  def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
    kwargs = {'rngs': rngs} if self.takes_rngs else {}
    feats = self.backbone(x, train=train, **kwargs)
    return self.head(feats.mean(axis=(1, 2))).astype(jnp.float32)


class Case:
  """One backbone's jitted train step (forward + backward + SGD momentum 0.9, BatchNorm in train
  mode) and forward (eval mode) on a random batch, compiled once; ``train(n)`` / ``forward(n)``
  run n steps and return the seconds they took (the device work included)."""

  def __init__(self, arch: str, size: int, dtype_name: str, batch: int):
    self.arch, self.size, self.dtype_name, self.batch = arch, size, dtype_name, batch
    model = _Classifier(arch, size, _DTYPES[dtype_name], rngs=nnx.Rngs(0))
    fn = model_state.ModelFn.from_model(model)
    self.x = jax.random.normal(jax.random.key(0), (batch, size, size, 3), jnp.float32)
    self.y = jax.random.randint(jax.random.key(1), (batch,), 0, 1000)
    variables = model_state.variables(model)
    params, batch_stats = variables['params'], variables['batch_stats']
    self.num_params = sum(int(v.size) for v in jax.tree.leaves(params))
    del model

    def forward(params, batch_stats, x, train):
      m = fn.module({'params': params, 'batch_stats': batch_stats})
      rngs = nnx.Rngs(dropout=jax.random.key(2)) if train else None
      logits = m(x, train=train, rngs=rngs)
      return logits, model_state.to_tree(nnx.state(m, nnx.BatchStat))

    tx = optax.sgd(0.01, momentum=0.9)
    opt_state = tx.init(params)

    def train_step(params, batch_stats, opt_state, x, y):
      def loss_fn(p):
        logits, new_stats = forward(p, batch_stats, x, True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, new_stats

      (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_stats, opt_state, loss

    t0 = time.perf_counter()
    self._train = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(
        params, batch_stats, opt_state, self.x, self.y).compile()
    self.compile_s = time.perf_counter() - t0
    self._forward = None
    self._forward_fn = lambda p, s, x: forward(p, s, x, False)[0]
    self.state = (params, batch_stats, opt_state)
    self.loss = float('nan')

  def train(self, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
      *state, loss = self._train(*self.state, self.x, self.y)
      self.state = tuple(state)
    jax.block_until_ready((self.state, loss))
    self.loss = float(loss)
    return time.perf_counter() - t0

  def forward(self, n: int) -> float:
    params, batch_stats, _ = self.state
    if self._forward is None:
      t0 = time.perf_counter()
      self._forward = jax.jit(self._forward_fn).lower(params, batch_stats, self.x).compile()
      self.forward_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
      out = self._forward(params, batch_stats, self.x)
    jax.block_until_ready(out)
    return time.perf_counter() - t0


def bench_case(arch: str, size: int, dtype_name: str, batch: int, steps: int,
               warmup: int, eval_forward: bool = False) -> dict[str, Any]:
  """Times ``steps`` jitted train steps after ``warmup`` ones (and as many eval forwards with
  ``eval_forward``); returns a result record."""
  case = Case(arch, size, dtype_name, batch)
  if warmup:
    case.train(warmup)
  elapsed = case.train(steps)
  record = {'arch': arch, 'size': size, 'dtype': dtype_name, 'batch': batch, 'steps': steps,
            'compile_s': round(case.compile_s, 2), 'step_s': round(elapsed / steps, 4),
            'images_per_s': round(batch * steps / elapsed, 2), 'final_loss': case.loss}
  if eval_forward:
    case.forward(max(warmup, 1))
    elapsed = case.forward(steps)
    record.update({'eval_compile_s': round(case.forward_compile_s, 2),
                   'eval_images_per_s': round(batch * steps / elapsed, 2)})
  return record


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cases', default='resnet50:224,densenet121:227',
                      help='comma-separated arch:size pairs')
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--eval', action='store_true', help='also time the eval-mode forward')
  parser.add_argument('--json', default=None, help='also write the JSON record here')
  args = parser.parse_args(argv)
  cases = []
  for item in args.cases.split(','):
    arch, _, size = item.partition(':')
    if arch not in backbones.ARCHS or not size.isdigit():
      parser.error(f'--cases entry {item!r}: expected arch:size with arch in {backbones.ARCHS}')
    cases.append((arch, int(size)))
  dtypes = args.dtypes.split(',')
  for d in dtypes:
    if d not in _DTYPES:
      parser.error(f'--dtypes entry {d!r}: expected one of {sorted(_DTYPES)}')
  results = []
  print(f'{"arch":<12} {"px":>4} {"dtype":<9} {"batch":>5} {"compile s":>9} {"step s":>8} '
        f'{"img/s":>8}')
  for arch, size in cases:
    for d in dtypes:
      r = bench_case(arch, size, d, args.batch, args.steps, args.warmup, args.eval)
      results.append(r)
      evaluation = (f'   eval: compile {r["eval_compile_s"]:.1f} s, '
                    f'{r["eval_images_per_s"]:.2f} img/s' if args.eval else '')
      print(f'{arch:<12} {size:>4} {d:<9} {args.batch:>5} {r["compile_s"]:>9.1f} '
            f'{r["step_s"]:>8.3f} {r["images_per_s"]:>8.2f}{evaluation}', flush=True)
  write_record(results, args.json)
  return 0


def write_record(results: list[dict[str, Any]], path: str | None, **extra: Any) -> None:
  """Prints the JSON record (device, host, jax version, ``extra``, results); writes it to
  ``path`` too when given."""
  device = jax.devices()[0]
  record = {'device': f'{device.platform}:{device.device_kind}', 'num_devices': jax.device_count(),
            'host': platform.processor() or platform.machine(), 'jax': jax.__version__,
            'xla_flags': os.environ.get('XLA_FLAGS'), **extra, 'results': results}
  print(json.dumps(record, indent=1))
  if path:
    with open(path, 'w') as f:
      json.dump(record, f, indent=1)


if __name__ == '__main__':
  sys.exit(main())

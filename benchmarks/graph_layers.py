"""Micro-benchmark of the faujax.graph layers: forward + backward time per layer.

For every layer, N in {8, 12, 19, 64} nodes and batch in {1, 64, 1024}, times
one jitted ``grad(sum(layer(params, x, adj)^2))`` w.r.t. params and inputs
(feature width 512 by default). ``--impl pure`` (default) times the pure
``<layer>_apply`` functions; ``--impl nnx`` the Flax NNX wrappers (built with
explicit input sizes, their variables as plain dicts through
``faujax.model_state.ModelFn``), which call the same functions. Prints a table
(median ms per step, compile time excluded; cases slower than --budget run
once) and optionally writes JSON.

  python benchmarks/graph_layers.py [--features 512] [--layers gcn,gat] [--impl nnx]
      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax import graph
from faujax import model_state

NODES = (8, 12, 19, 64)
BATCHES = (1, 64, 1024)


def layer_table(c: int) -> dict[str, tuple[Callable[[Any, int], Any], Callable[..., Any]]]:
  """name -> (init(rng, num_nodes) -> params, apply(params, x, adj) -> out)."""
  return {
      'gcn': (lambda r, n: graph.gcn_init(r, c, c),
              lambda p, x, a: graph.gcn_apply(p, x, a)),
      'rgcn_r2': (lambda r, n: graph.rgcn_init(r, c, c, 2),
                  lambda p, x, a: graph.rgcn_apply(p, x, jnp.stack([a, a.T]))),
      'gat_h4': (lambda r, n: graph.gat_init(r, c, c // 4, num_heads=4),
                 lambda p, x, a: graph.gat_apply(p, x, a)),
      'dot_attention_h8': (lambda r, n: graph.dot_attention_init(r, c, c, hidden_dim=c,
                                                                 num_heads=8),
                           lambda p, x, a: graph.dot_attention_apply(p, x, a, num_heads=8)),
      'dynamic_graph_k4': (lambda r, n: graph.dynamic_graph_init(r, n, c),
                           lambda p, x, a: graph.dynamic_graph_apply(
                               p, x, k=min(4, x.shape[-2]), train=True)[0]),
      'prior_graph': (lambda r, n: graph.prior_graph_init(r, np.eye(n) * 0.5, c, c),
                      lambda p, x, a: graph.prior_graph_apply(p, x)),
      'gated_fusion': (lambda r, n: graph.gated_fusion_init(r, c, c, c),
                       lambda p, x, a: graph.gated_fusion_apply(p, x, x)),
      'mfb_k4': (lambda r, n: graph.mfb_init(r, c, c, c, 4),
                 lambda p, x, a: graph.mfb_apply(p, x, x, factor=4)),
  }


def nnx_table(c: int) -> dict[str, tuple[Callable[[nnx.Rngs, int], nnx.Module],
                                            Callable[..., Any]]]:
  """name -> (build(rngs, num_nodes) -> NNX wrapper, call(module, x, adj) -> out); the same
  layers and settings as ``layer_table``."""
  return {
      'gcn': (lambda r, n: graph.GraphConv(c, c, rngs=r), lambda m, x, a: m(x, a)),
      'rgcn_r2': (lambda r, n: graph.RelationalGraphConv(c, c, 2, rngs=r),
                  lambda m, x, a: m(x, jnp.stack([a, a.T]))),
      'gat_h4': (lambda r, n: graph.GraphAttention(c, c // 4, num_heads=4, rngs=r),
                 lambda m, x, a: m(x, a, train=False)),
      'dot_attention_h8': (lambda r, n: graph.DotProductGraphAttention(c, c, hidden_dim=c,
                                                                       num_heads=8, rngs=r),
                           lambda m, x, a: m(x, a, train=False)),
      'dynamic_graph_k4': (lambda r, n: graph.DynamicGraphLayer(n, c, k=min(4, n), rngs=r),
                           lambda m, x, a: m(x, train=True)),
      'prior_graph': (lambda r, n: graph.PriorGraphConv(np.eye(n) * 0.5, c, c, rngs=r),
                      lambda m, x, a: m(x)),
      'gated_fusion': (lambda r, n: graph.GatedFusionCell(c, c, c, rngs=r),
                       lambda m, x, a: m(x, x)),
      'mfb_k4': (lambda r, n: graph.MFB(c, c, c, 4, rngs=r),
                 lambda m, x, a: m(x, x, train=False)),
  }


def as_pure(build: Callable[[nnx.Rngs, int], nnx.Module], call: Callable[..., Any]
            ) -> tuple[Callable[[Any, int], Any], Callable[..., Any]]:
  """An NNX wrapper as ``(init(rng, n) -> variables, apply(variables, x, adj))`` pure functions."""
  fns: dict[int, model_state.ModelFn] = {}

  def init(rng: Any, n: int) -> Any:
    module = build(nnx.Rngs(rng), n)
    fns[n] = model_state.ModelFn.from_model(module)
    return model_state.variables(module)

  def apply(v: Any, x: jax.Array, adj: jax.Array) -> jax.Array:
    return call(fns[x.shape[-2]].module(v), x, adj)

  return init, apply


def time_case(init, apply, n: int, b: int, c: int, budget_s: float, max_repeats: int
              ) -> dict[str, float]:
  rng = np.random.default_rng(0)
  params = init(jax.random.key(0), n)
  x = jnp.asarray(rng.normal(size=(b, n, c)), jnp.float32)
  adj = jnp.asarray((rng.random((n, n)) < 0.3).astype(np.float32))

  def loss(p, v):
    return jnp.sum(apply(p, v, adj) ** 2)

  t0 = time.perf_counter()
  step = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
  compile_s = time.perf_counter() - t0
  # The first timed run counts: big cases (seconds per step) run once only.
  times = []
  start = time.perf_counter()
  while len(times) < max_repeats and (not times or time.perf_counter() - start < budget_s):
    t = time.perf_counter()
    jax.block_until_ready(step(params, x))
    times.append(time.perf_counter() - t)
  return {'median_ms': 1e3 * statistics.median(times), 'min_ms': 1e3 * min(times),
          'repeats': len(times), 'compile_s': compile_s}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--features', type=int, default=512)
  parser.add_argument('--nodes', default=','.join(map(str, NODES)))
  parser.add_argument('--batches', default=','.join(map(str, BATCHES)))
  parser.add_argument('--layers', default='', help='comma-separated subset of layer names')
  parser.add_argument('--impl', default='pure', choices=('pure', 'nnx'),
                      help='time the pure functions or their Flax NNX wrappers')
  parser.add_argument('--budget', type=float, default=0.3,
                      help='seconds of timed repeats per case (at least one repeat)')
  parser.add_argument('--max-repeats', type=int, default=20)
  parser.add_argument('--json', default='', help='write the results to this JSON file')
  args = parser.parse_args(argv)
  if args.impl == 'pure':
    table = layer_table(args.features)
  else:
    table = {name: as_pure(*pair) for name, pair in nnx_table(args.features).items()}
  names = [s for s in args.layers.split(',') if s] or list(table)
  unknown = sorted(set(names) - set(table))
  if unknown:
    parser.error(f'--layers: unknown {unknown}; expected some of {sorted(table)}')
  nodes = [int(s) for s in args.nodes.split(',')]
  batches = [int(s) for s in args.batches.split(',')]
  device = jax.devices()[0]
  print(f'# faujax.graph fwd+bwd ({args.impl}), C={args.features}, device={device.platform} '
        f'({device.device_kind}), jax {jax.__version__}, {platform.node()}')
  header = f'{"layer":<18}' + ''.join(f'{f"N={n},B={b}":>14}' for n in nodes for b in batches)
  print(header)
  results = []
  t_start = time.perf_counter()
  for name in names:
    init, apply = table[name]
    row = f'{name:<18}'
    for n in nodes:
      for b in batches:
        r = time_case(init, apply, n, b, args.features, args.budget, args.max_repeats)
        results.append({'layer': name, 'nodes': n, 'batch': b, 'features': args.features, **r})
        row += f'{r["median_ms"]:>12.2f}ms'
    print(row, flush=True)
  total = time.perf_counter() - t_start
  print(f'# median ms per forward+backward step; total {total:.1f} s')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'device': f'{device.platform} ({device.device_kind})', 'impl': args.impl,
                 'jax': jax.__version__, 'results': results, 'total_s': total}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""The import structure: data flows one way, and no module imports one above it.

Layers, lowest first (the one place they are named): a module may import modules of its own
layer or of a lower one, never of a higher one, at module level or inside a function; and the
module-level imports between faujax modules have no cycle. A module belongs to the first layer
one of whose prefixes it starts with, most specific prefix first.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'faujax')

LAYERS = (
    ('foundation', ('faujax.config_schema', 'faujax.files', 'faujax.labels', 'faujax.statistics',
                    'faujax.runtime', 'faujax.reporting', 'faujax.plots', 'faujax.embeddings')),
    ('geometry', ('faujax.geometry',)),
    ('data', ('faujax.data',)),
    ('preprocessing', ('faujax.data.augment', 'faujax.faces', 'faujax.video', 'faujax.annotate')),
    ('model', ('faujax.layers', 'faujax.graph', 'faujax.backbones', 'faujax.models',
               'faujax.relations', 'faujax.model_state')),
    ('loss/metrics', ('faujax.losses', 'faujax.metrics', 'faujax.tasks')),
    ('train', ('faujax.optim', 'faujax.stages', 'faujax.parallel', 'faujax.config_base',
               'faujax.checkpoint', 'faujax.run_record', 'faujax.initialization', 'faujax.train',
               'faujax.trained_run', 'faujax.evaluators', 'faujax.workdir_lock')),
    # The package root's lazy ``faujax.Predictor`` is the inference command's entry point.
    ('commands', ('faujax', 'faujax.main', 'faujax.predict', 'faujax.predictor', 'faujax.sweep',
                  'faujax.cv', 'faujax.bench', 'faujax.tools',
                  'faujax.data.synthetic_faces.make_docs', 'faujax.geometry.make_figure')),
)


def _modules() -> dict[str, str]:
  out = {}
  for directory, _, files in os.walk(ROOT):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(directory, name)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, '.')
        out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
  return out


MODULES = _modules()


def layer_of(module: str) -> int:
  best, rank = None, -1
  for index, (_, prefixes) in enumerate(LAYERS):
    for prefix in prefixes:
      inside = module == prefix or (prefix != 'faujax' and module.startswith(prefix + '.'))
      if inside and len(prefix) > rank:
        best, rank = index, len(prefix)
  if best is None:
    raise AssertionError(f'{module} is in no layer of tests/test_structure.py LAYERS')
  return best


def _resolve(name: str) -> str | None:
  while name and name not in MODULES:
    name = name.rpartition('.')[0]
  return name or None


def imports(module: str) -> list[tuple[str, int, bool]]:
  """(imported faujax module, line, at module level) of every import in ``module``."""
  tree = ast.parse(open(MODULES[module], encoding='utf-8').read())
  top = {id(n) for n in tree.body}
  top |= {id(n) for s in tree.body if isinstance(s, (ast.If, ast.Try)) for n in ast.walk(s)}
  found = []
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f'{node.module}.{a.name}' for a in node.names]
    for name in names:
      if name.startswith('faujax'):
        target = _resolve(name)
        if target and target != module:
          found.append((target, node.lineno, id(node) in top))
  return found


def test_every_module_has_a_layer():
  for module in MODULES:
    layer_of(module)


def test_no_module_imports_a_higher_layer():
  upward = []
  for module in sorted(MODULES):
    for target, line, _ in imports(module):
      if layer_of(target) > layer_of(module):
        upward.append(f'{MODULES[module]}:{line}: {module} ({LAYERS[layer_of(module)][0]}) '
                      f'imports {target} ({LAYERS[layer_of(target)][0]})')
  assert not upward, 'imports up the chain:\n' + '\n'.join(upward)


def test_module_level_imports_have_no_cycle():
  graph = {m: sorted({t for t, _, top in imports(m) if top}) for m in MODULES}
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for nxt in graph[node]:
      if state.get(nxt) == 1:
        cycle = stack[stack.index(nxt):] + [nxt]
        pytest.fail('import cycle: ' + ' -> '.join(cycle))
      if nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = 2

  for module in sorted(graph):
    if module not in state:
      visit(module)


def test_the_checker_catches_a_planted_upward_import():
  """The test above would fail on an upward import: a model module importing the train loop."""
  assert layer_of('faujax.train') > layer_of('faujax.models.macg')
  assert layer_of('faujax.data.augment') > layer_of('faujax.data.builders')
  assert layer_of('faujax.tools.visual_nodes') > layer_of('faujax.models.visual_nodes')

"""The authors' public code, checked out beside faujax, for the parity tests.

The parity tests compare faujax with the public repositories' own model classes. They are never
part of faujax: ``FAUJAX_PUBLIC_CODE`` names a directory holding the checkouts (``ME-GraphAU/``
= CVI-SZU/ME-GraphAU, ``emotion-gcn/`` = PanosAntoniadis/emotion-gcn, ``au-recognition/`` =
lkq52110/au-recognition); without it, or without timm / torchvision (which those repositories
import), the tests are skipped. ``load(repo, package)`` imports one package or module of a
checkout under a private name, so that two checkouts with a ``model`` package can be loaded in
one process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import pytest

ENV = 'FAUJAX_PUBLIC_CODE'


def root(repo: str) -> str:
  """The checkout ``repo`` (skips the test when it is not there or cannot be imported)."""
  base = os.environ.get(ENV)
  if not base:
    pytest.skip(f'{ENV} is not set: the public code is not checked out beside faujax.')
  path = os.path.join(base, repo)
  if not os.path.isdir(path):
    pytest.skip(f'{path} is missing.')
  for needed in ('torch', 'torchvision', 'timm'):
    pytest.importorskip(needed)
  return path


def load(repo: str, name: str, alias: str) -> types.ModuleType:
  """Module or package ``name`` (e.g. 'model.MEFL', 'models') of the checkout ``repo``,
  imported as ``alias.<name>`` (its relative imports resolve inside the checkout)."""
  path = root(repo)
  top = name.split('.')[0]
  if alias not in sys.modules:
    package = types.ModuleType(alias)
    package.__path__ = [path]
    sys.modules[alias] = package
  location = os.path.join(path, top)
  if os.path.isdir(location) and f'{alias}.{top}' not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        f'{alias}.{top}', os.path.join(location, '__init__.py'),
        submodule_search_locations=[location])
    module = importlib.util.module_from_spec(spec)
    sys.modules[f'{alias}.{top}'] = module
    spec.loader.exec_module(module)
  # Flat repositories import their siblings by top-level name ('from utils import ...'): make
  # the checkout's files those names while importing, without leaking them to the next one.
  siblings = {f[:-3] for f in os.listdir(path) if f.endswith('.py')}
  shadowed = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split('.')[0] in siblings}
  sys.path.insert(0, path)
  try:
    return importlib.import_module(f'{alias}.{name}')
  finally:
    sys.path.remove(path)
    for n in [n for n in sys.modules if n.split('.')[0] in siblings]:
      del sys.modules[n]
    sys.modules.update(shadowed)

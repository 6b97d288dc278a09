"""Pretrained backbone variables on disk: the checkpoint format written by ``import_weights``.

A pretrained-backbone directory holds

* ``variables/``: an orbax (StandardCheckpointer) checkpoint of ``{'params': ..., 'batch_stats':
  ...}`` (plain nested dicts, ``faujax.model_state.variables`` layout) for the module
  ``faujax.backbones.build(arch, rngs=...)``;
* ``faujax_backbone.json``: ``{'format': 'faujax-backbone', 'version': 1, 'arch': ..., 'source':
  ..., 'source_sha256': ..., 'torch_keys': [...], 'skipped_keys': {...}}``.

Configs point ``config.pretrained_backbone`` at such a directory; the training code then
replaces the ``params['backbone']`` / ``batch_stats['backbone']`` sub-trees of the model's variables
by :func:`load_pretrained`'s result (:func:`merge_pretrained` does that with checks) and loads them
into the model with ``faujax.model_state.load_variables``. torch is not needed here.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax import model_state
from faujax.backbones.registry import ARCHS, build

META_FILE = 'faujax_backbone.json'
VARIABLES_DIR = 'variables'
FORMAT_NAME = 'faujax-backbone'
FORMAT_VERSION = 1

class PretrainedMismatchError(ValueError):
  """Stored variables do not fit the requested architecture (names or shapes)."""


@functools.lru_cache(maxsize=None)
def variable_shapes(arch: str) -> dict[str, dict[str, Any]]:
  """Abstract ``{'params', 'batch_stats'}`` tree (ShapeDtypeStruct leaves) of ``build(arch)``.

  The trunk with its default options (the JAA-Net stem's landmark Linear is sized for 176 px),
  built abstractly (no initialisation is computed).
  """
  if arch not in ARCHS:
    raise ValueError(f'arch {arch!r} is unknown; accepted names: {", ".join(ARCHS)}')
  module = nnx.eval_shape(lambda: build(arch, rngs=nnx.Rngs(0)))
  return model_state.variables(module)


def flatten_tree(tree: Mapping[str, Any],
                 prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  """Nested dict -> ``{path tuple: leaf}``."""
  flat: dict[tuple[str, ...], Any] = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten_tree(value, prefix + (str(key),)))
    else:
      flat[prefix + (str(key),)] = value
  return flat


def unflatten_tree(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  """``{path tuple: leaf}`` -> nested dict."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  return tree


def _check_against(arch: str, variables: Mapping[str, Any], where: str) -> None:
  """Raises :class:`PretrainedMismatchError` listing missing, unexpected, mis-shaped leaves."""
  expected = flatten_tree(variable_shapes(arch))
  got = flatten_tree(variables)
  missing = sorted('/'.join(p) for p in expected if p not in got)
  unexpected = sorted('/'.join(p) for p in got if p not in expected)
  wrong = sorted(f'{"/".join(p)}: expected {tuple(expected[p].shape)}, got {tuple(np.shape(v))}'
                 for p, v in got.items()
                 if p in expected and tuple(np.shape(v)) != expected[p].shape)
  if missing or unexpected or wrong:
    raise PretrainedMismatchError(
        f'{where}: variables do not match backbone {arch!r}:\n' + listing(
            [('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong)]))


def listing(groups: Sequence[tuple[str, Sequence[str]]], limit: int = 25) -> str:
  """Titled groups of names as indented lines (at most ``limit`` per group), empty ones left out."""
  lines = []
  for title, items in groups:
    if not items:
      continue
    lines.append(f'  {title} ({len(items)}):')
    lines.extend(f'    {item}' for item in items[:limit])
    if len(items) > limit:
      lines.append(f'    ... and {len(items) - limit} more')
  return '\n'.join(lines)


def save_pretrained(out_dir: str, arch: str, variables: Mapping[str, Any],
                    meta: Mapping[str, Any] | None = None, *, overwrite: bool = False) -> str:
  """Writes ``variables`` (``{'params', 'batch_stats'}``, numpy leaves) and the JSON to ``out_dir``.

  Args:
    out_dir: target directory (created; must not already hold a checkpoint unless ``overwrite``).
    arch: backbone name the variables belong to (checked).
    variables: ``{'params': tree, 'batch_stats': tree}``.
    meta: extra JSON fields (source file, torch key list, skipped keys).
    overwrite: replace an existing checkpoint in ``out_dir``.

  Returns:
    The absolute checkpoint directory.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  if arch not in ARCHS:
    raise ValueError(f'arch {arch!r} is unknown; accepted names: {", ".join(ARCHS)}')
  _check_against(arch, variables, f'save_pretrained(arch={arch!r})')
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  ckpt_dir = os.path.join(out_dir, VARIABLES_DIR)
  if os.path.exists(ckpt_dir) and not overwrite:
    raise ValueError(f'output directory {out_dir} already holds a checkpoint ({VARIABLES_DIR}/); '
                     'pass overwrite=True (--overwrite) to replace it')
  tree = {'params': jax.tree.map(np.asarray, dict(variables['params'])),
          'batch_stats': jax.tree.map(np.asarray, dict(variables['batch_stats']))}
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(ckpt_dir, tree, force=overwrite)
  checkpointer.wait_until_finished()
  record = {'format': FORMAT_NAME, 'version': FORMAT_VERSION, 'arch': arch}
  record.update(meta or {})
  with open(os.path.join(out_dir, META_FILE), 'w') as f:
    json.dump(record, f, indent=1)
  return out_dir


def read_meta(path: str) -> dict[str, Any]:
  """Reads and validates the JSON record of a pretrained-backbone directory."""
  meta_path = os.path.join(path, META_FILE)
  if not os.path.isdir(path):
    raise ValueError(f'pretrained backbone path {path!r} (config.pretrained_backbone) is '
                     'not a directory; write one with `python -m faujax.tools.import_weights`')
  if not os.path.isfile(meta_path):
    raise ValueError(
        f'{path!r} has no {META_FILE}; it was not written by faujax.tools.import_weights')
  try:
    with open(meta_path) as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    row = e.doc.count('\n', 0, e.pos) + 1
    raise ValueError(f'{meta_path}: invalid JSON at line {row}: {e.msg}') from e
  if not isinstance(meta, dict) or meta.get('format') != FORMAT_NAME:
    raise ValueError(f'{meta_path}: expected format {FORMAT_NAME!r}, got {meta.get("format")!r}'
                     if isinstance(meta, dict) else f'{meta_path}: expected a JSON object')
  if meta.get('version') != FORMAT_VERSION:
    raise ValueError(f'{meta_path}: format version {meta.get("version")!r} is not supported '
                     f'(expected {FORMAT_VERSION})')
  return meta


def load_pretrained(path: str, arch: str) -> dict[str, Any]:
  """Loads ``{'params': ..., 'batch_stats': ...}`` for ``faujax.backbones.build(arch)``.

  Args:
    path: directory written by ``python -m faujax.tools.import_weights`` (the value of
      ``config.pretrained_backbone``).
    arch: the backbone the model builds (``config.model.backbone.name``).

  Returns:
    Nested dicts of float32 numpy arrays, ready to sit under the model's backbone submodule.

  Raises:
    ValueError: not a faujax backbone directory, or it holds another architecture.
    PretrainedMismatchError: stored names or shapes differ from ``build(arch)``'s.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  if arch not in ARCHS:
    raise ValueError(f'arch {arch!r} is unknown; accepted names: {", ".join(ARCHS)}')
  path = os.path.abspath(path)
  meta = read_meta(path)
  if meta.get('arch') != arch:
    raise ValueError(f'pretrained backbone {path!r} holds {meta.get("arch")!r} weights but the '
                     f'model builds {arch!r} (config.model.backbone.name vs config.pretrained_backbone)')
  restored = ocp.StandardCheckpointer().restore(os.path.join(path, VARIABLES_DIR))
  variables = {'params': restored.get('params', {}), 'batch_stats': restored.get('batch_stats', {})}
  _check_against(arch, variables, os.path.join(path, VARIABLES_DIR))
  return jax.tree.map(lambda a: np.asarray(a, np.float32), variables)


def merge_pretrained(variables: Mapping[str, Any], pretrained: Mapping[str, Any],
                     submodule: Sequence[str] = ('backbone',)) -> dict[str, Any]:
  """Returns a copy of model ``variables`` with ``pretrained`` placed under ``submodule``.

  Args:
    variables: a model's ``{'params': ..., 'batch_stats': ..., ...}`` nested dicts
      (``faujax.model_state.variables(model)``).
    pretrained: output of :func:`load_pretrained`.
    submodule: path of the backbone submodule inside each collection (e.g. ``('backbone',)``).

  Raises:
    PretrainedMismatchError: the model's backbone variables differ in names or shapes.
  """
  out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in variables.items()}
  for collection in ('params', 'batch_stats'):
    new = pretrained.get(collection, {})
    if not new:
      continue
    node = variables.get(collection, {})
    for part in submodule:
      if not isinstance(node, Mapping) or part not in node:
        raise PretrainedMismatchError(
            f'model variables have no {collection}/{"/".join(submodule)} submodule to load the '
            'pretrained backbone into')
      node = node[part]
    old_flat = flatten_tree(node)
    new_flat = flatten_tree(new)
    missing = sorted('/'.join(p) for p in old_flat if p not in new_flat)
    unexpected = sorted('/'.join(p) for p in new_flat if p not in old_flat)
    wrong = sorted(
        f'{"/".join(p)}: model {tuple(np.shape(old_flat[p]))}, pretrained {tuple(np.shape(v))}'
        for p, v in new_flat.items() if p in old_flat and np.shape(v) != np.shape(old_flat[p]))
    if missing or unexpected or wrong:
      raise PretrainedMismatchError(
          f'pretrained {collection} do not fit the model\'s {"/".join(submodule)}:\n' + listing(
              [('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong)]))
    cast = unflatten_tree({p: jnp.asarray(v, dtype=old_flat[p].dtype)
                           for p, v in new_flat.items()})
    tree = out[collection] = _copy_dicts(out[collection])
    node = tree
    for part in submodule[:-1]:
      node = node[part]
    node[submodule[-1]] = cast
  return out


def _copy_dicts(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {k: _copy_dicts(v) for k, v in tree.items()}
  return tree

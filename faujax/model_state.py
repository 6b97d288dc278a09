"""A Flax NNX model as pure functions of plain nested dicts (what the train step, orbax and the
weight importers see).

``split(model)`` separates the module graph from its variables once; ``variables`` are
``{'params': ..., 'batch_stats': ..., 'constants': ...}`` nested dicts with string keys (a list
of sub-modules at ``layer1`` gives ``layer1/0``, ``layer1/1``, as in torchvision's state-dict
names), so the checkpoint layout, the optimiser's parameter paths and the weight importers' key
maps do not depend on NNX internals. ``ModelFn`` is the pure apply function the jitted steps
call:

  fn = ModelFn.from_model(model)
  outputs, new_batch_stats = fn(variables, batch, train=True, rngs=key)

The three collections:
  params       ``nnx.Param``: trained by the optimiser.
  batch_stats  ``nnx.BatchStat``: running statistics, updated by the forward pass in train mode.
  constants    ``Constant``: what a model derives from the data once, before training (graphs
               from the training labels, label embeddings, class means, Emotion-GCN's
               adjacency). A model takes them as an explicit input (``faujax.models.prepare``
               computes them, ``faujax.models.build`` passes them in), they are neither trained
               nor updated, and they are checkpointed with the run, so that a workdir copied to
               another machine evaluates, fine-tunes and predicts without the dataset.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from flax import nnx

PyTree = Any


class Constant(nnx.Variable):
  """An array a model derives from the data (a graph, embeddings, class means): an explicit input
  of the model, never trained, saved with the run (the ``constants`` collection)."""


# Collection name -> the NNX variable type it holds, in checkpoint order.
COLLECTIONS: dict[str, type[nnx.Variable]] = {
    'params': nnx.Param, 'batch_stats': nnx.BatchStat, 'constants': Constant}


def _stringify(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {str(k): _stringify(v) for k, v in tree.items()}
  return tree


def to_tree(state: nnx.State) -> dict[str, Any]:
  """An ``nnx.State`` as a nested dict of arrays with string keys."""
  return _stringify(nnx.to_pure_dict(state))


def variables(model: nnx.Module) -> dict[str, dict[str, Any]]:
  """``{'params': ..., 'batch_stats': ..., 'constants': ...}`` of ``model`` as nested dicts."""
  return {name: to_tree(nnx.state(model, kind)) for name, kind in COLLECTIONS.items()}


def load_variables(model: nnx.Module, tree: Mapping[str, Mapping[str, Any]]) -> nnx.Module:
  """Sets ``model``'s variables from ``variables``-style dicts, in place (a collection absent
  from ``tree`` is left as it is).

  Raises:
    ValueError: a path is missing or unexpected, or an array has the wrong shape.
  """
  for collection, kind in COLLECTIONS.items():
    if collection not in tree:
      continue
    state = nnx.state(model, kind)
    check_same_structure(to_tree(state), tree[collection], collection)
    nnx.replace_by_pure_dict(state, tree[collection])
    nnx.update(model, state)
  return model


def flatten(tree: Mapping[str, Any], sep: str = '/') -> dict[str, Any]:
  """Nested dict -> ``{'a/b/c': leaf}``."""
  out: dict[str, Any] = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update({f'{key}{sep}{k}': v for k, v in flatten(value, sep).items()})
    else:
      out[str(key)] = value
  return out


def unflatten(flat: Mapping[str, Any], sep: str = '/') -> dict[str, Any]:
  """``{'a/b/c': leaf}`` -> nested dict (the inverse of ``flatten``)."""
  out: dict[str, Any] = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split(sep)
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def check_same_structure(expected: Mapping[str, Any], got: Mapping[str, Any], where: str) -> None:
  """Raises ValueError listing missing / unexpected paths and shape mismatches."""
  flat_e, flat_g = flatten(expected), flatten(got)
  missing = sorted(set(flat_e) - set(flat_g))
  extra = sorted(set(flat_g) - set(flat_e))
  shapes = [f'{k}: expected {tuple(np.shape(flat_e[k]))}, got {tuple(np.shape(flat_g[k]))}'
            for k in sorted(set(flat_e) & set(flat_g))
            if tuple(np.shape(flat_e[k])) != tuple(np.shape(flat_g[k]))]
  if missing or extra or shapes:
    raise ValueError(f'{where}: the variables do not fit the model: missing {missing[:10]}, '
                     f'unexpected {extra[:10]}, shape mismatches {shapes[:10]}.')


def _filled(template: nnx.State, tree: PyTree) -> nnx.State:
  """A copy of ``template`` (its variable types) holding the arrays of ``tree``."""
  state = jax.tree.map(lambda x: x, template)
  nnx.replace_by_pure_dict(state, tree)
  return state


class ModelFn:
  """The pure apply function of an NNX model (see the module docstring).

  Equality is identity, so it can sit in a static (non-pytree) field of a train state.
  """

  def __init__(self, graphdef: Any, templates: Mapping[str, nnx.State], rest: nnx.State):
    self.graphdef = graphdef
    self._templates = dict(templates)  # variable types of every path, per collection
    self._rest = rest                  # any other NNX state (none in faujax's models)

  @classmethod
  def from_model(cls, model: nnx.Module) -> 'ModelFn':
    graphdef, *states, rest = nnx.split(model, *COLLECTIONS.values(), ...)
    return cls(graphdef, dict(zip(COLLECTIONS, states)), rest)

  def module(self, variables: Mapping[str, PyTree]) -> nnx.Module:
    """A module holding ``variables`` (nested dicts), e.g. to call its methods."""
    states = [_filled(self._templates[c], variables.get(c, {})) for c in COLLECTIONS]
    return nnx.merge(self.graphdef, *states, self._rest)

  def __call__(self, variables: Mapping[str, PyTree], batch: dict[str, jax.Array], *,
               train: bool, rngs: jax.Array | None = None
               ) -> tuple[dict[str, jax.Array], PyTree]:
    """``(outputs, new_batch_stats)``; ``rngs`` is the dropout key (train mode)."""
    model = self.module(variables)
    outputs = model(batch, train=train, rngs=None if rngs is None else nnx.Rngs(dropout=rngs))
    return outputs, to_tree(nnx.state(model, nnx.BatchStat))

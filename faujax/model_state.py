"""A Flax NNX model as pure functions of plain nested dicts (what the train step, orbax and the
weight importers see).

``split(model)`` separates the module graph from its variables once; ``variables`` are
``{'params': ..., 'batch_stats': ...}`` nested dicts with string keys (a list of sub-modules at
``layer1`` gives ``layer1/0``, ``layer1/1``, as in torchvision's state-dict names), so the
checkpoint layout, the optimiser's parameter paths and the torchvision key maps do not depend on
NNX internals. ``ModelFn`` is the pure apply function the jitted steps call:

  fn = ModelFn.from_model(model)
  outputs, new_batch_stats = fn(params, batch_stats, batch, train=True, rngs=key)

Anything in the model that is neither ``nnx.Param`` nor ``nnx.BatchStat`` (constant arrays such
as Emotion-GCN's label embeddings and adjacency) stays inside ``ModelFn`` and is not trained or
checkpointed: it is recomputed from the config and the data when the model is built.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
from flax import nnx

PyTree = Any


def _stringify(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {str(k): _stringify(v) for k, v in tree.items()}
  return tree


def to_tree(state: nnx.State) -> dict[str, Any]:
  """An ``nnx.State`` as a nested dict of arrays with string keys."""
  return _stringify(nnx.to_pure_dict(state))


def variables(model: nnx.Module) -> dict[str, dict[str, Any]]:
  """``{'params': ..., 'batch_stats': ...}`` of ``model`` as nested dicts (linen's layout)."""
  return {'params': to_tree(nnx.state(model, nnx.Param)),
          'batch_stats': to_tree(nnx.state(model, nnx.BatchStat))}


def load_variables(model: nnx.Module, tree: Mapping[str, Mapping[str, Any]]) -> nnx.Module:
  """Sets ``model``'s params and batch statistics from ``variables``-style dicts, in place.

  Raises:
    ValueError: a path is missing or unexpected, or an array has the wrong shape.
  """
  for collection, kind in (('params', nnx.Param), ('batch_stats', nnx.BatchStat)):
    state = nnx.state(model, kind)
    check_same_structure(to_tree(state), tree.get(collection, {}), collection)
    nnx.replace_by_pure_dict(state, tree.get(collection, {}))
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


def check_same_structure(expected: Mapping[str, Any], got: Mapping[str, Any], where: str) -> None:
  """Raises ValueError listing missing / unexpected paths and shape mismatches."""
  flat_e, flat_g = flatten(expected), flatten(got)
  missing = sorted(set(flat_e) - set(flat_g))
  extra = sorted(set(flat_g) - set(flat_e))
  shapes = [f'{k}: expected {tuple(flat_e[k].shape)}, got {tuple(flat_g[k].shape)}'
            for k in sorted(set(flat_e) & set(flat_g))
            if tuple(flat_e[k].shape) != tuple(flat_g[k].shape)]
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

  def __init__(self, graphdef: Any, params: nnx.State, batch_stats: nnx.State,
               constants: nnx.State):
    self.graphdef = graphdef
    self._params = params            # templates: variable types of every path
    self._batch_stats = batch_stats
    self._constants = constants

  @classmethod
  def from_model(cls, model: nnx.Module) -> 'ModelFn':
    graphdef, params, batch_stats, constants = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return cls(graphdef, params, batch_stats, constants)

  def module(self, params: PyTree, batch_stats: PyTree) -> nnx.Module:
    """A module holding ``params`` / ``batch_stats`` (nested dicts), e.g. to call its methods."""
    return nnx.merge(self.graphdef, _filled(self._params, params),
                     _filled(self._batch_stats, batch_stats), self._constants)

  def __call__(self, params: PyTree, batch_stats: PyTree, batch: dict[str, jax.Array], *,
               train: bool, rngs: jax.Array | None = None) -> tuple[dict[str, jax.Array], PyTree]:
    """``(outputs, new_batch_stats)``; ``rngs`` is the dropout key (train mode)."""
    model = self.module(params, batch_stats)
    outputs = model(batch, train=train, rngs=None if rngs is None else nnx.Rngs(dropout=rngs))
    return outputs, to_tree(nnx.state(model, nnx.BatchStat))

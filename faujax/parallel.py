"""Data parallelism: a device mesh for ``jit`` and replication helpers for ``pmap``.

faujax writes one training step (``faujax.train.train_step``) and runs it either

* ``'jit'``: ``jax.jit`` over a 1-D mesh with axis ``'data'``; the global batch is a
  ``NamedSharding(mesh, P('data'))`` array, parameters are replicated and XLA inserts the
  gradient all-reduce. BatchNorm statistics are global automatically.
* ``'pmap'``: ``jax.pmap`` with axis name ``'batch'``; the step all-gathers the model outputs so
  the loss sees the global batch and averages gradients with ``lax.pmean``; ``sync_batch_norm``
  makes every BatchNorm of the model average its batch statistics over that axis, so they are the
  global batch's statistics too. Models never see the parallel mode.

With more than one process (``jax.distributed``), each process feeds the shard of the global batch
that its input pipeline produced (``jax.process_index()`` of ``jax.process_count()``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from faujax import layers

PMAP_AXIS = 'batch'
MESH_AXIS = 'data'
MODES = ('jit', 'pmap')


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f'Unknown config.parallelism {mode!r}; expected one of {MODES}.')
  return mode


def check_batch_size(global_batch: int, key: str = 'config.train.batch_size') -> int:
  """The per-process batch; raises if the global batch does not split evenly over devices."""
  n_dev, n_proc = jax.device_count(), jax.process_count()
  if global_batch % n_dev:
    raise ValueError(f'{key}={global_batch} is not divisible by the number of devices ({n_dev}); '
                     f'use a multiple of {n_dev}.')
  return global_batch // n_proc


def sync_batch_norm(model: nnx.Module, axis_name: str | None) -> int:
  """Sets ``axis_name`` on every ``faujax.layers.BatchNorm`` of ``model`` (in place).

  Under ``jax.pmap`` over ``axis_name`` their batch statistics then average over the devices,
  i.e. they are the statistics of the global batch, as under ``jax.jit`` over a sharded batch.
  Returns the number of BatchNorms.
  """
  count = 0
  for _, module in nnx.iter_modules(model):
    if isinstance(module, layers.BatchNorm):
      module.axis_name = axis_name
      count += 1
  return count


def make_mesh(devices: list[Any] | None = None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (MESH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(MESH_AXIS))


def put_replicated(tree: Any, mode: str, mesh: Mesh | None = None,
                   devices: list[Any] | None = None) -> Any:
  """Places a host pytree on the devices as the step of ``mode`` expects it."""
  if mode == 'pmap':
    devices = devices or jax.local_devices()
    n = len(devices)
    stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), tree)
    return jax.device_put(stacked, _stacked_sharding(devices))
  return jax.device_put(tree, replicated(mesh))


def _stacked_sharding(devices: list[Any]) -> NamedSharding:
  """Leading axis split over ``devices``: the layout ``jax.pmap`` takes its inputs in."""
  return NamedSharding(Mesh(np.asarray(devices), (PMAP_AXIS,)), P(PMAP_AXIS))


def put_batch(batch: dict[str, np.ndarray], mode: str, mesh: Mesh | None = None,
              devices: list[Any] | None = None) -> Any:
  """Places this process's batch shard: (n_local, B/n_local, ...) for pmap, a global array for jit."""
  if mode == 'pmap':
    devices = devices or jax.local_devices()
    n = len(devices)
    return jax.device_put(
        jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), batch),
        _stacked_sharding(devices))
  sharding = data_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def prefetch(batches: Iterator[Any], put: Callable[[Any], Any], size: int = 2) -> Iterator[Any]:
  """Yields ``put(batch)`` for each host batch, keeping ``size`` of them on the devices ahead.

  ``put`` (e.g. ``put_batch``) starts an asynchronous host-to-device copy, so with ``size`` >= 2
  the next batch's copy is already queued when a step is dispatched and overlaps that step (the
  device-side prefetch of Flax's ``prefetch_to_device``, for both parallel modes). ``size`` 1
  copies each batch just before its step. Memory: ``size`` batches on every device.
  """
  if size < 1:
    raise ValueError(f'prefetch size: expected an int >= 1, got {size!r}')
  queue: collections.deque[Any] = collections.deque()
  for batch in batches:
    queue.append(put(batch))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def unreplicate(tree: Any, mode: str) -> Any:
  """A host copy of replicated device state."""
  if mode == 'pmap':
    tree = jax.tree.map(lambda x: x[0], tree)
  return jax.device_get(tree)


def gather_outputs(tree: Any, mode: str) -> Any:
  """Per-example device outputs of every process, as host numpy arrays of the global batch."""
  if mode == 'pmap':
    tree = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)
    if jax.process_count() > 1:
      tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def all_gather(tree: Any, axis_name: str | None) -> Any:
  """Inside a pmapped step: concatenates per-device arrays along the batch axis (identity if None)."""
  if axis_name is None:
    return tree
  return jax.lax.all_gather(tree, axis_name, tiled=True)


def pmean(tree: Any, axis_name: str | None) -> Any:
  if axis_name is None:
    return tree
  return jax.lax.pmean(tree, axis_name)


def device_offset(local_batch: int, axis_name: str | None) -> jnp.ndarray:
  """Global index of this device's first example (0 outside pmap)."""
  if axis_name is None:
    return jnp.zeros((), jnp.int32)
  return jax.lax.axis_index(axis_name) * local_batch


@dataclasses.dataclass
class CompiledSteps:
  """The train and eval steps compiled for one parallel mode, with the data placement they need:
  the training loop calls these and never branches on the mode itself."""
  mode: str
  train: Callable[..., Any]
  eval: Callable[..., Any]
  mesh: Any = None
  devices: Any = None

  def put_state(self, state: Any) -> Any:
    return put_replicated(state, self.mode, self.mesh, self.devices)

  def put_batch(self, batch: dict[str, np.ndarray]) -> Any:
    return put_batch(batch, self.mode, self.mesh, self.devices)

  def host_state(self, state: Any) -> dict[str, Any]:
    return unreplicate(state.to_host(), self.mode)

  def host_metrics(self, metrics: dict[str, jax.Array]) -> dict[str, float]:
    if self.mode == 'pmap':
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def compile_steps(mode: str, train_step: Callable[..., Any], eval_step: Callable[..., Any], *,
                  devices: list[Any] | None = None) -> CompiledSteps:
  """``train_step(state, batch, rng, *, axis_name)`` and ``eval_step(state, batch)`` compiled:
  ``jax.jit`` over a data mesh (state and key replicated, batch sharded, the state donated), or
  ``jax.pmap`` over the local devices (or ``devices``) with ``axis_name=PMAP_AXIS``."""
  check_mode(mode)
  if mode == 'pmap':
    train = jax.pmap(functools.partial(train_step, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS,
                     in_axes=(0, 0, None), donate_argnums=(0,), devices=devices)
    evaluate = jax.pmap(eval_step, axis_name=PMAP_AXIS, devices=devices)
    return CompiledSteps(mode, train, evaluate, devices=devices)
  mesh = make_mesh(devices)
  rep, data = replicated(mesh), data_sharding(mesh)
  train = jax.jit(train_step, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                  donate_argnums=(0,))
  evaluate = jax.jit(eval_step, in_shardings=(rep, data), out_shardings=data)
  return CompiledSteps(mode, train, evaluate, mesh, devices)

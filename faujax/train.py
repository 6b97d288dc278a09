"""Training and evaluation: pure ``train_step`` / ``eval_step`` and the loop around them.

The step is written once for both parallel modes (see ``faujax.parallel``): with
``axis_name=None`` it is the global-batch computation that ``jax.jit`` partitions over a device
mesh; with ``axis_name='batch'`` it runs under ``jax.pmap`` on per-device shards, all-gathers the
model outputs so that every loss sees the global batch (losses normalised by a masked count, batch
statistics as in the CCC loss, class weights), and averages the gradients with ``lax.pmean``.
Both give the result of one device with the same global batch.

Data flow: input pipeline (host, uint8) -> ``augment.preprocess`` (device, inside the step) ->
model -> task loss / metrics -> optimiser. Randomness is a function of (seed, step, global example
index), so a resumed run and a run on a different number of devices see the same augmentation.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
from typing import Any, Callable

from absl import logging
import flax
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from faujax import checkpoint as ckpt_lib
from faujax import models
from faujax import optim
from faujax import parallel
from faujax import reporting
from faujax import tasks
from faujax.data import augment
from faujax.data import input_pipeline

Array = jax.Array
PyTree = Any


class TrainState(flax.struct.PyTreeNode):
  """Everything that changes during training; ``nonfinite_step`` >= 0 freezes the state."""
  step: Array
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree
  nonfinite_step: Array
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  def variables(self) -> dict[str, PyTree]:
    return {'params': self.params, 'batch_stats': self.batch_stats}

  def to_host(self) -> dict[str, PyTree]:
    """The pytree that checkpoints store."""
    return {'step': self.step, 'params': self.params, 'batch_stats': self.batch_stats,
            'opt_state': self.opt_state, 'nonfinite_step': self.nonfinite_step}

  def replace_from_host(self, saved: dict[str, PyTree]) -> 'TrainState':
    return self.replace(**saved)


def dummy_batch(info: input_pipeline.DatasetInfo, batch_size: int) -> dict[str, np.ndarray]:
  """A uint8 batch with the pipeline's keys and shapes, for initialisation and benchmarks."""
  s = info.image_size
  return {
      'image': np.zeros((batch_size, s, s, 3), np.uint8),
      'landmarks': np.tile(np.linspace(s * 0.3, s * 0.7, info.num_landmarks * 2, dtype=np.float32)
                           .reshape(1, info.num_landmarks, 2), (batch_size, 1, 1)),
      'au': np.zeros((batch_size, info.num_au), np.float32),
      'au_mask': np.ones((batch_size, info.num_au), np.float32),
      'au_intensity': np.zeros((batch_size, info.num_au), np.float32),
      'expression': np.zeros((batch_size,), np.int32),
      'valence': np.zeros((batch_size,), np.float32),
      'arousal': np.zeros((batch_size,), np.float32),
      'expression_multi': np.zeros((batch_size, 6), np.float32),
      'subject': np.zeros((batch_size,), np.int32),
      'valid': np.ones((batch_size,), np.float32),
  }


def create_train_state(rng: Array, config: ml_collections.ConfigDict, model: Any,
                       info: input_pipeline.DatasetInfo, *, steps_per_epoch: int,
                       total_steps: int) -> tuple[TrainState, optax.Schedule]:
  """Initialises parameters (optionally a pretrained backbone) and the optimiser state."""
  batch = augment.preprocess(jax.random.key(0), dummy_batch(info, 2), config.augment, train=False)
  variables = jax.jit(functools.partial(model.init, train=False))({'params': rng}, batch)
  variables = models.load_pretrained_backbone(config.model, variables)
  params = variables['params']
  tx, schedule = optim.create_optimizer(config, params, steps_per_epoch=steps_per_epoch,
                                        total_steps=total_steps)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                     nonfinite_step=jnp.full((), -1, jnp.int32), apply_fn=model.apply, tx=tx)
  return state, schedule


def _example_keys(rng: Array, local_batch: int, axis_name: str | None) -> Array:
  """One PRNG key per example, indexed by the example's position in the global batch."""
  idx = parallel.device_offset(local_batch, axis_name) + jnp.arange(local_batch)
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(idx)


def train_step(state: TrainState, batch: dict[str, Array], rng: Array, *, task: tasks.Task,
               aug_config: ml_collections.ConfigDict, schedule: optax.Schedule,
               axis_name: str | None = None) -> tuple[TrainState, dict[str, Array]]:
  """One optimisation step on a (global or per-device) uint8 batch.

  Returns the new state and scalar metrics of the global batch. A non-finite loss or gradient
  leaves the state unchanged and records the step in ``state.nonfinite_step`` (host raises).
  """
  step_rng = jax.random.fold_in(rng, state.step)
  aug_rng, dropout_rng = jax.random.split(step_rng)
  local_batch = batch['image'].shape[0]
  batch = augment.preprocess(_example_keys(aug_rng, local_batch, axis_name), batch, aug_config,
                             train=True)
  if axis_name is not None:
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))

  def loss_fn(params):
    outputs, new_vars = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch, train=True,
        mutable=['batch_stats'], rngs={'dropout': dropout_rng})
    outputs = parallel.all_gather(outputs, axis_name)
    targets = parallel.all_gather(task.targets(batch), axis_name)
    loss, aux = task.loss(outputs, targets)
    return loss, (aux, new_vars.get('batch_stats', {}))

  (loss, (aux, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = parallel.pmean(grads, axis_name)
  batch_stats = parallel.pmean(batch_stats, axis_name)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.global_norm(grads)

  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (state.nonfinite_step < 0)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
  new_state = state.replace(
      step=state.step + 1,
      params=keep(params, state.params),
      batch_stats=keep(batch_stats, state.batch_stats),
      opt_state=keep(opt_state, state.opt_state),
      nonfinite_step=jnp.where(ok | (state.nonfinite_step >= 0), state.nonfinite_step, state.step))
  metrics = {'loss': loss, 'grad_norm': grad_norm, 'learning_rate': schedule(state.step), **aux}
  return new_state, metrics


def eval_step(state: TrainState, batch: dict[str, Array], *, task: tasks.Task,
              aug_config: ml_collections.ConfigDict) -> dict[str, Array]:
  """Per-example outputs the task's metrics need (probabilities, targets, masks, ``valid``)."""
  batch = augment.preprocess(None, batch, aug_config, train=False)
  outputs = state.apply_fn(state.variables(), batch, train=False)
  return {**task.eval_outputs(outputs, task.targets(batch)), 'valid': batch['valid']}


@dataclasses.dataclass
class CompiledSteps:
  """The train and eval steps compiled for one parallel mode, with the data placement they need."""
  mode: str
  train: Callable[..., tuple[TrainState, dict[str, Array]]]
  eval: Callable[..., dict[str, Array]]
  mesh: Any = None
  devices: Any = None

  def put_state(self, state: TrainState) -> TrainState:
    return parallel.put_replicated(state, self.mode, self.mesh, self.devices)

  def put_batch(self, batch: dict[str, np.ndarray]) -> Any:
    return parallel.put_batch(batch, self.mode, self.mesh, self.devices)

  def host_state(self, state: TrainState) -> dict[str, PyTree]:
    return parallel.unreplicate(state.to_host(), self.mode)

  def host_metrics(self, metrics: dict[str, Array]) -> dict[str, float]:
    if self.mode == 'pmap':
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def compile_steps(mode: str, *, task: tasks.Task, config: ml_collections.ConfigDict,
                  schedule: optax.Schedule, devices: list[Any] | None = None) -> CompiledSteps:
  """``jax.jit`` over a data mesh, or ``jax.pmap`` over the local devices (or ``devices``)."""
  parallel.check_mode(mode)
  if mode == 'pmap':
    train = jax.pmap(
        functools.partial(train_step, task=task, aug_config=config.augment, schedule=schedule,
                          axis_name=parallel.PMAP_AXIS),
        axis_name=parallel.PMAP_AXIS, in_axes=(0, 0, None), donate_argnums=(0,), devices=devices)
    evaluate = jax.pmap(functools.partial(eval_step, task=task, aug_config=config.augment),
                        axis_name=parallel.PMAP_AXIS, devices=devices)
    return CompiledSteps(mode, train, evaluate, devices=devices)
  mesh = parallel.make_mesh(devices)
  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  train = jax.jit(
      functools.partial(train_step, task=task, aug_config=config.augment, schedule=schedule),
      in_shardings=(rep, data, rep), out_shardings=(rep, rep), donate_argnums=(0,))
  evaluate = jax.jit(functools.partial(eval_step, task=task, aug_config=config.augment),
                     in_shardings=(rep, data), out_shardings=data)
  return CompiledSteps(mode, train, evaluate, mesh, devices)


def evaluate(steps: CompiledSteps, state: TrainState, config: ml_collections.ConfigDict,
             task: tasks.Task, split: str, num_examples: int,
             return_arrays: bool = False) -> Any:
  """Metrics of ``split``, accumulated over every example (each process feeds its own shard).

  With ``return_arrays``, returns (metrics, the accumulated per-example arrays).
  """
  local_batch = parallel.check_batch_size(config.eval.batch_size, 'config.eval.batch_size')
  del num_examples  # the iterator pads every process to the same number of batches
  it = input_pipeline.create_split(config.data, split, batch_size=local_batch, train=False,
                                   process_index=jax.process_index(),
                                   process_count=jax.process_count())
  accumulator = task.accumulator()
  for batch in it:
    accumulator.add(parallel.gather_outputs(steps.eval(state, steps.put_batch(batch)), steps.mode))
  if return_arrays:
    return accumulator.compute(), accumulator.arrays()
  return accumulator.compute()


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between steps (save, then exit cleanly)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker): no handler
      self._previous = None
    return self

  def _handle(self, signum, frame):
    logging.warning('SIGTERM received: saving a checkpoint and stopping.')
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class NonFiniteError(FloatingPointError):
  """The loss or the gradients became NaN or Inf."""


def _check_finite(host_state: dict[str, Any], workdir: str) -> None:
  bad = int(host_state['nonfinite_step'])
  if bad >= 0:
    raise NonFiniteError(
        f'Non-finite loss or gradients at step {bad}; training stopped. The last good checkpoint '
        f'in {os.path.join(workdir, "checkpoints")} holds the state before that step.')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and evaluates.

  Returns the final results dict that is also written to ``workdir/results.json``.
  """
  mode = parallel.check_mode(config.parallelism)
  local_batch = parallel.check_batch_size(config.train.batch_size)
  parallel.check_batch_size(config.eval.batch_size, 'config.eval.batch_size')
  models.check_config(config.model)
  info = input_pipeline.get_dataset_info(config.data)
  task = tasks.build(config, info)
  model = models.build(config.model, info,
                       bn_axis_name=parallel.PMAP_AXIS if mode == 'pmap' else None)
  steps_per_epoch = max(info.num_examples['train'] // config.train.batch_size, 1)
  total_steps = config.train.get('num_steps') or int(config.train.num_epochs * steps_per_epoch)

  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  state, schedule = create_train_state(init_rng, config, model, info,
                                       steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  os.makedirs(workdir, exist_ok=True)
  checkpointer = ckpt_lib.Checkpointer(workdir, config, keep=config.checkpoint.keep,
                                       best_metric=task.selection_metric if
                                       info.num_examples.get('validation') else None)
  restored = checkpointer.restore_latest(jax.device_get(state.to_host()))
  if restored is not None:
    state = state.replace_from_host(restored)
    reporting.say(f'Resumed from step {int(restored["step"])} in {workdir}.')
  start_step = int(jax.device_get(state.step))
  _check_finite(jax.device_get(state.to_host()), workdir)

  steps = compile_steps(mode, task=task, config=config, schedule=schedule)
  state = steps.put_state(state)
  writer = reporting.create_writer(workdir)
  progress = reporting.Progress(total_steps, start_step)
  train_iter = input_pipeline.create_split(
      config.data, 'train', batch_size=local_batch, train=True, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      start_batch=start_step)

  reporting.say(f'Training {config.model.name} on {info.name}/{info.builder_config} '
                f'({info.num_examples["train"]} training examples, labels {info.label_names}) for '
                f'{total_steps} steps ({steps_per_epoch} per epoch), {mode} over '
                f'{jax.device_count()} devices, starting at step {start_step}.')
  history = []
  with _Preemption() as preemption:
    for step in range(start_step + 1, total_steps + 1):
      batch = steps.put_batch(next(train_iter))
      state, metrics = steps.train(state, batch, step_rng)
      last = step == total_steps
      if step % config.train.log_every == 0 or last:
        host = steps.host_metrics(metrics)
        _check_finite(jax.device_get(parallel.unreplicate(
            {'nonfinite_step': state.nonfinite_step}, mode)), workdir)
        writer.write_scalars(step, {f'train/{k}': v for k, v in host.items()})
        progress.report(step, host['loss'])
      if (step % config.train.eval_every == 0 or last) and info.num_examples.get('validation'):
        val = evaluate(steps, state, config, task, 'validation', info.num_examples['validation'])
        val = {k: float(v) for k, v in val.items()
               if isinstance(v, (float, int, np.number)) and not k.startswith('trivial/')}
        writer.write_scalars(step, {f'validation/{k}': v for k, v in val.items()})
        history.append({'step': step, **val})
        reporting.say(f'step {step} validation {task.selection_metric} '
                      f'{val[task.selection_metric]:.4f}')
        checkpointer.save_best(step, steps.host_state(state), val)
      if step % config.checkpoint.every == 0 or last or preemption.requested:
        host_state = steps.host_state(state)
        _check_finite(host_state, workdir)
        checkpointer.save(step, host_state, force=True)
      if preemption.requested:
        checkpointer.wait()
        reporting.say(f'Stopped at step {step} after SIGTERM; run the same command to resume.')
        writer.flush()
        return {'preempted_at_step': step}

  checkpointer.wait()
  final_state = state
  best = checkpointer.restore_best(jax.device_get(steps.host_state(state)))
  selected = 'final'
  if best is not None:
    best_state, best_step = best
    final_state = steps.put_state(TrainState(apply_fn=model.apply, tx=state.tx, **best_state))
    selected = f'best validation {task.selection_metric} at step {best_step}'
  test_split = 'test' if info.num_examples.get('test') else 'validation'
  test, arrays = evaluate(steps, final_state, config, task, test_split,
                          info.num_examples[test_split], return_arrays=True)
  if task.write_figures is not None and jax.process_index() == 0:
    host = steps.host_state(final_state)
    written = task.write_figures(workdir, model, {'params': host['params'],
                                                  'batch_stats': host['batch_stats']}, arrays)
    reporting.say('Figures: ' + ', '.join(sorted(written.values())))
  trivial = {k.split('/', 1)[1]: v for k, v in test.items() if k.startswith('trivial/')}
  test = {k: v for k, v in test.items() if not k.startswith('trivial/')}
  results = reporting.write_results(
      workdir, config=config, task=task, info=info, metrics=test, split=test_split,
      selected=selected, history=history, trivial=trivial)
  writer.flush()
  return results

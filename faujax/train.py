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

import functools
import os
import signal
from typing import Any

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from faujax import checkpoint as ckpt_lib
from faujax import config_base
from faujax import model_state
from faujax import models
from faujax import optim
from faujax import parallel
from faujax import reporting
from faujax import evaluators
from faujax import faces as faces_lib
from faujax import initialization
from faujax import stages as stages_lib
from faujax import tasks
from faujax import workdir_lock
from faujax.data import augment
from faujax.data import input_pipeline
from faujax.data import dataset_info
from faujax.data import builders

Array = jax.Array
PyTree = Any


class TrainState(flax.struct.PyTreeNode):
  """Everything a run checkpoints; ``nonfinite_step`` >= 0 freezes the state.

  ``params``, ``batch_stats`` and ``constants`` are nested dicts (``faujax.model_state``; the
  constants never change); ``apply_fn`` is the model's pure apply function, ``(variables, batch,
  *, train, rngs) -> (outputs, new_batch_stats)``.
  """
  step: Array
  params: PyTree
  batch_stats: PyTree
  constants: PyTree
  opt_state: PyTree
  nonfinite_step: Array
  apply_fn: model_state.ModelFn = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  def variables(self) -> dict[str, PyTree]:
    return {'params': self.params, 'batch_stats': self.batch_stats, 'constants': self.constants}

  def to_host(self) -> dict[str, PyTree]:
    """The pytree that checkpoints store."""
    return {'step': self.step, 'params': self.params, 'batch_stats': self.batch_stats,
            'constants': self.constants, 'opt_state': self.opt_state,
            'nonfinite_step': self.nonfinite_step}

  def replace_from_host(self, saved: dict[str, PyTree]) -> 'TrainState':
    return self.replace(**saved)


def create_train_state(rng: Array, config: ml_collections.ConfigDict,
                       info: dataset_info.DatasetInfo, *, steps_per_epoch: int,
                       total_steps: int, constants: dict[str, Any] | None = None
                       ) -> tuple[TrainState, optax.Schedule]:
  """Builds and initialises the model (optionally a pretrained trunk) and the optimiser state.
  ``constants``: the model's (None: prepared from the data)."""
  model = initialization.create_model(config, info, rng, constants)
  variables = model_state.variables(model)
  params = variables['params']
  sections = config_base.config_sections(config)
  tx, schedule = optim.create_optimizer(sections['optim'], sections['schedule'], params,
                                        steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables['batch_stats'], constants=variables['constants'],
                     opt_state=tx.init(params), nonfinite_step=jnp.full((), -1, jnp.int32),
                     apply_fn=model_state.ModelFn.from_model(model), tx=tx)
  return state, schedule


def build_task(config: ml_collections.ConfigDict, info: dataset_info.DatasetInfo) -> tasks.Task:
  """The task of ``info`` with the config's loss, threshold and selection metric and the model's
  auxiliary loss terms."""
  sections = config_base.config_sections(config)
  return tasks.build(info, sections['loss'], threshold=sections['eval'].threshold,
                     selection_metric=sections['eval'].selection_metric,
                     model_terms=models.loss_terms(config.model.name))


def dataset_record(info: dataset_info.DatasetInfo) -> dict[str, Any]:
  """The checkpoints' ``dataset`` item: ``info``'s label space and, for a dataset whose faces
  inference aligns to the training faces ('template', ``faujax.faces``), their mean five points
  (``face_template``)."""
  record = info.to_record()
  if faces_lib.method_for(info) == 'template':
    try:
      landmarks = info.train_labels.get('landmarks')
    except Exception:  # pylint: disable=broad-except  # a hand-made info without a dataset
      landmarks = None
    template = (None if landmarks is None
                else faces_lib.template_from_landmarks(np.asarray(landmarks)))
    record['face_template'] = None if template is None else template.tolist()
  return record


def _example_keys(rng: Array, local_batch: int, axis_name: str | None) -> Array:
  """One PRNG key per example, indexed by the example's position in the global batch."""
  idx = parallel.device_offset(local_batch, axis_name) + jnp.arange(local_batch)
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(idx)


def train_step(state: TrainState, batch: dict[str, Array], rng: Array, *, task: tasks.Task,
               aug_config: augment.AugmentConfig, schedule: optax.Schedule,
               axis_name: str | None = None, trainable: PyTree | None = None,
               loss_terms: tuple[str, ...] | None = None) -> tuple[TrainState, dict[str, Array]]:
  """One optimisation step on a (global or per-device) uint8 batch.

  Returns the new state and scalar metrics of the global batch. A non-finite loss or gradient
  leaves the state unchanged and records the step in ``state.nonfinite_step`` (host raises).
  A training stage (``faujax.stages``) passes ``trainable`` (a tree of bools like the params:
  False = no gradient and no update, so the parameter is unchanged) and ``loss_terms`` (the
  task's loss terms that make up the loss; None = all).
  """
  step_rng = jax.random.fold_in(rng, state.step)
  aug_rng, dropout_rng = jax.random.split(step_rng)
  local_batch = batch['image'].shape[0]
  batch = augment.preprocess(_example_keys(aug_rng, local_batch, axis_name), batch, aug_config,
                             train=True)
  if axis_name is not None:
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))

  def loss_fn(params):
    outputs, batch_stats = state.apply_fn({**state.variables(), 'params': params}, batch,
                                          train=True, rngs=dropout_rng)
    outputs = parallel.all_gather(outputs, axis_name)
    targets = parallel.all_gather(task.targets(batch), axis_name)
    if loss_terms is None:
      loss, aux = task.loss(outputs, targets)
    else:
      loss, aux = task.loss(outputs, targets, loss_terms)
    return loss, (aux, batch_stats)

  # Under pmap every BatchNorm already averaged its statistics over the devices
  # (``parallel.sync_batch_norm``), so ``batch_stats`` is the same on every device.
  (loss, (aux, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = parallel.pmean(grads, axis_name)
  if trainable is not None:
    grads = _frozen_to_zero(grads, trainable)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  if trainable is not None:  # weight decay and momentum must not move a frozen parameter either
    updates = _frozen_to_zero(updates, trainable)
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


def _frozen_to_zero(tree: PyTree, trainable: PyTree) -> PyTree:
  return jax.tree.map(lambda x, t: x if t else jnp.zeros_like(x), tree, trainable)


def eval_step(state: TrainState, batch: dict[str, Array], *, task: tasks.Task,
              aug_config: augment.AugmentConfig) -> dict[str, Array]:
  """Per-example outputs the task's metrics need (probabilities, targets, masks, ``valid``)."""
  return predict_batch(state.apply_fn, state.variables(), batch, task=task, aug_config=aug_config)


def predict_batch(apply_fn: model_state.ModelFn, variables: PyTree, batch: dict[str, Array], *,
                  task: tasks.Task, aug_config: augment.AugmentConfig) -> dict[str, Array]:
  """``eval_step`` of a model given as its apply function and variables (``faujax.predictor``):
  the evaluation preprocessing, the model in eval mode, the task's per-example outputs."""
  batch = augment.preprocess(None, batch, aug_config, train=False)
  outputs, _ = apply_fn(variables, batch, train=False)
  return {**task.eval_outputs(outputs, task.targets(batch)), 'valid': batch['valid']}


def split_outputs(apply_fn: model_state.ModelFn, variables: PyTree, *, data_config: Any,
                  aug_config: augment.AugmentConfig, split: str, keys: tuple[str, ...],
                  batch_size: int = 64) -> dict[str, np.ndarray]:
  """The model's eval-mode outputs ``keys`` over a split of ``data_config`` (one process), each
  concatenated over the split's examples; ``batch/<key>`` names a preprocessed batch entry
  (e.g. ``batch/landmarks`` in the model's input frame, ``batch/valid``)."""

  @jax.jit
  def run(v, batch):
    batch = augment.preprocess(None, batch, aug_config, train=False)
    outputs, _ = apply_fn(v, batch, train=False)
    return {k: batch[k[len('batch/'):]] if k.startswith('batch/') else outputs[k] for k in keys}

  parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
  for batch in input_pipeline.create_split(data_config, split, batch_size=batch_size,
                                           train=False):
    for k, v in run(variables, batch).items():
      parts[k].append(np.asarray(v))
  return {k: np.concatenate(v) for k, v in parts.items()}


def compile_steps(mode: str, *, task: tasks.Task, aug_config: augment.AugmentConfig,
                  schedule: optax.Schedule, devices: list[Any] | None = None,
                  trainable: PyTree | None = None,
                  loss_terms: tuple[str, ...] | None = None) -> parallel.CompiledSteps:
  """``train_step`` and ``eval_step`` compiled for the parallel ``mode``
  (``faujax.parallel.compile_steps``). Under pmap the state must come from a model whose
  BatchNorms were synced (``create_model`` with ``config.parallelism='pmap'``). ``trainable`` /
  ``loss_terms``: a training stage's (see ``train_step``)."""
  return parallel.compile_steps(
      mode, functools.partial(train_step, task=task, aug_config=aug_config, schedule=schedule,
                              trainable=trainable, loss_terms=loss_terms),
      functools.partial(eval_step, task=task, aug_config=aug_config), devices=devices)


def dispatch_step(steps: parallel.CompiledSteps, state: TrainState, batch: Any,
                  rng: Array) -> tuple[TrainState, dict[str, Array]]:
  """Dispatches one train step on a batch already on the devices, without waiting for it.

  Implicit host transfers here raise (``jax.transfer_guard_*('disallow')``): ``float()`` of a
  device value would make the host wait for the devices, and a numpy array handed to the step
  would be copied synchronously, at every step. Device-to-device copies (the replicated step
  key) are allowed; the batch comes from ``parallel.prefetch`` outside the guard. The loop
  reads metrics back only every ``config.train.log_every`` steps, so between those the host runs
  ahead, reading and copying the next batches. On the CPU, where device arrays are host memory,
  JAX guards only the host-to-device direction.
  """
  with jax.transfer_guard_host_to_device('disallow'), \
       jax.transfer_guard_device_to_host('disallow'):
    return steps.train(state, batch, rng)


def evaluate(steps: parallel.CompiledSteps, state: TrainState, data_config: Any, eval_batch_size: int,
             task: tasks.Task, split: str, return_arrays: bool = False) -> Any:
  """Metrics of ``split``, accumulated over every example (each process feeds its own shard;
  the iterator pads every process to the same number of batches).

  With ``return_arrays``, returns (metrics, the accumulated per-example arrays).
  """
  local_batch = parallel.check_batch_size(eval_batch_size, 'config.eval.batch_size')
  it = input_pipeline.create_split(data_config, split, batch_size=local_batch, train=False,
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


def _nonfinite_message(what: str, checkpointer: ckpt_lib.Checkpointer | None,
                       target: dict[str, Any] | None) -> str:
  """``what``, then the newest checkpoint that exists and passes verification (all values
  finite), or that there is none."""
  good = None
  if checkpointer is not None and target is not None:
    checkpointer.wait()
    good = checkpointer.last_good(jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), target))
  if good is not None:
    return (f'{what}; training stopped. The newest good checkpoint, {good.path} (step '
            f'{good.step}, verified: checksums match, all values finite), holds the state before '
            'that. Lower the learning rate (or fix the data) and resume from it with '
            '--allow_config_change, or start over in a new --workdir.')
  where = f' in {checkpointer.workdir}' if checkpointer is not None else ''
  return (f'{what}; training stopped. No checkpoint was saved before that{where}, so there is '
          'nothing to resume: lower the learning rate (or fix the data) and start over in a new '
          '--workdir.')


def _check_finite(host_state: dict[str, Any], checkpointer: ckpt_lib.Checkpointer | None = None,
                  target: dict[str, Any] | None = None) -> None:
  """Raises NonFiniteError when ``host_state`` records a non-finite step or holds a NaN / Inf.

  ``host_state`` may be only ``{'nonfinite_step': ...}`` (the check between checkpoints); the
  message names the newest verified checkpoint of ``checkpointer`` (restored into the tree of
  ``target``, by default ``host_state``), or says that there is none.
  """
  target = target if target is not None else (host_state if 'params' in host_state else None)
  bad = int(host_state['nonfinite_step'])
  if bad >= 0:
    raise NonFiniteError(_nonfinite_message(f'Non-finite loss or gradients at step {bad}',
                                            checkpointer, target))
  if 'params' in host_state:
    leaves = ckpt_lib.nonfinite_leaves(host_state)
    if leaves:
      raise NonFiniteError(_nonfinite_message(
          f'Non-finite values in {", ".join(leaves[:3])} at step {int(host_state["step"])}',
          checkpointer, target))


def _enter_stage(plan: list[stages_lib.Stage], index: int, state: TrainState,
                 steps: parallel.CompiledSteps | None, step: int, sec: dict[str, Any], task: tasks.Task,
                 mode: str, steps_per_epoch: int) -> tuple[TrainState, parallel.CompiledSteps]:
  """The state (on the devices) and compiled steps of stage ``index``, entered at ``step``.

  The stage's optimiser and schedule (counted from its first step) replace the previous ones;
  entering a later stage at its first step starts a fresh optimiser state from the current
  parameters and batch statistics (a resume in the middle of a stage keeps the restored one).
  ``steps`` None: ``state`` is on the host (before training starts).
  """
  stage = plan[index]
  host = state.to_host() if steps is None else steps.host_state(state)
  tx, base = optim.create_optimizer(sec['optim'], sec['schedule'], host['params'],
                                    steps_per_epoch=steps_per_epoch, total_steps=stage.num_steps)
  schedule = base if stage.start == 0 else (lambda s: base(s - stage.start))
  if index > 0 and step == stage.start:
    host = {**host, 'opt_state': tx.init(host['params'])}
  trainable = (stages_lib.trainable_mask(host['params'], stage.params,
                                         f'config.train.stages.{stage.name}.params')
               if stage.params else None)
  new_steps = compile_steps(mode, task=task, aug_config=sec['augment'], schedule=schedule,
                            trainable=trainable, loss_terms=stage.losses)
  if steps is not None:  # the eval step does not depend on the stage: keep its compilation
    new_steps.eval = steps.eval
  if len(plan) > 1:
    reporting.say(f'Stage {index + 1}/{len(plan)} {stage.name!r}: steps {stage.start + 1}-'
                  f'{stage.end}, training {", ".join(stage.params) or "every parameter"} on '
                  f'{", ".join(stage.losses or ()) or "every loss term"}.')
  return new_steps.put_state(TrainState(apply_fn=state.apply_fn, tx=tx, **host)), new_steps


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming from its newest good checkpoint) and evaluates.

  A resume with a config that differs from the run's is refused with the changed keys unless
  ``allow_config_change`` (then recorded in ``workdir/config_history.json``; see
  ``faujax.checkpoint``). The run holds the workdir's lock throughout: a second training on the
  same workdir is refused (``faujax.workdir_lock``). Returns the final results dict that is also
  written to ``workdir/results.json``.
  """
  with workdir_lock.hold(workdir):
    return _train_and_evaluate(config, workdir, allow_config_change)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        allow_config_change: bool) -> dict[str, Any]:
  config = config_base.resolve_config(config)
  sec = config_base.config_sections(config)
  mode = parallel.check_mode(config.parallelism)
  local_batch = parallel.check_batch_size(sec['train'].batch_size)
  parallel.check_batch_size(sec['eval'].batch_size, 'config.eval.batch_size')
  info = builders.get_dataset_info(config.data)
  task = build_task(config, info)
  steps_per_epoch = max(info.num_examples['train'] // sec['train'].batch_size, 1)
  plan = stages_lib.plan(
      sec['train'].stage_order, sec['train'].stages, steps_per_epoch=steps_per_epoch,
      single_stage_steps=sec['train'].num_steps or int(sec['train'].num_epochs * steps_per_epoch),
      loss_terms=task.loss_terms)
  total_steps = plan[-1].end

  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  state, _ = create_train_state(init_rng, config, info, steps_per_epoch=steps_per_epoch,
                                total_steps=plan[0].num_steps)
  checkpointer = ckpt_lib.Checkpointer(workdir, config, keep=sec['checkpoint'].keep,
                                       best_metric=task.selection_metric if
                                       info.num_examples.get('validation') else None,
                                       allow_config_change=allow_config_change,
                                       dataset=dataset_record(info))
  host_target = jax.device_get(state.to_host())
  restored = checkpointer.restore_latest(host_target)
  history: list[dict[str, Any]] = []
  if restored is not None:
    state = state.replace_from_host(restored.state)
    # As saved in the checkpoint (JSON: NaN was written as null).
    history = [{k: float('nan') if v is None else v for k, v in entry.items()}
               for entry in restored.history]
    checkpointer.check_best(host_target)
    reporting.say(f'Resumed from step {restored.step} in {workdir}.')
  start_step = int(jax.device_get(state.step))
  checkpointer.record.record_config(start_step, restored)
  del restored
  # The tree, shapes and dtypes a checkpoint must have (for the NaN message's verified one).
  host_target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                             host_target)
  _check_finite(jax.device_get(state.to_host()), checkpointer)

  ablation = f' (ablation {config.ablation})' if config.ablation else ''
  reporting.say(f'Training {config.model.name}{ablation} on {info.name}/{info.builder_config} '
                f'({info.num_examples["train"]} training examples, labels {info.label_names}) for '
                f'{total_steps} steps ({steps_per_epoch} per epoch), {mode} over '
                f'{jax.device_count()} devices, starting at step {start_step}.')
  stage_index = stages_lib.stage_of_step(plan, start_step)
  state, steps = _enter_stage(plan, stage_index, state, None, start_step, sec, task, mode,
                              steps_per_epoch)
  writer = reporting.create_writer(workdir)
  progress = reporting.Progress(total_steps, start_step)
  train_iter = input_pipeline.create_split(
      config.data, 'train', batch_size=local_batch, train=True, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      start_batch=start_step)
  # Where a batch goes does not depend on the stage (one mode, one mesh): the lambda reads the
  # current ``steps``.
  device_batches = parallel.prefetch(train_iter, lambda b: steps.put_batch(b),
                                     sec['train'].prefetch_batches)
  log_every, eval_every = sec['train'].log_every, sec['train'].eval_every
  with _Preemption() as preemption:
    for step in range(start_step + 1, total_steps + 1):
      if stages_lib.stage_of_step(plan, step - 1) != stage_index:
        stage_index += 1
        state, steps = _enter_stage(plan, stage_index, state, steps, step - 1, sec, task, mode,
                                    steps_per_epoch)
      state, metrics = dispatch_step(steps, state, next(device_batches), step_rng)
      last = step == plan[stage_index].end  # the end of the run or of a stage
      if step % log_every == 0 or last:
        host = steps.host_metrics(metrics)
        _check_finite(jax.device_get(parallel.unreplicate(
            {'nonfinite_step': state.nonfinite_step}, mode)), checkpointer, host_target)
        writer.write_scalars(step, {f'train/{k}': v for k, v in host.items()})
        progress.report(step, host['loss'])
      if (step % eval_every == 0 or step == total_steps) and info.num_examples.get('validation'):
        val = evaluate(steps, state, config.data, sec['eval'].batch_size, task, 'validation')
        val = {k: float(v) for k, v in val.items()
               if isinstance(v, (float, int, np.number)) and not k.startswith('trivial/')}
        if task.selection_metric not in val:
          checkpointer.save(step, steps.host_state(state), history=history, force=True)
          raise ValueError(
              f'config.eval.selection_metric: {task.selection_metric!r} is not a validation '
              f'metric of this task; it has {", ".join(sorted(val))}. The steps trained so far '
              f'are saved ({os.path.join(workdir, "checkpoints", str(step))}): run again with '
              'one of these and --allow_config_change to resume.')
        writer.write_scalars(step, {f'validation/{k}': v for k, v in val.items()})
        history.append({'step': step, **val})
        reporting.say(f'step {step} validation {task.selection_metric} '
                      f'{val[task.selection_metric]:.4f}')
        best_candidate = steps.host_state(state)
        _check_finite(best_candidate, checkpointer)
        # Earlier stages do not train the whole model; a checkpoint is the best when no
        # validation of the final stage in the history (kept across resumes) beat it, so a
        # lost best checkpoint is never replaced by a worse one.
        if (stage_index == len(plan) - 1 and ckpt_lib.best_in_history(
            history, task.selection_metric, after=plan[-1].start)['step'] == step):
          checkpointer.save_best(step, best_candidate, val)
      if step % sec['checkpoint'].every == 0 or last or preemption.requested:
        host_state = steps.host_state(state)
        _check_finite(host_state, checkpointer)
        checkpointer.save(step, host_state, history=history, force=True)
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
    final_state = steps.put_state(TrainState(apply_fn=state.apply_fn, tx=state.tx, **best_state))
    selected = f'best validation {task.selection_metric} at step {best_step}'
  elif checkpointer.best_failure:
    selected = f'final ({checkpointer.best_failure})'
  expected = ckpt_lib.best_in_history(history, task.selection_metric, after=plan[-1].start)
  if (expected is not None and not checkpointer.best_failure
      and (best is None or best[1] != expected['step'])):
    missing = (f'the best checkpoint, step {expected["step"]} by the validation history '
               f'({task.selection_metric} {expected[task.selection_metric]:.4f}), is not in '
               f'{os.path.join(workdir, "best")}')
    reporting.warn(f'{missing[0].upper()}{missing[1:]}; the results are those of the '
                   f'{"final state" if best is None else f"checkpoint of step {best[1]}"}.')
    selected = f'{selected} ({missing})'
  test_split = 'test' if info.num_examples.get('test') else 'validation'
  test, arrays = evaluate(steps, final_state, config.data, sec['eval'].batch_size, task,
                          test_split, return_arrays=True)
  evals = {}
  names = models.evaluators(config.model.name) + tuple(config.evals)
  if names and jax.process_index() == 0:
    host = steps.host_state(final_state)
    variables = {k: host[k] for k in ('params', 'batch_stats', 'constants')}
    evals = evaluators.run(names, evaluators.Context(
        workdir=workdir, model=state.apply_fn.module(variables), info=info, arrays=arrays,
        outputs=lambda keys: split_outputs(state.apply_fn, variables, data_config=config.data,
                                           aug_config=sec['augment'], split=test_split,
                                           keys=keys, batch_size=sec['eval'].batch_size)))
    if evals:
      reporting.say('Evaluators: ' + ', '.join(f'{k} {v}' for k, v in sorted(evals.items())))
  trivial = {k.split('/', 1)[1]: v for k, v in test.items() if k.startswith('trivial/')}
  test = {k: v for k, v in test.items() if not k.startswith('trivial/')}
  writer.write_scalars(total_steps, {f'{test_split}/{k}': float(v) for k, v in test.items()
                                     if isinstance(v, (float, int, np.number))})
  results = reporting.write_results(
      workdir, config=config, task=task, info=info, metrics=test, split=test_split,
      selected=selected, history=history, trivial=trivial, evals=evals)
  writer.flush()
  return results

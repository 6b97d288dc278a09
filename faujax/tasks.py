"""Tasks: which labels a model is trained on, with which loss, evaluated with which metrics.

A task sits between the model and the train loop: it picks the label arrays from a batch
(``targets``), turns model outputs and targets into the scalar training loss (``loss``), into the
per-example arrays that evaluation accumulates (``eval_outputs``), and names the validation metric
that selects checkpoints. Losses see the *global* batch (see ``faujax.train``).

Config keys (``config.loss``):
  AU task:  ``name`` one of ``AU_LOSSES``; ``weighted`` (occurrence-rate weights, AU-GCN eq. 7);
            ``dice_weight`` (AU-GCN eq. 8 term added to BCE in 'bce_dice');
            ``landmark_weight`` (MGRR-Net eq. 10, used when the model outputs ``landmarks``);
            ``reconstruction_weight`` (AU-GCN eq. 1, when it outputs ``reconstruction``).
  expression task: ``class_weighted`` (Emotion-GCN eq. 9), ``va`` one of ``VA_LOSSES`` and
            ``va_weight`` (Emotion-GCN eq. 8, 10-12).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from faujax import losses
from faujax import metrics as metrics_lib

AU_LOSSES = ('bce', 'bce_dice', 'asymmetric')
VA_LOSSES = ('none', 'mse', 'ccc')
Outputs = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
  """The label side of a training run (see the module docstring)."""
  name: str
  label_names: tuple[str, ...]
  targets: Callable[[dict[str, jax.Array]], dict[str, jax.Array]]
  loss: Callable[[Outputs, dict[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]
  eval_outputs: Callable[[Outputs, dict[str, jax.Array]], dict[str, jax.Array]]
  selection_metric: str
  accumulator: Callable[[], 'TaskAccumulator']
  table: Callable[[dict[str, float]], str]
  # Optional: (workdir, model, variables, accumulated test arrays) -> {figure: path}.
  write_figures: Callable[..., dict[str, str]] | None = None


class TaskAccumulator(metrics_lib.Accumulator):
  """Adds the trivial predictor's metrics ('trivial/<metric>') to every ``compute``."""

  def __init__(self, trivial: Callable[[dict[str, np.ndarray]], dict[str, float]], **kwargs):
    super().__init__(**kwargs)
    self._trivial = trivial

  def add(self, batch_outputs, valid=None):
    batch_outputs = dict(batch_outputs)
    if valid is None and 'valid' in batch_outputs:
      valid = batch_outputs.pop('valid')
    super().add(batch_outputs, valid)

  def compute(self) -> dict[str, float]:
    out = super().compute()
    if out:
      out.update({f'trivial/{k}': v for k, v in self._trivial(self.arrays()).items()})
    return out


def _au_probs(outputs: Outputs) -> jax.Array:
  if 'au_probs' in outputs:
    return outputs['au_probs']
  return jax.nn.sigmoid(outputs['au_logits'])


def _au_task(config: ml_collections.ConfigDict, info: Any) -> Task:
  cfg = config.loss
  name = cfg.get('name', 'bce')
  if name not in AU_LOSSES:
    raise ValueError(f'Unknown config.loss.name {name!r} for the AU task; expected one of '
                     f'{AU_LOSSES}.')
  weights = (losses.occurrence_weights(np.asarray(info.train_occurrence_rates))
             if cfg.get('weighted', True) else jnp.ones((info.num_labels,), jnp.float32))
  names = tuple(info.label_names)

  def targets(batch):
    return {'au': batch['au'], 'au_mask': batch['au_mask'] * batch['valid'][:, None],
            'landmarks': batch['landmarks'], 'valid': batch['valid']}

  def loss(outputs, t):
    aux = {}
    if name == 'asymmetric':
      main = losses.weighted_asymmetric_loss(_au_probs(outputs), t['au'], weights, t['au_mask'])
    else:
      if 'au_logits' not in outputs:
        raise ValueError(f"config.loss.name={name!r} needs a model with 'au_logits' outputs; "
                         f"this model gives {sorted(outputs)}. Use 'asymmetric' for probabilities.")
      main = losses.weighted_bce_with_logits(outputs['au_logits'], t['au'], weights, t['au_mask'])
      if name == 'bce_dice':
        dice = losses.weighted_dice_loss(jax.nn.sigmoid(outputs['au_logits']), t['au'], weights,
                                         t['au_mask'])
        aux['dice'] = dice
        main = main + cfg.get('dice_weight', 1.0) * dice
    total = main
    aux['au_loss'] = main
    if 'landmarks' in outputs and cfg.get('landmark_weight', 0.0):
      align = losses.landmark_alignment_loss(outputs['landmarks'], t['landmarks'], t['valid'])
      aux['landmark_loss'] = align
      total = total + cfg.landmark_weight * align
    if 'reconstruction' in outputs and cfg.get('reconstruction_weight', 0.0):
      recon = losses.l1_reconstruction_loss(outputs['reconstruction'],
                                            outputs['reconstruction_target'], t['valid'])
      aux['reconstruction_loss'] = recon
      total = total + cfg.reconstruction_weight * recon
    return total, aux

  def eval_outputs(outputs, t):
    return {metrics_lib.AU_PROB: _au_probs(outputs), metrics_lib.AU_LABEL: t['au'],
            metrics_lib.AU_MASK: t['au_mask']}

  def trivial(arrays):
    """The all-positive predictor (every AU always on), the usual floor for F1."""
    ones = np.ones_like(arrays[metrics_lib.AU_LABEL], np.float64)
    m = metrics_lib.au_metrics(ones, arrays[metrics_lib.AU_LABEL], arrays.get(metrics_lib.AU_MASK),
                               au_names=names)
    return {'name': 'all AUs positive', **m}

  return Task(
      name='au', label_names=names, targets=targets, loss=loss, eval_outputs=eval_outputs,
      selection_metric='f1_mean',
      accumulator=lambda: TaskAccumulator(trivial, au_names=names,
                                          threshold=config.eval.get('threshold', 0.5)),
      table=lambda m: metrics_lib.format_au_table(m, names))


def _expression_task(config: ml_collections.ConfigDict, info: Any) -> Task:
  cfg = config.loss
  va = cfg.get('va', 'ccc')
  if va not in VA_LOSSES:
    raise ValueError(f'Unknown config.loss.va {va!r}; expected one of {VA_LOSSES}.')
  names = tuple(info.label_names)
  class_weights = (losses.class_balance_weights(np.asarray(info.class_counts))
                   if cfg.get('class_weighted', True) else None)

  def targets(batch):
    return {'expression': batch['expression'],
            'va': jnp.stack([batch['valence'], batch['arousal']], axis=-1),
            'expr_mask': batch['valid'] * (batch['expression'] >= 0),
            'va_mask': batch['valid'] * batch.get('va_mask', jnp.ones_like(batch['valid']))}

  def loss(outputs, t):
    ce = losses.class_weighted_cross_entropy(outputs['expression_logits'], t['expression'],
                                             class_weights, t['expr_mask'])
    aux = {'ce': ce}
    total = ce
    if va != 'none' and 'va' in outputs:
      if va == 'ccc':
        va_loss = losses.ccc_loss(outputs['va'], t['va'], t['va_mask'])
      else:
        m = t['va_mask'][:, None]
        va_loss = jnp.sum(m * (outputs['va'] - t['va']) ** 2) / jnp.maximum(2 * jnp.sum(m), 1.0)
      aux['va_loss'] = va_loss
      total = total + cfg.get('va_weight', 1.0) * va_loss
    return total, aux

  def eval_outputs(outputs, t):
    out = {metrics_lib.EXPR_SCORE: outputs['expression_logits'],
           metrics_lib.EXPR_LABEL: t['expression'], metrics_lib.EXPR_MASK: t['expr_mask']}
    if 'va' in outputs:
      out.update({metrics_lib.VA_PRED: outputs['va'], metrics_lib.VA_LABEL: t['va'],
                  metrics_lib.VA_MASK: t['va_mask']})
    return out

  def trivial(arrays):
    """The majority-class predictor, and valence/arousal constant at the training mean."""
    counts = np.asarray(info.class_counts, np.float64)
    scores = np.tile(np.eye(len(names))[np.argmax(counts)], (len(arrays[metrics_lib.EXPR_LABEL]), 1))
    return {'name': 'majority class',
            **metrics_lib.expression_metrics(scores, arrays[metrics_lib.EXPR_LABEL],
                                             arrays.get(metrics_lib.EXPR_MASK), names)}

  def table(m):
    rows = ['| Metric | Value |', '|---|---:|']
    for key in ('mean_class_accuracy', 'accuracy', 'macro_f1', 'affwild2_score', 'ccc_valence',
                'ccc_arousal'):
      if key in m:
        rows.append(f'| {key} | {100 * m[key]:.1f} |' if 'ccc' not in key else
                    f'| {key} | {m[key]:.3f} |')
    return '\n'.join(rows) + '\n'

  def write_figures(workdir, model, variables, arrays):
    """Emotion-GCN Fig. 3 (adjacency, GCN models), 4 (confusion) and 6 (classifier cosines)."""
    from faujax.models import emotion_gcn_figures  # matplotlib; only at the end of a run
    mask = np.asarray(arrays.get(metrics_lib.EXPR_MASK, np.ones(len(arrays[metrics_lib.EXPR_LABEL]))))
    keep = mask > 0
    confusion = metrics_lib.confusion_matrix(
        np.asarray(arrays[metrics_lib.EXPR_LABEL])[keep],
        np.argmax(np.asarray(arrays[metrics_lib.EXPR_SCORE])[keep], -1), len(names))
    return emotion_gcn_figures.write_figures(workdir, model, variables, None, confusion, names)

  return Task(
      name='expression', label_names=names, targets=targets, loss=loss,
      eval_outputs=eval_outputs, selection_metric=config.eval.get('selection_metric',
                                                                  'mean_class_accuracy'),
      accumulator=lambda: TaskAccumulator(trivial, class_names=names), table=table,
      write_figures=write_figures)


def build(config: ml_collections.ConfigDict, info: Any) -> Task:
  """The task of the dataset described by ``info`` ('au' or 'expression')."""
  if info.task == 'au':
    return _au_task(config, info)
  if info.task == 'expression':
    return _expression_task(config, info)
  raise ValueError(f'Unknown task {info.task!r} from config.data; expected au or expression.')

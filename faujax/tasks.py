"""Tasks: which labels a model is trained on, with which loss, evaluated with which metrics.

A task sits between the model and the train loop: it picks the label arrays from a batch
(``targets``), turns model outputs and targets into the scalar training loss (``loss``), into the
per-example arrays that evaluation accumulates (``eval_outputs``), and names the validation metric
that selects checkpoints. Losses see the *global* batch (see ``faujax.train``). The label space
(names, counts, rates) is the dataset's (``faujax.data.dataset_info.DatasetInfo``).

Tasks (``info.task``):
  'au'               multi-label AU occurrence; outputs ``au_logits`` or ``au_probs`` (B, N).
  'expression'       one of K classes (+ valence / arousal); outputs ``expression_logits`` (B, K)
                     and optionally ``va`` (B, 2).
  'expression_multi' multi-label expressions (RAF-ML, RAF-DB compound, JAFFE); outputs
                     ``expression_multi_logits`` (B, C), loss SVML-RGCN eq. 2, the nine metrics of
                     its sec. 4.1.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from faujax import config_schema
from faujax import losses
from faujax import metrics as metrics_lib

AU_LOSSES = ('bce', 'bce_dice', 'asymmetric')
VA_LOSSES = ('none', 'mse', 'ccc')
TASKS = ('au', 'expression', 'expression_multi')
Outputs = dict[str, jax.Array]
_check = config_schema.check


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """``config.loss``: the training loss of every task (keys a task does not use are ignored).

  Attributes:
    name: AU task: 'bce' (AU-GCN eq. 7), 'bce_dice' (+ eq. 8) or 'asymmetric' (MACG eq. 15).
    weighted: AU task: occurrence-rate weights (AU-GCN eq. 7, MACG eq. 16).
    dice_weight: lambda_2 of AU-GCN eq. 8 ('bce_dice').
    landmark_weight: weight of the ``landmark`` term, the alignment loss (MGRR-Net eq. 10).
    reconstruction_weight: weight of the ``reconstruction`` term, lambda_1 of AU-GCN eq. 3.
    roi_weight: weight of the ``roi`` term, the ROI-level BCE (AU-GCN eq. 2; L_ROI = roi_weight
      * eq. 2 + reconstruction_weight * eq. 1, eq. 3).
    edge_weight: weight of the ``edge`` term, ME-GraphAU's edge classification loss (the public
      code's ``--lam``).
    class_weighted: expression task: class-balance weights f_min / f_i (Emotion-GCN eq. 9).
    va: expression task: 'none', 'mse' or 'ccc' (Emotion-GCN eq. 10-12) on valence / arousal.
    va_weight: weight of the valence / arousal loss.
    ccc_normalization: 'paper' (eq. 11: one normalisation) or 'public_code' (covariance over n,
      variances over n - 1, the public code's behaviour), for the CCC loss and the CCC metric.
  """
  name: str = 'bce'
  weighted: bool = True
  dice_weight: float = 1.0
  landmark_weight: float = 0.0
  reconstruction_weight: float = 0.0
  roi_weight: float = 1.0
  edge_weight: float = 0.05
  class_weighted: bool = True
  va: str = 'ccc'
  va_weight: float = 1.0
  ccc_normalization: str = 'paper'

  def __post_init__(self):
    _check(self.name in AU_LOSSES, 'name', self.name, f'one of {AU_LOSSES}')
    _check(self.va in VA_LOSSES, 'va', self.va, f'one of {VA_LOSSES}')
    _check(self.ccc_normalization in metrics_lib.CCC_NORMALIZATIONS, 'ccc_normalization',
           self.ccc_normalization, f'one of {metrics_lib.CCC_NORMALIZATIONS}')
    for key in ('dice_weight', 'landmark_weight', 'reconstruction_weight', 'roi_weight',
                'edge_weight', 'va_weight'):
      _check(getattr(self, key) >= 0, key, getattr(self, key), 'a weight >= 0')


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
  # The names of the loss terms ``loss(outputs, targets, terms)`` can restrict the total to (a
  # training stage's ``losses``); the loss always accepts ``terms=None`` (every term).
  loss_terms: tuple[str, ...] = ()


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


def _logit_heads(outputs: Outputs) -> list[str]:
  """The AU classifier heads of a model: ``au_logits`` and every ``au_logits/<head>``.

  Each head gets the task's AU loss and the losses add up (MGRR-Net eq. 11: L_au + L_int); the
  evaluated probability is ``au_probs`` when the model gives it (MGRR-Net: the mean of its heads'
  probabilities), else ``sigmoid(au_logits)``.
  """
  return sorted(k for k in outputs if k == 'au_logits' or k.startswith('au_logits/'))


def roi_bce_loss(roi_logits: jax.Array, roi_label_mask: jax.Array, au: jax.Array,
                 au_mask: jax.Array) -> jax.Array:
  """AU-GCN eq. 2, the ROI-level multi-label BCE, averaged over examples and ROIs.

  Each ROI r predicts every AU c; its target is Y^ROI_rc = y_c * roi_label_mask_rc (0 for an AU
  outside the ROI, by the partition rule). Unweighted (eq. 2 has no w_i); unknown AU labels
  (``au_mask`` 0) are left out for every ROI.

  Args:
    roi_logits: (B, R, C); roi_label_mask: (B, R, C) 0/1; au, au_mask: (B, C).
  """
  b, r, c = roi_logits.shape
  targets = au[:, None, :] * roi_label_mask
  mask = jnp.broadcast_to(au_mask[:, None, :], (b, r, c))
  return losses.weighted_bce_with_logits(roi_logits.reshape(b * r, c), targets.reshape(b * r, c),
                                         None, mask.reshape(b * r, c))


def _statistics(outputs: Outputs, valid: jax.Array) -> dict[str, jax.Array]:
  """Model outputs ``stat/<name>`` (B,) -> their mean over the valid examples, as ``<name>``."""
  count = jnp.maximum(jnp.sum(valid), 1.0)
  return {key.split('/', 1)[1]: jnp.sum(outputs[key] * valid) / count
          for key in outputs if key.startswith('stat/')}


def _total(parts: dict[str, jax.Array], terms: Any) -> jax.Array:
  """The sum of the weighted loss ``parts`` named in ``terms`` (None: all of them).

  A stage of ``config.train.stages`` trains on a subset (AU-GCN stage 1: 'roi' and
  'reconstruction'); a term the model does not produce adds nothing.
  """
  keep = [v for k, v in parts.items() if terms is None or k in terms]
  return sum(keep[1:], keep[0]) if keep else jnp.zeros((), jnp.float32)


@dataclasses.dataclass(frozen=True)
class AuxiliaryTerm:
  """A loss term of the AU task that a model declares (its module's ``LOSS_TERMS``): the loss of
  (outputs, targets), the ``config.loss`` key of its weight (0 leaves it out) and the model
  outputs it reads."""
  loss: Callable[[Outputs, dict[str, jax.Array]], jax.Array]
  weight: str
  outputs: tuple[str, ...]


# The AU task's auxiliary terms, by the name a model's LOSS_TERMS uses.
AUXILIARY_TERMS: dict[str, AuxiliaryTerm] = {
    'landmark': AuxiliaryTerm(  # MGRR-Net eq. 10
        lambda o, t: losses.landmark_alignment_loss(o['landmarks'], t['landmarks'], t['valid']),
        'landmark_weight', ('landmarks',)),
    'reconstruction': AuxiliaryTerm(  # AU-GCN eq. 1
        lambda o, t: losses.l1_reconstruction_loss(o['reconstruction'],
                                                   o['reconstruction_target'], t['valid']),
        'reconstruction_weight', ('reconstruction', 'reconstruction_target')),
    'roi': AuxiliaryTerm(  # AU-GCN eq. 2
        lambda o, t: roi_bce_loss(o['roi_logits'], o['roi_label_mask'], t['au'], t['au_mask']),
        'roi_weight', ('roi_logits', 'roi_label_mask')),
    'edge': AuxiliaryTerm(  # ME-GraphAU's edge classification
        lambda o, t: losses.au_relation_loss(o['edge_logits'], t['au'], t['au_mask']),
        'edge_weight', ('edge_logits',)),
}


def _au_task(cfg: LossConfig, info: Any, threshold: float, selection_metric: str,
             model_terms: tuple[str, ...]) -> Task:
  unknown = [t for t in model_terms if t not in AUXILIARY_TERMS]
  if unknown:
    raise ValueError(f'the model declares the loss terms {unknown}, which the AU task does not '
                     f'have; it has {sorted(AUXILIARY_TERMS)}.')
  name = cfg.name
  weights = (losses.occurrence_weights(np.asarray(info.train_occurrence_rates))
             if cfg.weighted else jnp.ones((info.num_labels,), jnp.float32))
  names = tuple(info.label_names)

  def targets(batch):
    return {'au': batch['au'], 'au_mask': batch['au_mask'] * batch['valid'][:, None],
            'landmarks': batch['landmarks'], 'valid': batch['valid']}

  def loss(outputs, t, terms=None):
    aux = {}
    if name == 'asymmetric':
      main = losses.weighted_asymmetric_loss(_au_probs(outputs), t['au'], weights, t['au_mask'])
    else:
      heads = _logit_heads(outputs)
      if not heads:
        raise ValueError(f"config.loss.name={name!r} needs a model with 'au_logits' (or "
                         f"'au_logits/<head>') outputs; this model gives {sorted(outputs)}. "
                         "Use 'asymmetric' for probabilities.")
      main = 0.0
      for key in heads:
        logits = outputs[key]
        head = losses.weighted_bce_with_logits(logits, t['au'], weights, t['au_mask'])
        if name == 'bce_dice':
          dice = losses.weighted_dice_loss(jax.nn.sigmoid(logits), t['au'], weights,
                                           t['au_mask'])
          aux[key.replace('au_logits', 'dice')] = dice
          head = head + cfg.dice_weight * dice
        if len(heads) > 1:
          aux[key.replace('au_logits', 'au_loss')] = head
        main = main + head
    aux['au_loss'] = main
    parts = {'au': main}
    for term in model_terms:
      weight = getattr(cfg, AUXILIARY_TERMS[term].weight)
      if weight:
        missing = [k for k in AUXILIARY_TERMS[term].outputs if k not in outputs]
        if missing:
          raise ValueError(
              f'config.loss.{AUXILIARY_TERMS[term].weight} = {weight} asks for the {term!r} loss, '
              f'but the model has no output {missing} (e.g. ME-GraphAU stage 1 or '
              f'config.model.edge_classifier=False: no edge logits); set it to 0.')
        value = AUXILIARY_TERMS[term].loss(outputs, t)
        aux[f'{term}_loss'] = value
        parts[term] = weight * value
    aux.update(_statistics(outputs, t['valid']))
    return _total(parts, terms), aux

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
      loss_terms=('au',) + tuple(model_terms),
      selection_metric=selection_metric or 'f1_mean',
      accumulator=lambda: TaskAccumulator(trivial, au_names=names, threshold=threshold),
      table=lambda m: metrics_lib.format_au_table(m, names))


def _no_model_terms(task: str, model_terms: tuple[str, ...]) -> None:
  if model_terms:
    raise ValueError(f'the model declares the loss terms {list(model_terms)}; the {task} task '
                     'has none.')


def _expression_task(cfg: LossConfig, info: Any, threshold: float, selection_metric: str,
                     model_terms: tuple[str, ...]) -> Task:
  del threshold  # single-label: the prediction is the argmax
  _no_model_terms('expression', model_terms)
  va = cfg.va
  names = tuple(info.label_names)
  counts = np.asarray(info.class_counts)
  if counts.shape != (len(names),):
    raise ValueError(f'The dataset info has {len(names)} expression classes {names} but '
                     f'{counts.shape} class counts; the builder metadata is inconsistent.')
  class_weights = losses.class_balance_weights(counts) if cfg.class_weighted else None

  def targets(batch):
    return {'expression': batch['expression'],
            'va': jnp.stack([batch['valence'], batch['arousal']], axis=-1),
            'expr_mask': batch['valid'] * (batch['expression'] >= 0),
            'va_mask': batch['valid'] * batch.get('va_mask', jnp.ones_like(batch['valid']))}

  def loss(outputs, t, terms=None):
    ce = losses.class_weighted_cross_entropy(outputs['expression_logits'], t['expression'],
                                             class_weights, t['expr_mask'])
    aux = {'ce': ce}
    parts = {'expression': ce}
    if va != 'none' and 'va' in outputs:
      if va == 'ccc':
        va_loss = losses.ccc_loss(outputs['va'], t['va'], t['va_mask'],
                                  normalization=cfg.ccc_normalization)
      else:
        m = t['va_mask'][:, None]
        va_loss = jnp.sum(m * (outputs['va'] - t['va']) ** 2) / jnp.maximum(2 * jnp.sum(m), 1.0)
      aux['va_loss'] = va_loss
      parts['va'] = cfg.va_weight * va_loss
    return _total(parts, terms), aux

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

  return Task(
      name='expression', label_names=names, targets=targets, loss=loss,
      eval_outputs=eval_outputs, selection_metric=selection_metric or 'mean_class_accuracy',
      loss_terms=('expression', 'va'),
      accumulator=lambda: TaskAccumulator(trivial, class_names=names,
                                          ccc_normalization=cfg.ccc_normalization), table=table)


# The nine multi-label metrics of SVML-RGCN sec. 4.1 and whether higher is better.
MULTILABEL_METRICS: dict[str, bool] = {
    'hamming_loss': False, 'coverage': False, 'one_error': False, 'ranking_loss': False,
    'average_precision': True, 'micro_f1': True, 'macro_f1': True, 'micro_auc': True,
    'macro_auc': True}


def multilabel_table(m: dict[str, float]) -> str:
  """The nine metrics with their direction (the paper's Tables 1-3 report them this way)."""
  rows = ['| Metric | Value | Better |', '|---|---:|:---:|']
  for key, higher in MULTILABEL_METRICS.items():
    value = m.get(f'ml/{key}')
    if value is not None:
      rows.append(f'| {key} | {value:.4f} | {"higher" if higher else "lower"} |')
  return '\n'.join(rows) + '\n'


def _multilabel_task(cfg: LossConfig, info: Any, threshold: float, selection_metric: str,
                     model_terms: tuple[str, ...]) -> Task:
  """Multi-label expressions: sigmoid BCE (SVML-RGCN eq. 2), the nine metrics of its sec. 4.1."""
  del cfg  # the paper's plain BCE; no weighting keys apply
  _no_model_terms('expression_multi', model_terms)
  names = tuple(info.label_names)
  rates = np.asarray(info.train_occurrence_rates, np.float64)
  if rates.shape != (len(names),):
    raise ValueError(f'The dataset info has {len(names)} multi-label expressions {names} but '
                     f'{rates.shape} training rates; the builder metadata is inconsistent.')

  def targets(batch):
    labels = batch['expression_multi']
    return {'expression_multi': labels,
            'mask': jnp.broadcast_to(batch['valid'][:, None], labels.shape)}

  def loss(outputs, t, terms=None):
    bce = losses.multilabel_bce_with_logits(outputs['expression_multi_logits'],
                                            t['expression_multi'], t['mask'])
    return _total({'expression_multi': bce}, terms), {'bce': bce}

  def eval_outputs(outputs, t):
    return {metrics_lib.ML_PROB: jax.nn.sigmoid(outputs['expression_multi_logits']),
            metrics_lib.ML_LABEL: t['expression_multi']}

  def trivial(arrays):
    """Every image scored with the training label frequencies (the label prior)."""
    labels = arrays[metrics_lib.ML_LABEL]
    scores = np.broadcast_to(rates, labels.shape)
    return {'name': 'training label frequencies',
            **metrics_lib.multilabel_metrics(scores, labels, threshold)}

  return Task(
      name='expression_multi', label_names=names, targets=targets, loss=loss,
      eval_outputs=eval_outputs, selection_metric=selection_metric or 'ml/average_precision',
      loss_terms=('expression_multi',),
      accumulator=lambda: TaskAccumulator(trivial, threshold=threshold), table=multilabel_table)


_BUILDERS = {'au': _au_task, 'expression': _expression_task,
             'expression_multi': _multilabel_task}


def build(info: Any, loss: LossConfig, *, threshold: float = 0.5, selection_metric: str = '',
          model_terms: tuple[str, ...] = ()) -> Task:
  """The task of the dataset described by ``info`` (``info.task``, one of ``TASKS``).

  Args:
    info: the dataset's label space and training statistics.
    loss: ``config.loss``.
    threshold: decision threshold of multi-label predictions (``config.eval.threshold``).
    selection_metric: the validation metric that selects checkpoints ('' = the task's default:
      'f1_mean', 'mean_class_accuracy', 'ml/average_precision').
    model_terms: the auxiliary loss terms the model trains with (its module's ``LOSS_TERMS``,
      ``faujax.models.loss_terms``; names of ``AUXILIARY_TERMS``).
  """
  if info.task not in _BUILDERS:
    raise ValueError(f'The dataset {info.name!r} declares task {info.task!r}; faujax trains '
                     f'{TASKS}.')
  return _BUILDERS[info.task](loss, info, threshold, selection_metric, tuple(model_terms))

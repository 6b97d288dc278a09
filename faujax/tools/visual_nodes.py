"""Command line: the visual node vectors of SVML-RGCN (eq. 5), class means of pooled features.

  python -m faujax.tools.visual_nodes --config configs/svml_rgcn/raf_basic.py \\
      --workdir /runs/raf_basic --out /runs/raf_basic/visual_nodes.npz [--train]

SVML-RGCN Sec. 3.3: ``f_c = sum_n phi(I_{c,n}) / N_c``, phi a ResNet-50 trained on basic
expressions (RAF-DB basic), averaged over the images of each basic expression c. This command
loads the network that ``--config`` trains in ``--workdir`` (its best-validation checkpoint, else
the newest one; with ``--train`` it first trains it there with ``faujax.train.train_and_evaluate``,
resuming an unfinished run), runs it in evaluation mode (deterministic centre resize, running BN
statistics) over the ``--split`` split (default 'train') and writes the class means of the
globally pooled trunk features, one row per name of ``--names`` (default the six basic
expressions of ``faujax.labels.BASIC_6``; the network's classes are matched by name, so RAF-DB
basic's 'neutral' is left out). The SVML-RGCN config points ``config.model.visual_nodes`` at the
file. ``--export_backbone DIR`` also writes the trunk in the ``config.pretrained_backbone`` format
(``faujax.backbones.pretrained``), the paper's initialisation of SVML-RGCN's feature extractor.

The pooled feature phi(I) is the network's own: ``model.features(images, train=False)`` when it
has that method (SVML-RGCN, Emotion-GCN), else its trunk's final map pooled as its
``pooling`` attribute says ('avg' by default; ``faujax.models.baseline.Baseline``).

File format (``save`` / ``load``; numpy ``.npz``, no pickles):
  features  float32 (C, d)  the class means f_c, rows in ``names`` order
  names     str (C,)        the class names (matched case-insensitively by ``load``)
  counts    int64 (C,)      N_c, the number of images averaged per class
  meta      str             JSON: config file, workdir, split, checkpoint step, pooling
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from faujax import labels as labels_lib


class VisualNodesError(ValueError):
  """A visual-node file or its inputs cannot give the requested class means."""


# ----------------------------------------------------------------------------- eq. 5 and the file


def class_means(features: Any, classes: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """SVML-RGCN eq. 5: ``f_c = mean of features[n] over n with classes[n] == c``.

  Args:
    features: ``(n, d)`` pooled features phi(I_n).
    classes: ``(n,)`` int class of each row in ``[0, num_classes)``; other values (e.g. -1 for
      rows outside the requested classes) are ignored.
    num_classes: C.

  Returns:
    ``(means (C, d) float64, counts (C,) int64)``; a class without rows has a zero mean and
    count 0 (``save`` refuses it).
  """
  x = np.asarray(features, np.float64)
  c = np.asarray(classes).astype(np.int64).ravel()
  if x.ndim != 2 or x.shape[0] != c.shape[0]:
    raise VisualNodesError(f'class_means: features must be (n, d) with n = len(classes) = '
                           f'{c.shape[0]}; got {x.shape}.')
  keep = (c >= 0) & (c < num_classes)
  counts = np.bincount(c[keep], minlength=num_classes).astype(np.int64)
  sums = np.zeros((num_classes, x.shape[1]))
  np.add.at(sums, c[keep], x[keep])
  means = sums / np.maximum(counts, 1)[:, None]
  return means, counts


def save(path: str, features: Any, names: Sequence[str], counts: Any,
         meta: Mapping[str, Any] | None = None) -> str:
  """Writes the visual-node file (see the module docstring); returns its absolute path."""
  f = np.asarray(features, np.float32)
  counts = np.asarray(counts, np.int64)
  names = [str(n) for n in names]
  if f.ndim != 2 or f.shape[0] != len(names) or counts.shape != (len(names),):
    raise VisualNodesError(f'save: features {f.shape}, names {len(names)} and counts '
                           f'{counts.shape} must describe the same C classes.')
  empty = [n for n, k in zip(names, counts) if k <= 0]
  if empty:
    raise VisualNodesError(f'No images of class(es) {empty} in the data: their visual node '
                           'vectors (eq. 5) would be undefined.')
  if not np.all(np.isfinite(f)):
    raise VisualNodesError('save: the class means contain non-finite values.')
  path = os.path.abspath(os.path.expanduser(path))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path, features=f, names=np.asarray(names), counts=counts,
           meta=np.asarray(json.dumps(dict(meta or {}), sort_keys=True)))
  return path


def load(path: str, label_names: Sequence[str]) -> np.ndarray:
  """The ``(N, d)`` float32 visual node vectors of ``label_names`` from a file of ``save``.

  Raises:
    VisualNodesError: naming the file and the missing names / malformed fields.
  """
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise VisualNodesError(
        f'config.model.visual_nodes: {path!r} does not exist; write it with '
        '`python -m faujax.tools.visual_nodes --config <basic-expression config> --workdir <run> '
        f'--out {path} [--train]`.')
  try:
    with np.load(path, allow_pickle=False) as data:
      table = np.asarray(data['features'], np.float32)
      stored = [str(n).lower() for n in data['names']]
  except (OSError, KeyError, ValueError) as e:
    raise VisualNodesError(f'{path}: not a visual-node .npz with "features" and "names" ({e}).'
                           ) from None
  if table.ndim != 2 or table.shape[0] != len(stored):
    raise VisualNodesError(f'{path}: features {table.shape} do not match {len(stored)} names.')
  index = {n: i for i, n in enumerate(stored)}
  missing = [n for n in label_names if str(n).lower() not in index]
  if missing:
    raise VisualNodesError(f'{path} has no visual node for {missing}; it holds {stored}.')
  return table[[index[str(n).lower()] for n in label_names]]


# ----------------------------------------------------------------------------- the network


def pooled_features(model: Any, images: Any) -> Any:
  """phi(I): ``(B, d)`` float32 pooled trunk features of a trained model, evaluation mode."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if hasattr(model, 'features'):
    return model.features(images, train=False).astype(jnp.float32)
  fmap = model.backbone(images, train=False)
  pooling = getattr(model, 'pooling', 'avg')
  x = fmap.max(axis=(1, 2)) if pooling == 'max' else fmap.mean(axis=(1, 2))
  return x.astype(jnp.float32)


def load_trained(config: Any, workdir: str) -> tuple[Any, Any, int]:
  """``(model, dataset info, step)`` of the run of ``config`` in ``workdir``: its best-validation
  checkpoint, else its newest good periodic one (VisualNodesError if it has none)."""
  import jax  # pylint: disable=g-import-not-at-top
  from faujax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from faujax import tasks  # pylint: disable=g-import-not-at-top
  from faujax import train  # pylint: disable=g-import-not-at-top
  from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top

  config = train.resolve_config(config)
  sec = train._sections(config)  # pylint: disable=protected-access
  info = input_pipeline.get_dataset_info(config.data)
  task = tasks.build(info, sec['loss'], threshold=sec['eval'].threshold,
                     selection_metric=sec['eval'].selection_metric)
  steps_per_epoch = max(info.num_examples['train'] // sec['train'].batch_size, 1)
  total_steps = sec['train'].num_steps or int(sec['train'].num_epochs * steps_per_epoch)
  state, _ = train.create_train_state(jax.random.key(config.seed), config, info,
                                      steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  checkpointer = ckpt_lib.Checkpointer(
      workdir, config, keep=sec['checkpoint'].keep,
      best_metric=task.selection_metric if info.num_examples.get('validation') else None)
  target = jax.device_get(state.to_host())
  best = checkpointer.restore_best(target)
  if best is not None:
    saved, step = best
  else:
    restored = checkpointer.last_good(target)
    if restored is None:
      raise VisualNodesError(f'{workdir} holds no checkpoint of this config; train it first '
                             '(add --train).')
    saved, step = restored.state, restored.step
  checkpointer.close()
  model = state.apply_fn.module(saved['params'], saved['batch_stats'])
  return model, info, int(step)


def extract(model: Any, config: Any, info: Any, names: Sequence[str], *, split: str = 'train',
            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Pooled features of every example of ``split`` and its class among ``names``.

  The dataset is single-label ('expression' task: ``batch['expression']`` indexes
  ``info.label_names``); classes whose name is not in ``names`` get -1.

  Returns:
    ``(features (n, d) float32, classes (n,) int64)``.
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from faujax import config_schema  # pylint: disable=g-import-not-at-top
  from faujax.data import augment  # pylint: disable=g-import-not-at-top
  from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top

  if info.task != 'expression':
    raise VisualNodesError(f'The visual nodes are class means over single-label basic-expression '
                           f"images (an 'expression' dataset); {info.name}/{info.builder_config} "
                           f'has task {info.task!r}.')
  wanted = {str(n).lower(): i for i, n in enumerate(names)}
  to_node = np.array([wanted.get(str(n).lower(), -1) for n in info.label_names], np.int64)
  aug = config_schema.read(augment.AugmentConfig, config.augment, 'augment')

  @nnx.jit
  def features(model, batch):
    return pooled_features(model, augment.preprocess(None, batch, aug, train=False)['image'])

  feats, classes = [], []
  for batch in input_pipeline.create_split(config.data, split, batch_size=batch_size,
                                           train=False):
    valid = np.asarray(batch['valid']) > 0
    f = np.asarray(features(model, {'image': batch['image'], 'landmarks': batch['landmarks']}))
    expr = np.asarray(batch['expression']).astype(np.int64)
    ok = valid & (expr >= 0) & (expr < len(to_node))
    feats.append(f[ok])
    classes.append(to_node[expr[ok]])
  return np.concatenate(feats), np.concatenate(classes)


def export_backbone(model: Any, config: Any, out_dir: str) -> str:
  """Writes the trunk's variables in the ``config.pretrained_backbone`` format."""
  from faujax import model_state  # pylint: disable=g-import-not-at-top
  from faujax.backbones import pretrained  # pylint: disable=g-import-not-at-top
  variables = model_state.variables(model)
  trunk = {k: variables[k]['backbone'] for k in ('params', 'batch_stats')}
  return pretrained.save_pretrained(out_dir, config.model.backbone.name, trunk,
                                    {'source': 'faujax.tools.visual_nodes'}, overwrite=True)


def run(config: Any, workdir: str, out: str, *, names: Sequence[str] = labels_lib.BASIC_6,
        split: str = 'train', train_first: bool = False, config_file: str = '',
        export_dir: str = '', batch_size: int = 64) -> dict[str, Any]:
  """The command: (train,) load, extract, eq. 5, save. Returns a summary dict."""
  if train_first:
    from faujax import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config, workdir)
  model, info, step = load_trained(config, workdir)
  feats, classes = extract(model, config, info, names, split=split, batch_size=batch_size)
  means, counts = class_means(feats, classes, len(names))
  meta = {'config': config_file, 'workdir': os.path.abspath(workdir), 'split': split,
          'step': step, 'dataset': f'{info.name}/{info.builder_config}',
          'pooling': getattr(model, 'pooling', 'features()')}
  path = save(out, means, names, counts, meta)
  summary = {'out': path, 'counts': dict(zip(names, counts.tolist())), 'dim': int(means.shape[1]),
             'step': step}
  if export_dir:
    summary['backbone'] = export_backbone(model, config, export_dir)
  return summary


def main(argv: Sequence[str]) -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from faujax import reporting  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise ValueError(f'Unexpected arguments: {argv[1:]}')
  flags_ = _FLAGS
  if not flags_['verbosity'].present:  # orbax and tfds log every file at INFO
    logging.set_verbosity(logging.WARNING)
  names = [n.strip() for n in flags_.names.split(',') if n.strip()]
  try:
    summary = run(flags_.config, flags_.workdir, flags_.out, names=names, split=flags_.split,
                  train_first=flags_.train,
                  config_file=config_flags.get_config_filename(flags_['config']),
                  export_dir=flags_.export_backbone, batch_size=flags_.batch_size)
  except ValueError as e:  # a config, data or checkpoint problem: one line naming it
    if flags_['verbosity'].present:
      raise
    sys.exit(f'faujax: {e}\n(run with --verbosity=1 for the traceback)')
  reporting.say(f'Visual nodes (eq. 5) of {summary["counts"]} images, {summary["dim"]}-d, from '
                f'step {summary["step"]}: {summary["out"]}'
                + (f'; trunk: {summary["backbone"]}' if 'backbone' in summary else ''))


_FLAGS: Any = None


def _define_flags() -> None:
  global _FLAGS
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      'config', None, 'Config that trains the basic-expression network.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'The run directory of that config.')
  flags.DEFINE_string('out', None, 'The .npz to write.')
  flags.DEFINE_bool('train', False, 'Train (or finish training) the network in --workdir first.')
  flags.DEFINE_string('split', 'train', 'Logical split whose images are averaged.')
  flags.DEFINE_string('names', ','.join(labels_lib.BASIC_6), 'Comma-separated class names, the '
                      'rows of the file.')
  flags.DEFINE_string('export_backbone', '', 'Also write the trunk here (pretrained format).')
  flags.DEFINE_integer('batch_size', 64, 'Evaluation batch size.')
  flags.mark_flags_as_required(['config', 'workdir', 'out'])
  _FLAGS = flags.FLAGS


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)

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

The file format, eq. 5 and the reader are ``faujax.models.visual_nodes``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import numpy as np

from faujax import labels as labels_lib
from faujax.models.visual_nodes import VisualNodesError, class_means, save


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


def load_trained(workdir: str) -> Any:
  """The ``faujax.trained_run.TrainedRun`` in ``workdir``: its best-validation checkpoint, else
  its newest good periodic one (VisualNodesError if it has none)."""
  from faujax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from faujax import trained_run  # pylint: disable=g-import-not-at-top
  try:
    return trained_run.load_run(workdir, 'best')
  except ckpt_lib.CheckpointError as e:
    raise VisualNodesError(f'{workdir}: {e} Train it first (add --train).') from None


def extract(trained: Any, names: Sequence[str], *, data: Any = None, split: str = 'train',
            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Pooled features of every example of ``split`` and its class among ``names``.

  ``trained`` is a ``TrainedRun`` of a single-label network ('expression' task:
  ``batch['expression']`` indexes its ``info.label_names``); classes whose name is not in
  ``names`` get -1. ``data``: the ``config.data`` to read (default the run's own).

  Returns:
    ``(features (n, d) float32, classes (n,) int64)``.
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from faujax.data import augment  # pylint: disable=g-import-not-at-top
  from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top

  info = trained.info
  if info.task != 'expression':
    raise VisualNodesError(f'The visual nodes are class means over single-label basic-expression '
                           f"images (an 'expression' dataset); {info.name}/{info.builder_config} "
                           f'has task {info.task!r}.')
  wanted = {str(n).lower(): i for i, n in enumerate(names)}
  to_node = np.array([wanted.get(str(n).lower(), -1) for n in info.label_names], np.int64)
  model = trained.model()

  @nnx.jit
  def features(model, batch):
    return pooled_features(model, augment.preprocess(None, batch, trained.aug_config,
                                                     train=False)['image'])

  feats, classes = [], []
  for batch in input_pipeline.create_split(data or trained.config.data, split,
                                           batch_size=batch_size, train=False):
    valid = np.asarray(batch['valid']) > 0
    f = np.asarray(features(model, {'image': batch['image'], 'landmarks': batch['landmarks']}))
    expr = np.asarray(batch['expression']).astype(np.int64)
    ok = valid & (expr >= 0) & (expr < len(to_node))
    feats.append(f[ok])
    classes.append(to_node[expr[ok]])
  return np.concatenate(feats), np.concatenate(classes)


def export_backbone(model: Any, backbone: str, out_dir: str) -> str:
  """Writes the trunk (``config.model.backbone.name`` ``backbone``) of ``model`` in the
  ``config.pretrained_backbone`` format."""
  from faujax import model_state  # pylint: disable=g-import-not-at-top
  from faujax.backbones import pretrained  # pylint: disable=g-import-not-at-top
  variables = model_state.variables(model)
  trunk = {k: variables[k]['backbone'] for k in ('params', 'batch_stats')}
  return pretrained.save_pretrained(out_dir, backbone, trunk,
                                    {'source': 'faujax.tools.visual_nodes'}, overwrite=True)


def run(config: Any, workdir: str, out: str, *, names: Sequence[str] = labels_lib.BASIC_6,
        split: str = 'train', train_first: bool = False, config_file: str = '',
        export_dir: str = '', batch_size: int = 64) -> dict[str, Any]:
  """The command: (train,) load, extract, eq. 5, save. Returns a summary dict."""
  if train_first:
    from faujax import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config, workdir)
  trained = load_trained(workdir)
  info, model = trained.info, trained.model()
  feats, classes = extract(trained, names, data=config.data, split=split, batch_size=batch_size)
  means, counts = class_means(feats, classes, len(names))
  meta = {'config': config_file, 'workdir': os.path.abspath(workdir), 'split': split,
          'step': trained.step, 'dataset': f'{info.name}/{info.builder_config}',
          'pooling': getattr(model, 'pooling', 'features()')}
  path = save(out, means, names, counts, meta)
  summary = {'out': path, 'counts': dict(zip(names, counts.tolist())), 'dim': int(means.shape[1]),
             'step': trained.step}
  if export_dir:
    summary['backbone'] = export_backbone(model, trained.config.model.backbone.name, export_dir)
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

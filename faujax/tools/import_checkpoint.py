"""Converts the authors' released PyTorch checkpoints into faujax workdirs.

  python -m faujax.tools.import_checkpoint --format me_graphau_stage1 FILE.pth --out DIR
      [--dataset bp4d|disfa] [--au_names AU1,AU2,...]
  python -m faujax.tools.import_checkpoint --format emotion_gcn FILE.pth --out DIR
      --embeddings glove.6B.300d.txt --manual_dir /data/AffectNet [--data_dir DIR]

``me_graphau_stage1``: the first stage of ME-GraphAU (``MEFARG`` in its public code, module
``model/ANFL.py``: a ResNet-18/50/101 ``backbone``, ``global_linear`` LinearBlock, ``head`` with
one ``class_linears.<i>`` LinearBlock per AU, the top-K ``gnn`` (``U``, ``V``, ``bnv``) and the
cosine classifier ``sc``) becomes faujax's MACG 'baseline' row (``configs/macg/<dataset>.py``
with ``config.ablation='baseline'``: trunk -> LinearBlock -> per-AU LinearBlocks + mean -> top-K
dynamic graph -> cosine head), which is the same network (``docs/reference/model_details.md``,
"Top-K dynamic graph"). The trunk and N (AUs) are read from the tensors; N = 12 is BP4D's AU set,
8 DISFA's, any other N (e.g. the 41-AU models) needs ``--au_names``.

Key map (public name -> faujax variable; torch ``Linear.weight`` (out, in) is transposed to the
kernel (in, out), ``BatchNorm weight / bias / running_mean / running_var`` -> params ``scale /
bias``, batch_stats ``mean / var``; ``num_batches_tracked`` counters are skipped and reported):

  backbone.<torchvision ResNet key>        backbone/<same path> (``import_weights.torch_key_map``)
  global_linear.{fc,bn}.*                  global_block/{fc,bn}/*
  head.class_linears.<i>.{fc,bn}.*         mafg/au_blocks/{kernel,bias,bn/*}[i]
  head.gnn.{U,V}.{weight,bias}             gnn_0/{U,V}_{kernel,bias}
  head.gnn.bnv.*                           gnn_0/bn/*
  head.sc                                  head/sc

Every faujax parameter must be filled exactly once; unmapped, missing and mis-shaped keys are
listed by name (``StateDictMismatchError``). Tensors are read without running pickled code
(``import_weights.load_state_dict``: torch weights-only loading or safetensors). The output is a
workdir that ``faujax.predictor.Predictor`` and ``faujax.main`` (with the same config: evaluation,
fine-tuning from step 0) load: ``config.json``, ``checkpoints/0`` (verified orbax checkpoint, a
fresh optimiser state) and ``dataset_info.json`` (label space; occurrence rates unknown, 0.5).

``emotion_gcn``: the public ``Emotion_GCN`` (module ``models.py``: ``features`` = torchvision's
DenseNet-121 ``features``, ``gc1`` / ``gc2`` GraphConvolution weights (in, out) without bias, and
``A``, the re-weighted adjacency as a Parameter; the node embeddings are an input, not in the file)
becomes ``configs/emotion_gcn/affectnet.py`` with the public code's p = 0.5 and kept
valence-arousal edge:

  features.<torchvision DenseNet-121 key>  backbone/<same path>
  gc1.weight, gc2.weight                   label_gcn/gcn0/kernel, label_gcn/gcn1/kernel
  A                                        not a parameter in faujax: faujax computes A'' from the
                                           training labels (Emotion-GCN eq. 3-6), so the importer
                                           reads the labels of your AffectNet copy (``--manual_dir``
                                           or ``--data_dir``), computes A'' and refuses a checkpoint
                                           whose ``A`` differs (max |difference| reported; 
                                           ``--accept_adjacency`` keeps faujax's).

The node embeddings are ``--embeddings`` (the 300-d GloVe text file of the paper; their width must
be ``gc1``'s input). The label statistics are stored in the workdir (``dataset_info.json``,
``train_labels.npz``), so the result predicts without the dataset afterwards.

The MACG format of the issue is not implemented: its public code is not available to write the
key map from (``FORMATS``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from faujax.backbones.pretrained import unflatten_tree
from faujax.tools import import_weights

FORMATS = ('me_graphau_stage1', 'emotion_gcn')
_RESNETS = {18: 'resnet18', 50: 'resnet50', 101: 'resnet101'}
_DATASET_OF_N = {12: 'bp4d', 8: 'disfa'}

Target = tuple[str, tuple[str, ...], int | None, Callable[[np.ndarray], np.ndarray]]


def _same(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float32)


def _transposed(x: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(x, np.float32).T)


def _linear_block(torch_prefix: str, faujax_path: tuple[str, ...], index: int | None = None,
                  kernel: tuple[str, ...] = ('fc', 'kernel'), bias: tuple[str, ...] = ('fc', 'bias'),
                  bn: tuple[str, ...] = ('bn',)) -> dict[str, Target]:
  """A public-code LinearBlock (``fc`` Linear, ``bn`` BatchNorm1d) -> faujax targets."""
  p = faujax_path
  return {f'{torch_prefix}.fc.weight': ('params', p + kernel, index, _transposed),
          f'{torch_prefix}.fc.bias': ('params', p + bias, index, _same),
          f'{torch_prefix}.bn.weight': ('params', p + bn + ('scale',), index, _same),
          f'{torch_prefix}.bn.bias': ('params', p + bn + ('bias',), index, _same),
          f'{torch_prefix}.bn.running_mean': ('batch_stats', p + bn + ('mean',), index, _same),
          f'{torch_prefix}.bn.running_var': ('batch_stats', p + bn + ('var',), index, _same)}


def me_graphau_key_map(arch: str, num_aus: int) -> dict[str, Target]:
  """{public key: (collection, faujax path, index into a stacked array or None, transform)}."""
  out: dict[str, Target] = {}
  for key, (collection, path, _) in import_weights.torch_key_map(arch).items():
    out[f'backbone.{key}'] = (collection, ('backbone',) + tuple(path), None,
                              lambda x, c=collection, p=path: import_weights._to_flax(x, c, p))  # pylint: disable=protected-access
  out.update(_linear_block('global_linear', ('global_block',)))
  for i in range(num_aus):
    out.update(_linear_block(f'head.class_linears.{i}', ('mafg', 'au_blocks'), i,
                             kernel=('kernel',), bias=('bias',)))
  for name in ('U', 'V'):
    out[f'head.gnn.{name}.weight'] = ('params', ('gnn_0', f'{name}_kernel'), None, _transposed)
    out[f'head.gnn.{name}.bias'] = ('params', ('gnn_0', f'{name}_bias'), None, _same)
  for torch_name, (collection, leaf) in {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
                                         'running_mean': ('batch_stats', 'mean'),
                                         'running_var': ('batch_stats', 'var')}.items():
    out[f'head.gnn.bnv.{torch_name}'] = (collection, ('gnn_0', 'bn', leaf), None, _same)
  out['head.sc'] = ('params', ('head', 'sc'), None, _same)
  return out


def _strip_module(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  if sd and all(k.startswith('module.') for k in sd):
    return {k[len('module.'):]: v for k, v in sd.items()}
  return dict(sd)


def detect_me_graphau(sd: Mapping[str, np.ndarray]) -> tuple[str, int]:
  """(trunk arch, number of AUs) of an ME-GraphAU stage-1 state dict."""
  if 'head.sc' not in sd:
    raise import_weights.StateDictMismatchError(
        'not an ME-GraphAU stage-1 (MEFARG) state dict: it has no head.sc (the cosine '
        f'classifier); first keys: {sorted(sd)[:8]}')
  num_aus = int(np.shape(sd['head.sc'])[0])
  blocks = {int(m.group(1)) for k in sd if (m := re.match(r'backbone\.layer3\.(\d+)\.', k))}
  n3 = max(blocks) + 1 if blocks else 0
  bottleneck = any(k.startswith('backbone.layer1.0.conv3.') for k in sd)
  arch = {(2, False): 'resnet18', (6, True): 'resnet50', (23, True): 'resnet101'}.get(
      (n3, bottleneck))
  if arch is None:
    raise import_weights.StateDictMismatchError(
        f'ME-GraphAU state dict: a trunk with {n3} layer3 blocks ('
        f'{"bottleneck" if bottleneck else "basic"}) is not ResNet-18/50/101 (the Swin trunks '
        'have no faujax equivalent).')
  return arch, num_aus


def fill(template: Mapping[str, Mapping[str, Any]], sd: Mapping[str, np.ndarray],
         key_map: Mapping[str, Target]) -> tuple[dict[str, Any], dict[str, str]]:
  """``template``'s variables (``model_state.variables`` layout) with every leaf taken from
  ``sd`` through ``key_map``; returns (variables, skipped {key: reason}).

  Raises:
    StateDictMismatchError: naming unmapped (unexpected), missing and mis-shaped keys, and
      faujax variables that the map leaves unfilled or fills twice.
  """
  from faujax import model_state  # pylint: disable=g-import-not-at-top
  flat = {c: {k: np.array(v, np.float32) for k, v in model_state.flatten(template[c]).items()}
          for c in template}
  filled: dict[tuple[str, str, int | None], str] = {}
  skipped = {k: 'BatchNorm step counter' for k in sd if k.endswith('num_batches_tracked')}
  unexpected = sorted(k for k in sd if k not in key_map and k not in skipped)
  missing = sorted(k for k in key_map if k not in sd)
  wrong, twice = [], []
  for key, (collection, path, index, transform) in key_map.items():
    if key not in sd:
      continue
    name = '/'.join(path)
    if name not in flat.get(collection, {}):
      raise AssertionError(f'key map names {collection}/{name}, which the model lacks')
    value = transform(np.asarray(sd[key]))
    target = flat[collection][name]
    want = target.shape if index is None else target.shape[1:]
    if value.shape != want:
      wrong.append(f'{key}: {tuple(np.shape(sd[key]))} -> {value.shape}, the model has {want} '
                   f'({collection}/{name}{"" if index is None else f"[{index}]"})')
      continue
    slot = (collection, name, index)
    if slot in filled:
      twice.append(f'{collection}/{name}: from {filled[slot]} and {key}')
    filled[slot] = key
    if index is None:
      flat[collection][name] = value
    else:
      target[index] = value
  unfilled = []
  for collection, leaves in flat.items():
    for name, x in leaves.items():
      slots = sorted((-1 if i is None else i) for (c, n, i) in filled
                     if c == collection and n == name)
      if slots != [-1] and slots != list(range(x.shape[0] if x.ndim else 0)) or not slots:
        unfilled.append(f'{collection}/{name}')
  if unexpected or missing or wrong or twice or unfilled:
    raise import_weights.StateDictMismatchError(
        'the state dict does not fit the faujax model:\n' + import_weights._listing([  # pylint: disable=protected-access
            ('unmapped keys', unexpected), ('missing keys', missing),
            ('wrong shapes', wrong), ('faujax variables filled twice', twice),
            ('faujax variables left unfilled', unfilled)]))
  nested = {c: unflatten_tree({tuple(k.split('/')): v for k, v in leaves.items()})
            for c, leaves in flat.items()}
  return nested, skipped


def _macg_config(dataset: str, arch: str):
  """configs/macg/<dataset>.py with the 'baseline' row and the checkpoint's trunk."""
  from faujax import main as main_lib  # pylint: disable=g-import-not-at-top
  from faujax import models  # pylint: disable=g-import-not-at-top
  import faujax  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(faujax.__file__))),
                      'configs', 'macg', f'{dataset}.py')
  if not os.path.isfile(path):
    raise ValueError(f'the MACG config {path} is missing (the importer needs a faujax checkout).')
  config = main_lib._load_config_file(path)  # pylint: disable=protected-access
  config.ablation = 'baseline'
  config.model.backbone = models.backbone_config(arch)
  config.model.node_dim = {'resnet18': 128}.get(arch, 512)
  return config, path


def _info(dataset: str, au_names: Sequence[str], image_size: int):
  from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  aus = tuple(int(n[2:]) if n.startswith('AU') and n[2:].isdigit() else k
              for k, n in enumerate(au_names))
  n = len(au_names)
  return input_pipeline.DatasetInfo(
      name=dataset, builder_config='', task='au', label_names=list(au_names), num_labels=n,
      aus=aus, num_examples={'train': 0, 'validation': 0, 'test': 0}, image_size=image_size,
      num_landmarks=49, fold=1, train_occurrence_rates=np.full((n,), 0.5, np.float32),
      class_counts=np.zeros((n,), np.int64))


def import_me_graphau(sd: Mapping[str, np.ndarray], out: str, *, dataset: str | None = None,
                      au_names: Sequence[str] | None = None) -> dict[str, Any]:
  """Writes the faujax workdir ``out`` of an ME-GraphAU stage-1 state dict; returns a report."""
  import jax  # pylint: disable=g-import-not-at-top
  from faujax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from faujax import labels  # pylint: disable=g-import-not-at-top
  from faujax import model_state  # pylint: disable=g-import-not-at-top
  from faujax import stored_info  # pylint: disable=g-import-not-at-top
  from faujax import train  # pylint: disable=g-import-not-at-top
  sd = _strip_module(sd)
  arch, num_aus = detect_me_graphau(sd)
  dataset = dataset or _DATASET_OF_N.get(num_aus)
  if au_names is None:
    if dataset is None or len(labels.AU_SETS.get(dataset, ())) != num_aus:
      raise ValueError(f'the checkpoint has {num_aus} AUs, which is not the AU set of '
                       f'{dataset or "BP4D (12) or DISFA (8)"}; pass --au_names with {num_aus} '
                       'names in the order of its outputs.')
    au_names = [f'AU{a}' for a in labels.AU_SETS[dataset]]
  if len(au_names) != num_aus:
    raise ValueError(f'--au_names has {len(au_names)} names; the checkpoint has {num_aus} AUs.')
  config, config_path = _macg_config(dataset or 'bp4d', arch)
  config = train.resolve_config(config)
  info = _info(dataset or 'bp4d', au_names, 200)
  state, _ = train.create_train_state(jax.random.key(0), config, info, steps_per_epoch=1,
                                      total_steps=1)
  template = {'params': state.params, 'batch_stats': state.batch_stats}
  template = jax.tree.map(np.asarray, template)
  variables, skipped = fill(template, sd, me_graphau_key_map(arch, num_aus))
  model_state.check_same_structure(template['params'], variables['params'], 'params')
  state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
  os.makedirs(out, exist_ok=True)
  checkpointer = ckpt_lib.Checkpointer(out, config)
  checkpointer.save(0, jax.device_get(state.to_host()), history=[], force=True)
  checkpointer.wait()
  checkpointer.close()
  stored_info.save(out, info, train_labels={})
  return {'format': 'me_graphau_stage1', 'arch': arch, 'num_aus': num_aus, 'au_names':
          list(au_names), 'config': config_path + ' (ablation baseline)', 'converted':
          len(sd) - len(skipped), 'skipped': skipped, 'out': out}


def emotion_gcn_key_map(num_layers: int = 2) -> dict[str, Target]:
  """{public key: target} of the public Emotion_GCN (``A`` excluded: checked, not loaded)."""
  out: dict[str, Target] = {}
  for key, (collection, path, _) in import_weights.torch_key_map('densenet121').items():
    out[key] = (collection, ('backbone',) + tuple(path), None,
                lambda x, c=collection, p=path: import_weights._to_flax(x, c, p))  # pylint: disable=protected-access
  for i in range(num_layers):  # GraphConvolution.weight is (in, out) already: no transpose
    out[f'gc{i + 1}.weight'] = ('params', ('label_gcn', f'gcn{i}', 'kernel'), None, _same)
  return out


def import_emotion_gcn(sd: Mapping[str, np.ndarray], out: str, *, embeddings: str,
                       data: Mapping[str, Any] | None = None,
                       accept_adjacency: bool = False) -> dict[str, Any]:
  """Writes the faujax workdir ``out`` of a public Emotion-GCN state dict; returns a report.

  Args:
    sd: the state dict (numpy values).
    out: the workdir to write.
    embeddings: the node-embedding source (``config.model.embeddings``; a GloVe text file).
    data: ``config.data`` overrides locating the dataset whose training labels give A''
      (default: configs/emotion_gcn/affectnet.py's AffectNet 7-class, e.g. ``{'manual_dir': ...}``).
    accept_adjacency: write the workdir even when the checkpoint's ``A`` differs from faujax's.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from faujax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from faujax import main as main_lib  # pylint: disable=g-import-not-at-top
  from faujax import stored_info  # pylint: disable=g-import-not-at-top
  from faujax import train  # pylint: disable=g-import-not-at-top
  from faujax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  import faujax  # pylint: disable=g-import-not-at-top
  sd = _strip_module(sd)
  for key in ('gc1.weight', 'gc2.weight', 'A'):
    if key not in sd:
      raise import_weights.StateDictMismatchError(
          f'not a public Emotion_GCN state dict: it has no {key}; first keys: {sorted(sd)[:8]}')
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(faujax.__file__))),
                      'configs', 'emotion_gcn', 'affectnet.py')
  if not os.path.isfile(path):
    raise ValueError(f'the Emotion-GCN config {path} is missing (the importer needs a faujax '
                     'checkout).')
  config = main_lib._load_config_file(path)  # pylint: disable=protected-access
  config.model.update({'embeddings': embeddings, 'p': 0.5, 'keep_va_edge': True})
  config.data.update(dict(data or {}))
  config = train.resolve_config(config)
  info = input_pipeline.get_dataset_info(config.data)
  state, _ = train.create_train_state(jax.random.key(0), config, info, steps_per_epoch=1,
                                      total_steps=1)
  model = state.apply_fn.module(state.params, state.batch_stats)
  computed = np.asarray(model.adjacency, np.float32)
  given = np.asarray(sd['A'], np.float32)
  if given.shape != computed.shape:
    raise import_weights.StateDictMismatchError(
        f'A: the checkpoint has {given.shape}, faujax\'s adjacency of {info.name} '
        f'({len(info.label_names)} classes + valence, arousal) is {computed.shape}.')
  diff = float(np.max(np.abs(given - computed)))
  if diff > 1e-4 and not accept_adjacency:
    raise ValueError(
        f'A: the checkpoint\'s adjacency differs from the one faujax computes from the training '
        f'labels of {info.name}/{info.builder_config} (max |difference| {diff:.4g}); the '
        'predictions would not be the released model\'s. Check the dataset (its training split) '
        'and config.model.tau / p, or pass --accept_adjacency to keep faujax\'s.')
  template = jax.tree.map(np.asarray, {'params': state.params, 'batch_stats': state.batch_stats})
  rest = {k: v for k, v in sd.items() if k != 'A'}
  variables, skipped = fill(template, rest, emotion_gcn_key_map(config.model.gcn_layers))
  skipped['A'] = f'checked against faujax\'s A\'\' (max |difference| {diff:.3g})'
  state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
  os.makedirs(out, exist_ok=True)
  checkpointer = ckpt_lib.Checkpointer(out, config)
  checkpointer.save(0, jax.device_get(state.to_host()), history=[], force=True)
  checkpointer.wait()
  checkpointer.close()
  stored_info.save(out, info)
  return {'format': 'emotion_gcn', 'arch': 'densenet121', 'classes': list(info.label_names),
          'adjacency_max_difference': diff, 'config': path + ' (p 0.5, keep_va_edge)',
          'converted': len(rest) - len([k for k in skipped if k != 'A']), 'skipped': skipped,
          'out': out}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m faujax.tools.import_checkpoint',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('src', help='the released checkpoint (.pth / .pt / .safetensors)')
  parser.add_argument('--format', required=True, choices=FORMATS)
  parser.add_argument('--out', required=True, help='faujax workdir to write')
  parser.add_argument('--dataset', choices=('bp4d', 'disfa'),
                      help='the AU set (default: from the number of AUs)')
  parser.add_argument('--au_names', help='comma-separated AU names, in output order')
  parser.add_argument('--embeddings', help='emotion_gcn: the node embeddings (GloVe text file)')
  parser.add_argument('--manual_dir', help='emotion_gcn: your AffectNet copy (training labels)')
  parser.add_argument('--data_dir', help='emotion_gcn: tfds data_dir where AffectNet is built')
  parser.add_argument('--accept_adjacency', action='store_true',
                      help="emotion_gcn: keep faujax's adjacency when the checkpoint's differs")
  args = parser.parse_args(argv)
  try:
    sd = import_weights.load_state_dict(args.src)
    if args.format == 'emotion_gcn':
      if not args.embeddings:
        raise ValueError('--format emotion_gcn needs --embeddings (the GloVe file of gc1\'s '
                         'input vectors).')
      data = {k: v for k, v in (('manual_dir', args.manual_dir), ('data_dir', args.data_dir)) if v}
      report = import_emotion_gcn(sd, args.out, embeddings=args.embeddings, data=data,
                                  accept_adjacency=args.accept_adjacency)
    else:
      report = import_me_graphau(sd, args.out, dataset=args.dataset,
                                 au_names=args.au_names.split(',') if args.au_names else None)
  except ValueError as e:  # StateDictMismatchError and UnsafeCheckpointError are ValueErrors
    print(f'error: {e}', file=sys.stderr)
    return 2
  labels = (f'{report["num_aus"]} AUs' if 'num_aus' in report
            else f'classes {report["classes"]}, adjacency max |difference| '
                 f'{report["adjacency_max_difference"]:.3g}')
  print(f'{args.src} -> {report["out"]}: {report["arch"]}, {labels}, '
        f'{report["converted"]} tensors converted, config {report["config"]}')
  for key, reason in sorted(report['skipped'].items()):
    print(f'  skipped {key}: {reason}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

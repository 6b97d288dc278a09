"""Converts the authors' PyTorch checkpoints into faujax runs.

  python -m faujax.tools.import_checkpoint FILE.pth --out DIR [--format auto]
      [--dataset bp4d|disfa|emotionet] [--au_names AU1,AU2,...] [--embeddings FILE]

Formats (``--format``, default ``auto``: detected from the keys where that is unambiguous, else
one message naming the candidates); every file the public code publishes or its scripts write
(the table of released files: README, "Released models"):

  me_graphau   ME-GraphAU (CVI-SZU/ME-GraphAU, ``model/ANFL.py`` stage 1 and ``model/MEFL.py``
               stage 2), ResNet-18/50/101 trunks, 12 BP4D or 8 DISFA AUs -> ``configs/me_graphau``.
  opengraphau  OpenGraphAU (its ``OpenGraphAU/model``), stage 1 and 2, 27 + 14 = 41 AUs ->
               ``configs/me_graphau/opengraphau.py``.
  emotion_gcn  Emotion-GCN (PanosAntoniadis/emotion-gcn ``models.py`` ``Emotion_GCN``), its
               ``main.py`` layout ``{epoch, model_state_dict, optimizer_state_dict}`` or a bare
               state dict -> ``configs/emotion_gcn/affectnet.py:public_code`` (the AffectNet
               model; ``--dataset aff_wild2``: the Aff-Wild2 model, 112 px, its class order). The adjacency is
               the checkpoint's own ``A`` (no dataset is read); the 300-d word vectors of the 9
               nodes come from ``--embeddings``: a GloVe text file, or the authors' embedding
               file (``--emb``, a torch-saved (9, 300) array, read without executing code).
  macg         MACG (lkq52110/au-recognition ``model.py``; ``../shared/reference/
               macg_checkpoint_format.md``) -> ``configs/macg/<dataset>.py:public_code``.

Checkpoints are read without executing pickled code (``import_weights.read_checkpoint``), with or
without DataParallel's ``module.`` prefix; the optimiser state and epoch of a training script's
dict and the BatchNorm ``num_batches_tracked`` counters are skipped with one summary line. Every
faujax variable must be filled exactly once and every tensor used, else the unmapped, missing
and mis-shaped keys are named (``StateDictMismatchError``). Swin and MAE-ViT trunks need
``faujax.backbones`` to have them.

The output is a faujax run like any other (``faujax.trained_run``): one verified checkpoint at
step 0 holding the parameters, the batch statistics, the model constants (Emotion-GCN's Z and
A'') and a fresh optimiser state, with its config and dataset record. The record carries the
authors' test transform: the stored face is the input resized to 256 px (224 / 256 centre crop
on the device) for ME-GraphAU, OpenGraphAU and MACG, 227 px for Emotion-GCN, ImageNet
normalisation; detected faces are aligned as the authors' data tools do (``faujax.faces``:
'eye_level', the MACG code's dlib / imutils aligner; 'emotion_gcn'). So
``faujax.predictor.Predictor`` and ``python -m faujax.predict`` use it without flags, and
``faujax.main`` fine-tunes from it (``--config.init_from=DIR``).

``cached_import(FILE)`` converts once into ``$FAUJAX_CACHE_DIR/imported/<sha256>``; ``python -m
faujax.predict --checkpoint FILE.pth`` uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from faujax import labels
from faujax.data import dataset_info
from faujax.tools import import_weights

FORMATS = ('me_graphau', 'opengraphau', 'emotion_gcn', 'macg')
_RESNETS = {(2, False): 'resnet18', (6, True): 'resnet50', (23, True): 'resnet101'}
# The class order of Emotion-GCN's Aff-Wild2 model: the annotation files' (0 Neutral, 1 Anger,
# ..., 6 Surprise), which its pickle_annotations_affwild2.py keeps.
AFF_WILD2_CLASSES = ('neutral', 'anger', 'disgust', 'fear', 'happy', 'sad', 'surprise')
_AU_DATASETS = {12: ('bp4d', 'emotionet'), 8: ('disfa',)}

# (collection, faujax path, index into a stacked array or None, transform)
Target = tuple[str, tuple[str, ...], int | None, Callable[[np.ndarray], np.ndarray]]
StateDictMismatchError = import_weights.StateDictMismatchError


def _same(x: np.ndarray) -> np.ndarray:
  return np.array(x, np.float32, copy=True)


def _transposed(x: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(x, np.float32).T)


def _conv1x1(x: np.ndarray) -> np.ndarray:
  """A 1 x 1 Conv2d weight (out, in, 1, 1) -> a Linear kernel (in, out)."""
  return np.ascontiguousarray(np.asarray(x, np.float32)[:, :, 0, 0].T)


def _square(n: int) -> Callable[[np.ndarray], np.ndarray]:
  """A per-edge vector (N * N,) -> (N, N), edge i * N + j at [i, j]."""
  return lambda x: np.asarray(x, np.float32).reshape(n, n).copy()


# ------------------------------------------------------------------------------------- key maps


def _bn(torch_prefix: str, path: tuple[str, ...], index: int | None = None,
        transform: Callable[[np.ndarray], np.ndarray] = _same) -> dict[str, Target]:
  return {f'{torch_prefix}.weight': ('params', path + ('scale',), index, transform),
          f'{torch_prefix}.bias': ('params', path + ('bias',), index, transform),
          f'{torch_prefix}.running_mean': ('batch_stats', path + ('mean',), index, transform),
          f'{torch_prefix}.running_var': ('batch_stats', path + ('var',), index, transform)}


def _linear(torch_prefix: str, path: tuple[str, ...], index: int | None = None,
            kernel: str = 'kernel', bias: str = 'bias') -> dict[str, Target]:
  return {f'{torch_prefix}.weight': ('params', path + (kernel,), index, _transposed),
          f'{torch_prefix}.bias': ('params', path + (bias,), index, _same)}


def _linear_block(torch_prefix: str, path: tuple[str, ...]) -> dict[str, Target]:
  """A public LinearBlock (``fc`` Linear, ``bn`` BatchNorm1d) -> faujax's ``LinearBlock``."""
  return {**_linear(f'{torch_prefix}.fc', path + ('fc',)), **_bn(f'{torch_prefix}.bn',
                                                                 path + ('bn',))}


def _per_node_blocks(torch_prefix: str, path: tuple[str, ...], n: int) -> dict[str, Target]:
  """N public LinearBlocks ``<prefix>.<i>`` -> faujax's stacked ``PerNodeLinearBlock``."""
  out: dict[str, Target] = {}
  for i in range(n):
    out.update(_linear(f'{torch_prefix}.{i}.fc', path, i))
    out.update(_bn(f'{torch_prefix}.{i}.bn', path + ('bn',), i))
  return out


def _trunk(torch_prefix: str, arch: str) -> tuple[dict[str, Target], dict[str, str]]:
  """The trunk's public keys (``<prefix><key>``) -> ``backbone/...``, and the keys it skips."""
  if arch in import_weights.TORCHVISION_ARCHS:
    targets = {f'{torch_prefix}{key}': (c, ('backbone',) + tuple(path), None,
                                        lambda x, c=c, p=path: import_weights.to_flax(x, c, p))
               for key, (c, path, _) in import_weights.torch_key_map(arch).items()}
    return targets, {}
  module = importlib.import_module('faujax.backbones.swin' if arch.startswith('swin')
                                   else 'faujax.backbones.vit')
  mapping, skipped = module.torch_key_map(arch)
  targets = {f'{torch_prefix}{key}': (c, ('backbone',) + tuple(path), None, transform)
             for key, (c, path, transform) in mapping.items()}
  return targets, {f'{torch_prefix}{key}': why for key, why in skipped.items()}


def me_graphau_key_map(arch: str, n: int, sub: int, stage: int,
                       opengraphau: bool) -> tuple[dict[str, Target], dict[str, str]]:
  """{public key: target} of ME-GraphAU / OpenGraphAU (``faujax.models.me_graphau``), and the
  public keys skipped on purpose; ``n`` main AUs, ``sub`` sided ones."""
  out, skipped = _trunk('backbone.', arch)
  out.update(_linear_block('global_linear', ('global_linear',)))
  blocks = 'head.main_class_linears' if opengraphau else 'head.class_linears'
  out.update(_per_node_blocks(blocks, ('class_linears',), n))
  out['head.main_sc' if opengraphau else 'head.sc'] = ('params', ('head', 'sc'), None, _same)
  if sub:
    out['head.sub_sc'] = ('params', ('head', 'sub_sc'), None, _same)
  if stage == 1:
    for name in ('U', 'V'):
      out.update(_linear(f'head.gnn.{name}', ('gnn',), kernel=f'{name}_kernel',
                         bias=f'{name}_bias'))
    out.update(_bn('head.gnn.bnv', ('gnn', 'bn')))
    return out, skipped
  gem = 'head.edge_extractor'
  for attn in ('FAM', 'ARM'):
    for proj in ('q', 'k', 'v'):
      out.update(_linear(f'{gem}.{attn}.linear_{proj}', ('edge_extractor', attn.lower(), proj)))
  out.update(_linear(f'{gem}.edge_proj', ('edge_extractor', 'edge_proj')))
  out.update(_bn(f'{gem}.bn', ('edge_extractor', 'bn'), transform=_square(n)))
  for layer in range(2):
    if opengraphau:
      prefix, suffix = f'head.gnn.graph_layers.{layer}.', ''
    else:
      prefix, suffix = 'head.gnn.', str(layer + 1)
    path = ('gnn', str(layer))
    for name in ('U', 'V', 'A', 'B', 'E'):
      out[f'{prefix}{name}{suffix}.weight'] = ('params', path + (name,), None, _transposed)
    out.update(_bn(f'{prefix}bnv{suffix}', path + ('bn_nodes',)))
    out.update(_bn(f'{prefix}bne{suffix}', path + ('bn_edges',), transform=_square(n)))
  if not opengraphau:
    out.update(_linear('head.edge_fc', ('edge_fc',)))
  return out, skipped


def macg_key_map(n: int) -> tuple[dict[str, Target], dict[str, str]]:
  """{public key: target} of the public MACG (``faujax.models.macg`` with the public code's
  switches: one shared CCFG block, the 1 x k strip before the k x 1 one, a fixed lambda)."""
  out, skipped = _trunk('backbone.', 'resnet50')
  out.update(_linear_block('global_linear', ('global_block',)))
  out['head.sc'] = ('params', ('head', 'sc'), None, _same)
  for name in ('U', 'V'):
    out.update(_linear(f'head.gnn.{name}', ('gnn_0',), kernel=f'{name}_kernel',
                       bias=f'{name}_bias'))
  out.update(_bn('head.gnn.bnv', ('gnn_0', 'bn')))
  out.update(_per_node_blocks('head.mafg.class_linears', ('mafg', 'au_blocks'), n))
  conv = lambda x: import_weights.to_flax(x, 'params', ('kernel',))
  attention = ('mafg', 'attention')
  convs = {'conv0': 'conv0', 'conv3': 'mix'}
  for i in range(3):  # conv{i}_1: the 1 x k strip (runs first), conv{i}_2: the k x 1 strip
    convs.update({f'conv{i}_1': f'conv{i + 1}_x', f'conv{i}_2': f'conv{i + 1}_y'})
  for public, ours in convs.items():
    out[f'head.mafg.{public}.weight'] = ('params', attention + (ours, 'kernel'), None, conv)
    out[f'head.mafg.{public}.bias'] = ('params', attention + (ours, 'bias'), None, _same)
  for public, ours in {'conv1': 'rel1', 'conv2': 'rel2', 'conv3': 'local', 'conv4': 'fuse'}.items():
    out[f'head.ccfg.{public}.weight'] = ('params', ('ccfg', 'topology', ours, 'kernel'), None,
                                         _conv1x1)
    out[f'head.ccfg.{public}.bias'] = ('params', ('ccfg', 'topology', ours, 'bias'), None, _same)
  out.update(_linear_block('head.ccfg.class_linear', ('ccfg', 'shared_block')))
  out.update(_linear_block('head.post_concat', ('fusion',)))
  for key in ('fc.weight', 'fc.bias', 'bn.weight', 'bn.bias', 'bn.running_mean',
              'bn.running_var', 'bn.num_batches_tracked'):
    skipped[f'head.class_linear.{key}'] = 'a LinearBlock the public forward never calls'
  return out, skipped


def emotion_gcn_key_map() -> tuple[dict[str, Target], dict[str, str]]:
  """{public key: target} of the public ``Emotion_GCN`` (its ``A`` becomes a constant)."""
  out, skipped = _trunk('', 'densenet121')  # torchvision's keys: 'features.<layer>...'
  for i in range(2):  # GraphConvolution.weight is (in, out) already: no transpose
    out[f'gc{i + 1}.weight'] = ('params', ('label_gcn', f'gcn{i}', 'kernel'), None, _same)
  return out, skipped


# ------------------------------------------------------------------------------------ detection


@dataclasses.dataclass(frozen=True)
class Detected:
  """What a state dict holds."""
  format: str
  arch: str
  stage: int = 0          # ME-GraphAU / OpenGraphAU
  num_aus: int = 0        # main AUs (graph nodes)
  num_sided: int = 0      # OpenGraphAU's left / right AUs


def strip_module(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Without DataParallel's ``module.`` prefix (when every key has it)."""
  if sd and all(k.startswith('module.') for k in sd):
    return {k[len('module.'):]: v for k, v in sd.items()}
  return dict(sd)


def trunk_of(sd: Mapping[str, np.ndarray], prefix: str = 'backbone.') -> str:
  """The faujax trunk name of the keys under ``prefix``.

  Raises:
    StateDictMismatchError: a trunk faujax does not have (named), or none recognised.
  """
  from faujax import backbones  # pylint: disable=g-import-not-at-top
  keys = [k[len(prefix):] for k in sd if k.startswith(prefix)]
  if any(k.startswith('layers.') and '.blocks.' in k for k in keys):
    depth3 = len({m.group(1) for k in keys if (m := re.match(r'layers\.2\.blocks\.(\d+)\.', k))})
    width = int(np.shape(sd[f'{prefix}patch_embed.proj.weight'])[0]) if (
        f'{prefix}patch_embed.proj.weight' in sd) else 0
    name = {(6, 96): 'swin_tiny', (18, 96): 'swin_small', (18, 128): 'swin_base'}.get(
        (depth3, width), f'a Swin Transformer ({depth3} blocks in stage 3, width {width})')
  elif any(k.startswith(('encoder.blocks.', 'blocks.')) for k in keys):
    name = 'mae_vit_base'
  elif any(k.startswith('denseblock') for k in keys):
    layers = [len({m.group(1) for k in keys
                   if (m := re.match(rf'denseblock{b}\.denselayer(\d+)\.', k))})
              for b in range(1, 5)]
    name = 'densenet121' if layers == [6, 12, 24, 16] else f'a DenseNet with blocks {layers}'
  else:
    blocks = {int(m.group(1)) for k in keys if (m := re.match(r'layer3\.(\d+)\.', k))}
    bottleneck = any(k.startswith('layer1.0.conv3.') for k in keys)
    name = _RESNETS.get((max(blocks) + 1 if blocks else 0, bottleneck), '')
    if not name:
      raise StateDictMismatchError(
          f'the trunk under {prefix!r} is not ResNet-18/50/101, Swin-T/S/B or MAE-ViT-B '
          f'(layer3 blocks {sorted(blocks)}, bottleneck {bottleneck}); first keys: '
          f'{keys[:6]}')
  if name not in backbones.ARCHS:
    raise StateDictMismatchError(
        f'the checkpoint\'s trunk is {name}, which is not in faujax yet (faujax.backbones has '
        f'{", ".join(backbones.ARCHS)}).')
  return name


def detect(sd: Mapping[str, np.ndarray]) -> Detected:
  """The format, trunk, stage and AU counts of a (prefix-stripped) state dict.

  Raises:
    StateDictMismatchError: no format fits (naming what each needs).
  """
  gem = 'head.edge_extractor.FAM.linear_q.weight'
  if 'head.main_sc' in sd:
    n = int(np.shape(sd['head.main_sc'])[0])
    sided = int(np.shape(sd['head.sub_sc'])[0]) if 'head.sub_sc' in sd else 0
    return Detected('opengraphau', trunk_of(sd), 2 if gem in sd else 1, n, sided)
  if 'head.sc' in sd and 'head.mafg.conv0.weight' in sd:
    return Detected('macg', trunk_of(sd), 0, int(np.shape(sd['head.sc'])[0]))
  if 'head.sc' in sd:
    return Detected('me_graphau', trunk_of(sd), 2 if gem in sd else 1,
                    int(np.shape(sd['head.sc'])[0]))
  if 'gc1.weight' in sd and 'A' in sd:
    return Detected('emotion_gcn', trunk_of(sd, 'features.'))
  raise StateDictMismatchError(
      'the keys fit none of the formats: me_graphau needs head.sc (+ head.gnn.*), opengraphau '
      'head.main_sc, macg head.sc with head.mafg.*, emotion_gcn gc1.weight and A; first keys: '
      f'{sorted(sd)[:8]}')


# ------------------------------------------------------------------------------------ filling


def fill(template: Mapping[str, Mapping[str, Any]], sd: Mapping[str, np.ndarray],
         key_map: Mapping[str, Target], known_skips: Mapping[str, str] | None = None
         ) -> tuple[dict[str, Any], dict[str, str]]:
  """``template``'s params / batch_stats (``model_state.variables`` layout) with every leaf taken
  from ``sd`` through ``key_map``; returns (variables, skipped {key: reason}).

  Raises:
    StateDictMismatchError: naming unmapped (unexpected), missing and mis-shaped keys, and
      faujax variables that the map leaves unfilled or fills twice.
  """
  from faujax import model_state  # pylint: disable=g-import-not-at-top
  flat = {c: {k: np.array(v, np.float32) for k, v in model_state.flatten(template[c]).items()}
          for c in ('params', 'batch_stats')}
  filled: dict[tuple[str, str, int | None], str] = {}
  skipped = {k: 'BatchNorm step counter' for k in sd if k.endswith('num_batches_tracked')}
  skipped.update({k: v for k, v in (known_skips or {}).items() if k in sd})
  unexpected = sorted(k for k in sd if k not in key_map and k not in skipped)
  missing = sorted(k for k in key_map if k not in sd)
  wrong, twice = [], []
  for key, (collection, path, index, transform) in key_map.items():
    if key not in sd:
      continue
    name = '/'.join(path)
    if name not in flat[collection]:
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
      if not slots or (slots != [-1] and slots != list(range(x.shape[0] if x.ndim else 0))):
        unfilled.append(f'{collection}/{name}')
  if unexpected or missing or wrong or twice or unfilled:
    raise StateDictMismatchError(
        'the state dict does not fit the faujax model:\n' + import_weights.listing([
            ('unmapped keys', unexpected), ('missing keys', missing),
            ('wrong shapes', wrong), ('faujax variables filled twice', twice),
            ('faujax variables left unfilled', unfilled)]))
  return {c: model_state.unflatten(leaves) for c, leaves in flat.items()}, skipped


# ------------------------------------------------------------------------------------- the run


def _au_info(name: str, au_names: Sequence[str], image_size: int, alignment: str):
  aus = tuple(int(re.sub(r'^AU[LR]?', '', n)) if re.fullmatch(r'AU[LR]?\d+', n) else k
              for k, n in enumerate(au_names))
  n = len(au_names)
  return dataset_info.DatasetInfo(
      name=name, builder_config='', task='au', label_names=list(au_names), num_labels=n,
      aus=aus, num_examples={'train': 0, 'validation': 0, 'test': 0}, image_size=image_size,
      num_landmarks=68, fold=1, train_occurrence_rates=np.full((n,), 0.5, np.float32),
      class_counts=np.zeros((n,), np.int64), alignment=alignment)


def write_run(out: str, config: Any, info: Any, variables: Mapping[str, Any],
              constants: Mapping[str, Any]) -> None:
  """``out`` as a faujax run: one verified checkpoint at step 0 (``variables``, the model's
  ``constants`` tree, a fresh optimiser state), its config and dataset record. Written in a
  sibling temporary directory and renamed, so a failed import leaves nothing behind."""
  import jax  # pylint: disable=g-import-not-at-top
  from faujax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from faujax import config_base  # pylint: disable=g-import-not-at-top
  from faujax import optim  # pylint: disable=g-import-not-at-top
  from faujax import train  # pylint: disable=g-import-not-at-top
  sections = config_base.config_sections(config)
  tx, _ = optim.create_optimizer(sections['optim'], sections['schedule'], variables['params'],
                                 steps_per_epoch=1, total_steps=1)
  state = {'step': np.zeros((), np.int32), 'params': variables['params'],
           'batch_stats': variables['batch_stats'], 'constants': constants,
           'opt_state': jax.device_get(tx.init(variables['params'])),
           'nonfinite_step': np.full((), -1, np.int32)}
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.import-', dir=parent)
  try:
    checkpointer = ckpt_lib.Checkpointer(tmp, config, dataset=train.dataset_record(info))
    checkpointer.save(0, state, history=[], force=True)
    checkpointer.wait()
    checkpointer.close()
    if os.path.isdir(out) and not os.listdir(out):
      os.rmdir(out)
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _check_out(out: str) -> None:
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ValueError(f'--out {out}: exists and is not an empty directory; choose a new one.')


def _au_names(detected: Detected, dataset: str | None,
              au_names: Sequence[str] | None) -> tuple[str, list[str]]:
  """(dataset name, output names) of an AU checkpoint."""
  if detected.format == 'opengraphau':
    names = labels.opengraphau_label_names()
    if detected.num_aus + detected.num_sided != len(names):
      raise StateDictMismatchError(
          f'an OpenGraphAU checkpoint with {detected.num_aus} main and {detected.num_sided} '
          f'sided AUs; the public models have {len(labels.OPENGRAPHAU_AUS)} and '
          f'{2 * len(labels.OPENGRAPHAU_SIDED_AUS)}.')
    return labels.OPENGRAPHAU_DATASET, list(au_names or names)
  n = detected.num_aus
  candidates = _AU_DATASETS.get(n, ())
  if detected.format == 'me_graphau':
    candidates = tuple(c for c in candidates if c != 'emotionet')  # ME-GraphAU: BP4D, DISFA
  if dataset is None:
    if au_names is not None:
      return 'custom', list(au_names)
    if len(candidates) != 1:
      raise ValueError(
          f'the checkpoint has {n} AUs; ' + (f'pass --dataset {" or ".join(candidates)} (the '
                                             'file does not say which)' if candidates else
                                             f'pass --au_names with {n} names in output order')
          + '.')
    dataset = candidates[0]
  names = list(au_names) if au_names else labels.au_label_names(labels.au_set(dataset))
  if len(names) != n:
    raise ValueError(f'{"--au_names" if au_names else dataset} has {len(names)} AUs; the '
                     f'checkpoint has {n}.')
  return dataset, names


def import_state_dict(sd: Mapping[str, np.ndarray], out: str, *, format: str = 'auto',  # pylint: disable=redefined-builtin
                      dataset: str | None = None, au_names: Sequence[str] | None = None,
                      embeddings: str | None = None,
                      wrapper_skips: Mapping[str, str] | None = None) -> dict[str, Any]:
  """Writes the faujax run ``out`` of a public state dict; returns a report.

  Args:
    sd: the state dict (numpy values; a ``module.`` prefix is stripped).
    out: the run directory to write (must not exist or be empty).
    format: one of ``FORMATS`` or 'auto'.
    dataset: the AU label space when the AU count does not say it (12 AUs: 'bp4d' or
      'emotionet' for MACG).
    au_names: output names instead of a dataset's (any AU count).
    embeddings: emotion_gcn: a GloVe text file or the authors' embedding file.
    wrapper_skips: the training script's entries that were not weights (reported).
  """
  from faujax import config_base  # pylint: disable=g-import-not-at-top
  from faujax import models  # pylint: disable=g-import-not-at-top
  sd = strip_module(sd)
  _check_out(out)
  detected = detect(sd)
  if format not in ('auto', detected.format):
    if format not in FORMATS:
      raise ValueError(f'--format {format!r}; expected auto or one of {FORMATS}.')
    raise StateDictMismatchError(f'--format {format}: the keys are those of {detected.format} '
                                 f'({detected.arch}); pass --format auto or {detected.format}.')
  constants: dict[str, np.ndarray] = {}
  if detected.format == 'emotion_gcn':
    affwild2 = dataset == 'aff_wild2'
    config = config_base.repository_config(
        f'emotion_gcn/{"aff_wild2" if affwild2 else "affectnet"}.py:public_code')
    if affwild2:  # main.py: Aff-Wild2's frames are resized to 112 px
      config.augment.image_size = 112
    info = _expression_info(config, AFF_WILD2_CLASSES if affwild2 else labels.EXPRESSIONS_7)
    a = np.asarray(sd['A'], np.float32)
    if a.shape != (9, 9):
      raise StateDictMismatchError(f'A has shape {a.shape}; Emotion-GCN has 9 nodes (7 classes, '
                                   'valence, arousal).')
    if not embeddings:
      raise ValueError('--format emotion_gcn needs --embeddings: the GloVe file or the authors\' '
                       'embedding file of the 9 node words (gc1\'s 300-d inputs).')
    constants = {'embeddings': _node_embeddings(embeddings, info), 'adjacency': a}
    config.model.embeddings = os.path.abspath(embeddings)
    key_map, known = emotion_gcn_key_map()
    known['A'] = 'the adjacency A\'\': stored as the run\'s constant'
    config.model.backbone = models.backbone_config(detected.arch)
  else:
    name, names = _au_names(detected, dataset, au_names)
    alignment = 'eye_level'
    if detected.format == 'macg':
      config = config_base.repository_config(f'macg/{_config_dataset(name)}.py:public_code')
      key_map, known = macg_key_map(detected.num_aus)
      config.model.backbone = models.backbone_config(detected.arch)
    else:
      relative = ('me_graphau/opengraphau.py' if detected.format == 'opengraphau'
                  else f'me_graphau/{_config_dataset(name, ("bp4d", "disfa"))}.py')
      config = config_base.repository_config(f'{relative}:stage{detected.stage}')
      key_map, known = me_graphau_key_map(detected.arch, detected.num_aus, detected.num_sided,
                                          detected.stage, detected.format == 'opengraphau')
      config.model.backbone = models.backbone_config(detected.arch)
    config.data.name = name
    info = _au_info(name, names, 256, alignment)
  config = config_base.resolve_config(config)
  template = _template(config, info, constants)
  variables, skipped = fill(template, sd, key_map, known)
  write_run(out, config, info, variables, template['constants'])
  skipped.update(dict(wrapper_skips or {}))
  return {'format': detected.format, 'arch': detected.arch, 'stage': detected.stage,
          'labels': list(info.label_names), 'converted': len(key_map), 'skipped': skipped,
          'out': os.path.abspath(out)}


def _config_dataset(name: str, allowed: Sequence[str] = ('bp4d', 'disfa', 'emotionet')) -> str:
  """The dataset whose config a custom label space uses (BP4D's recipe)."""
  return name if name in allowed else 'bp4d'


def _template(config: Any, info: Any, constants: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """The model's variables: params and batch_stats as zeros of their shapes (nothing is
  initialised), the constants as given (at their module paths)."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from faujax import model_state  # pylint: disable=g-import-not-at-top
  from faujax import models  # pylint: disable=g-import-not-at-top
  model = nnx.eval_shape(lambda: models.build(config.model, info, rngs=nnx.Rngs(0),
                                              constants=dict(constants)))
  shapes = model_state.variables(model)
  out = {c: jax.tree.map(lambda x: np.zeros(x.shape, np.float32), shapes[c])
         for c in ('params', 'batch_stats')}
  out['constants'] = model_state.unflatten(
      {key: np.asarray(constants[key.rsplit('/', 1)[-1]], np.float32)
       for key in model_state.flatten(shapes['constants'])})
  return out


def _expression_info(config: Any, classes: Sequence[str]):
  names = list(classes)
  n = len(names)
  return dataset_info.DatasetInfo(
      name=config.data.name, builder_config=config.data.builder_config or '',
      task='expression', label_names=names, num_labels=n, aus=(),
      num_examples={'train': 0, 'validation': 0, 'test': 0},
      image_size=int(config.augment.image_size), num_landmarks=68, fold=1,
      train_occurrence_rates=np.full((n,), 1.0 / n, np.float32),
      class_counts=np.ones((n,), np.int64),
      alignment='emotion_gcn' if config.data.name == 'affectnet' else '')


def _node_embeddings(path: str, info: Any) -> np.ndarray:
  """(9, 300) node vectors: a GloVe text file (by name), or the authors' embedding file (a
  torch-saved (9, 300) array in node order, read without executing code)."""
  from faujax.models import emotion_gcn  # pylint: disable=g-import-not-at-top
  from faujax.models import label_embeddings  # pylint: disable=g-import-not-at-top
  nodes = emotion_gcn.node_names(info.label_names)
  if not os.path.isfile(path):
    raise ValueError(f'--embeddings {path!r}: no such file.')
  if os.path.splitext(path)[1].lower() in ('.txt', '.vec'):
    z = label_embeddings.load_embeddings(path, nodes)
  else:
    z = import_weights.read_array(path)
  z = np.asarray(z, np.float32)
  if z.ndim == 3 and z.shape[0] == 1:  # saved with a batch axis
    z = z[0]
  if z.shape != (len(nodes), 300):
    raise ValueError(f'--embeddings {path}: {z.shape}; expected ({len(nodes)}, 300), one 300-d '
                     f'vector per node {nodes}.')
  return z


# ---------------------------------------------------------------------------------------- cache


def cache_root() -> str:
  """Where converted files are kept: ``$FAUJAX_CACHE_DIR/imported`` (default
  ``~/.cache/faujax/imported``)."""
  base = os.environ.get('FAUJAX_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'faujax')
  return os.path.join(base, 'imported')


def cached_import(path: str, **options: Any) -> str:
  """The run converted from the file ``path`` (once; later calls find it by the file's SHA-256
  in ``cache_root()``); ``options`` as ``import_state_dict``'s."""
  out = os.path.join(cache_root(), import_weights.sha256(path)[:32])
  if os.path.isdir(os.path.join(out, 'checkpoints')):
    return out
  sd, wrapper_skips = import_weights.read_checkpoint(path)
  try:
    import_state_dict(sd, out, wrapper_skips=wrapper_skips, **options)
  except FileExistsError:  # another process converted it meanwhile
    pass
  return out


# ---------------------------------------------------------------------------------------- main


def summary(src: str, report: Mapping[str, Any]) -> list[str]:
  """The lines the command prints: what was converted, then one line of skipped entries."""
  stage = f' stage {report["stage"]}' if report['stage'] else ''
  lines = [f'{src} -> {report["out"]}: {report["format"]}{stage}, {report["arch"]}, '
           f'{len(report["labels"])} outputs, {report["converted"]} tensors converted.']
  skipped = report['skipped']
  counters = sum(k.endswith('num_batches_tracked') for k in skipped)
  others = {k: v for k, v in skipped.items() if not k.endswith('num_batches_tracked')}
  groups: dict[str, list[str]] = {}
  for key, why in others.items():
    groups.setdefault(why, []).append(key)
  parts = [f'{counters} BatchNorm step counters'] if counters else []
  parts += [f'{keys[0] if len(keys) == 1 else f"{len(keys)} keys ({keys[0]}, ...)"}: {why}'
            for why, keys in groups.items()]
  if parts:
    lines.append('  skipped: ' + '; '.join(parts))
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m faujax.tools.import_checkpoint',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('src', help='the checkpoint (.pth / .pt / .safetensors)')
  parser.add_argument('--out', required=True, help='the faujax run directory to write')
  parser.add_argument('--format', default='auto', choices=('auto',) + FORMATS)
  parser.add_argument('--dataset', choices=('bp4d', 'disfa', 'emotionet', 'aff_wild2'),
                      help='the AU set, when the AU count does not say it; aff_wild2: an '
                           'Emotion-GCN model trained on Aff-Wild2 (112 px, its class order)')
  parser.add_argument('--au_names', help='comma-separated output names, in output order')
  parser.add_argument('--embeddings', help='emotion_gcn: GloVe text file or the authors\' '
                                           'embedding file of the 9 node words')
  args = parser.parse_args(argv)
  try:
    sd, wrapper_skips = import_weights.read_checkpoint(args.src)
    report = import_state_dict(sd, args.out, format=args.format, dataset=args.dataset,
                               au_names=args.au_names.split(',') if args.au_names else None,
                               embeddings=args.embeddings, wrapper_skips=wrapper_skips)
  except ValueError as e:  # StateDictMismatchError, UnsafeCheckpointError, ConfigError
    print(f'error: {e}', file=sys.stderr)
    return 2
  print('\n'.join(summary(args.src, report)))
  return 0


if __name__ == '__main__':
  sys.exit(main())

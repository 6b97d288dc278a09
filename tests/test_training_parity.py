"""Training parity of the ``:public_code`` recipes with the authors' training scripts (skipped
unless the public code is checked out: ``tests/public_code.py``).

For MACG (lkq52110/au-recognition, 8 AUs, ``configs/macg/disfa.py:public_code``) and Emotion-GCN
(PanosAntoniadis/emotion-gcn, ``configs/emotion_gcn/affectnet.py:public_code``): the public model
with its own initialisation is imported into faujax (``faujax.tools.import_checkpoint``), then
both train 5 optimiser steps on the same batches with augmentation off:
  * faujax: ``faujax.train.train_step`` with the recipe's optimiser and schedule
    (``train.create_train_state``: the recipe's BatchNorm options included), float32;
  * the reference: the public training step (MACG: ``train.py`` lines 41-52 with ``utils.py``'s
    ``adjust_learning_rate`` and ``WeightedAsymmetricLoss``, AdamW as ``train.py`` line 107;
    Emotion-GCN: ``training.train_model_multi`` on one batch with ``main.py``'s class-weighted
    cross-entropy, ``ccc.CCC_loss`` and SGD, lines 185-196) in float64, and again in float32.
After each step the loss, every parameter and every BatchNorm statistic are compared (each
torch tensor mapped by the importer's key map): faujax against float64 must stay within
``NOISE_FACTOR`` times the float32 noise of the reference itself (float32 against float64).
Inputs are small to stay fast on a CPU (MACG: batch 4 at 64 px, a 2 x 2 ResNet-50 map;
Emotion-GCN: batch 6 at 112 px, the public code's Aff-Wild2 size, a 3 x 3 DenseNet map).

  FAUJAX_PUBLIC_CODE=/work/public /work/pvenv/bin/python -m pytest -q tests/test_training_parity.py
  FAUJAX_PUBLIC_CODE=/work/public /work/pvenv/bin/python tests/test_training_parity.py  # the table
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import os

import numpy as np
import pytest

import public_code

torch = pytest.importorskip('torch')

STEPS = 5
NOISE_FACTOR = 10.0
# Below this, differences are float32 rounding of values of order one (the reference's noise
# can be smaller than that on a quantity that barely moves).
FLOOR = 2e-6
MACG_LR, MACG_EPOCHS, MACG_ITERS = 1e-4, 2, 5  # the cosine over 2 epochs of 5 steps


def _rel(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def _flat(variables):
  from faujax import model_state
  return {c: {k: np.asarray(v, np.float64) for k, v in model_state.flatten(variables[c]).items()}
          for c in ('params', 'batch_stats')}


def _mapped(net, template, key_map, known):
  """The torch module's state in faujax's layout (the importer's key map)."""
  from faujax.tools import import_checkpoint
  sd = {k: v.detach().to(torch.float64).numpy().copy() for k, v in net.state_dict().items()}
  variables, _ = import_checkpoint.fill(template, sd, key_map, known)
  return _flat(variables)


def _compare(faujax_state, ref64, ref32):
  """Per collection (params, batch_stats): the largest relative difference of a tensor from
  float64 for faujax and for the float32 reference, and the largest excess of faujax's over
  ``NOISE_FACTOR`` times that tensor's own float32 noise (<= 0: within the noise everywhere)."""
  out = {}
  for c in ref64:
    err = {k: _rel(faujax_state[c][k], ref64[c][k]) for k in ref64[c]}
    noise = {k: _rel(ref32[c][k], ref64[c][k]) for k in ref64[c]}
    excess = max(err[k] - max(NOISE_FACTOR * noise[k], FLOOR) for k in err)
    out[c] = (max(err.values()), max(noise.values()), excess)
  return out


def _import(net, tmp_path, wrapper, **options):
  from faujax import trained_run
  from faujax.tools import import_checkpoint
  path = str(tmp_path / 'initial.pth')
  sd = {f'module.{k}': v for k, v in net.state_dict().items()}
  torch.save({'epoch': 0, wrapper: sd}, path)
  sd, skips = import_checkpoint.import_weights.read_checkpoint(path)
  import_checkpoint.import_state_dict(sd, str(tmp_path / 'run'), wrapper_skips=skips, **options)
  return trained_run.load_run(str(tmp_path / 'run'))


def _faujax_steps(run, info, batches, image_size):
  """``STEPS`` faujax train steps from the imported variables: (losses, states after each)."""
  import jax
  from faujax import model_state
  from faujax import train
  from faujax.data import augment
  config = run.config
  state, schedule = train.create_train_state(
      jax.random.key(0), config, info, steps_per_epoch=MACG_ITERS,
      total_steps=MACG_ITERS * MACG_EPOCHS, constants={  # by leaf name, as a restored run
          k.rsplit('/', 1)[-1]: np.asarray(v)
          for k, v in model_state.flatten(run.variables['constants']).items()})
  params = jax.tree.map(np.asarray, run.variables['params'])
  state = state.replace(params=params, opt_state=state.tx.init(params),
                        batch_stats=jax.tree.map(np.asarray, run.variables['batch_stats']))
  off = augment.AugmentConfig(  # augmentation off: the stored pixels, normalised
      image_size=image_size, crop_scale=(1.0, 1.0), flip=False, rotation_deg=0.0,
      brightness=0.0, contrast=0.0, saturation=0.0, mean=tuple(config.augment.mean),
      std=tuple(config.augment.std), interpolation=config.augment.interpolation)
  step = jax.jit(functools.partial(train.train_step, task=train.build_task(config, info),
                                   aug_config=off, schedule=schedule))
  losses, states = [], []
  for batch in batches:
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(float(metrics['loss']))
    states.append(_flat({'params': state.params, 'batch_stats': state.batch_stats}))
  return losses, states


@contextlib.contextmanager
def _computing_in(dtype):
  """The public MACG builds its graph in float32 whatever its input (``model.py`` line 91
  ``.float()``, line 115 ``torch.eye``), Emotion-GCN its adjacency (``utils.gen_adj``): while the reference runs, ``Tensor.float`` and new
  tensors take ``dtype`` instead, so the float64 reference is float64 throughout."""
  default, to_float = torch.get_default_dtype(), torch.Tensor.float
  torch.set_default_dtype(dtype)
  torch.Tensor.float = lambda self, *a, **k: self.to(dtype)
  try:
    yield
  finally:
    torch.set_default_dtype(default)
    torch.Tensor.float = to_float


def _torch_inputs(batch, mean, std, dtype):
  x = batch['image'].astype(np.float64) / 255.0
  x = (x - np.asarray(mean)) / np.asarray(std)
  return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dtype)


def _table(name, faujax_run, ref64, ref32):
  """Rows per step: loss, params and BatchNorm statistics, faujax vs float64 and the float32
  reference vs float64."""
  rows = []
  for i in range(STEPS):
    cmp = _compare(faujax_run[1][i], ref64[1][i], ref32[1][i])
    loss, loss_noise = (abs(run[0][i] - ref64[0][i]) / abs(ref64[0][i])
                        for run in (faujax_run, ref32))
    rows.append({'recipe': name, 'step': i + 1, 'loss': loss, 'loss_noise': loss_noise,
                 'loss_excess': loss - max(NOISE_FACTOR * loss_noise, FLOOR),
                 **{f'{key}{suffix}': value
                    for key, c in (('params', 'params'), ('bn', 'batch_stats'))
                    for suffix, value in zip(('', '_noise', '_excess'), cmp[c])}})
  return rows


def _check(rows):
  for row in rows:
    for key in ('loss', 'params', 'bn'):
      assert row[f'{key}_excess'] <= 0, (key, row)


def _print(rows):
  print('recipe | step | loss: faujax / f32 noise | params: faujax / f32 noise | '
        'BN statistics: faujax / f32 noise')
  for r in rows:
    print(f"{r['recipe']} | {r['step']} | {r['loss']:.2e} / {r['loss_noise']:.2e} | "
          f"{r['params']:.2e} / {r['params_noise']:.2e} | {r['bn']:.2e} / {r['bn_noise']:.2e}")


# --------------------------------------------------------------------------------------- MACG


def macg_rows(tmp_path):
  from faujax import losses as losses_lib
  from faujax.tools import import_checkpoint
  model = public_code.load('au-recognition', 'model', 'public_macg_train')
  utils = public_code.load('au-recognition', 'utils', 'public_macg_train')
  model.resnet50 = lambda pretrained=False, _f=model.resnet50, **kw: _f(pretrained=False, **kw)
  n, batch_size, size = 8, 4, 64
  torch.manual_seed(0)
  net = model.MACG(num_classes=n, backbone='resnet50', neighbor_num=3)
  run = _import(net, tmp_path, 'state_dict')
  assert run.config.unbiased_running_var and run.config.model.ccfg_per_au_statistics
  rates = np.linspace(0.1, 0.6, n)
  info = dataclasses.replace(run.info, train_occurrence_rates=rates)
  weights = np.asarray(losses_lib.occurrence_weights(rates), np.float64)
  rng = np.random.default_rng(0)
  batches = [{'image': rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
              'landmarks': np.zeros((batch_size, 0, 2), np.float32),
              'au': rng.integers(0, 2, (batch_size, n)).astype(np.float32),
              'au_mask': np.ones((batch_size, n), np.float32),
              'valid': np.ones((batch_size,), np.float32)} for _ in range(STEPS)]
  ours = _faujax_steps(run, info, batches, size)
  key_map, known = import_checkpoint.macg_key_map(n)

  def reference(dtype):
    ref = copy.deepcopy(net).to(dtype)
    optimizer = torch.optim.AdamW(ref.parameters(), betas=(0.9, 0.999), lr=MACG_LR,
                                  weight_decay=run.config.optim.weight_decay)
    criterion = utils.WeightedAsymmetricLoss(weight=torch.from_numpy(weights).to(dtype))
    out_losses, states = [], []
    for it, batch in enumerate(batches):  # train.py lines 41-52, one batch each
      utils.adjust_learning_rate(optimizer, it // MACG_ITERS, MACG_EPOCHS, MACG_LR,
                                 it % MACG_ITERS, MACG_ITERS)
      ref.train()
      optimizer.zero_grad()
      outputs = ref(_torch_inputs(batch, run.config.augment.mean, run.config.augment.std, dtype))
      loss = criterion(outputs, torch.from_numpy(batch['au']).to(dtype))
      loss.backward()
      optimizer.step()
      out_losses.append(loss.item())
      states.append(_mapped(ref, run.variables, key_map, known))
    return out_losses, states

  with _computing_in(torch.float64):
    ref64 = reference(torch.float64)
  return _table('macg disfa:public_code', ours, ref64, reference(torch.float32))


# -------------------------------------------------------------------------------- Emotion-GCN

AFFECTNET_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882)  # main.py lines 185-186


def emotion_gcn_rows(tmp_path):
  tv = pytest.importorskip('torchvision')
  from faujax.tools import import_checkpoint
  models = public_code.load('emotion-gcn', 'models', 'public_egcn_train')
  training = public_code.load('emotion-gcn', 'training', 'public_egcn_train')
  ccc = public_code.load('emotion-gcn', 'ccc', 'public_egcn_train')
  original = tv.models.densenet121
  models.models.densenet121 = lambda pretrained=False, **kw: original(weights=None)
  adj = os.path.join(public_code.root('emotion-gcn'), 'data', 'spearman_affectnet.pkl')
  batch_size, size = 6, 112
  torch.manual_seed(0)
  net = models.Emotion_GCN(adj_file=adj, in_channel=300, input_size=size)
  emb = torch.randn(9, 300, generator=torch.Generator().manual_seed(0))
  torch.save(emb, tmp_path / 'emb.pkl')
  run = _import(net, tmp_path, 'model_state_dict', embeddings=str(tmp_path / 'emb.pkl'))
  assert run.config.unbiased_running_var and run.config.loss.ccc_normalization == 'public_code'
  info = dataclasses.replace(run.info, class_counts=np.asarray(AFFECTNET_COUNTS, np.int64))
  rng = np.random.default_rng(1)
  batches = [{'image': rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
              'landmarks': np.zeros((batch_size, 0, 2), np.float32),
              'expression': rng.permutation(7)[:batch_size].astype(np.int32),
              'valence': rng.uniform(-1, 1, batch_size).astype(np.float32),
              'arousal': rng.uniform(-1, 1, batch_size).astype(np.float32),
              'va_mask': np.ones((batch_size,), np.float32),
              'valid': np.ones((batch_size,), np.float32)} for _ in range(STEPS)]
  ours = _faujax_steps(run, info, batches, size)
  key_map, known = import_checkpoint.emotion_gcn_key_map()
  known = {**known, 'A': 'the adjacency: a constant in faujax'}
  cfg = run.config

  def reference(dtype):
    ref = copy.deepcopy(net).to(dtype)
    weights = torch.tensor([min(AFFECTNET_COUNTS) / c for c in AFFECTNET_COUNTS], dtype=dtype)
    criterion_cat = torch.nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.SGD(list(ref.parameters()), lr=cfg.optim.learning_rate,
                                momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    out_losses, states = [], []
    for batch in batches:
      x = _torch_inputs(batch, cfg.augment.mean, cfg.augment.std, dtype)
      cont = torch.from_numpy(np.stack([batch['valence'], batch['arousal']], -1).astype(
          np.float64)).to(dtype)
      loader = [(x, torch.from_numpy(batch['expression']).long(), cont,
                 emb.to(dtype)[None].expand(batch_size, 9, 300))]
      loss, *_ = training.train_model_multi(loader, ref, criterion_cat, ccc.CCC_loss(),
                                            optimizer, gcn=True)
      out_losses.append(float(loss))
      states.append(_mapped(ref, run.variables, key_map, known))
    return out_losses, states

  with _computing_in(torch.float64):  # utils.gen_adj's .float() (emotion-gcn utils.py)
    ref64 = reference(torch.float64)
  return _table('emotion_gcn affectnet:public_code', ours, ref64, reference(torch.float32))


@pytest.mark.slow  # ~4-6 min on 2 CPU cores
def test_macg_public_code_recipe_trains_as_the_public_script(tmp_path):
  rows = macg_rows(tmp_path)
  _print(rows)
  _check(rows)


@pytest.mark.slow  # several minutes on 2 CPU cores
def test_emotion_gcn_public_code_recipe_trains_as_the_public_script(tmp_path):
  rows = emotion_gcn_rows(tmp_path)
  _print(rows)
  _check(rows)


if __name__ == '__main__':
  import pathlib
  import tempfile
  with tempfile.TemporaryDirectory() as d:
    table = []
    for name, rows in (('macg', macg_rows), ('egcn', emotion_gcn_rows)):
      pathlib.Path(d, name).mkdir()
      table += rows(pathlib.Path(d, name))
  _print(table)

"""Tests of the MACG model (faujax.models.macg): parameter count, ablation switches, composition."""

from __future__ import annotations

import importlib.util
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from faujax import config_base
from faujax import config_schema
from faujax import graph
from faujax import losses
from faujax import model_state
from faujax import models
from faujax import parallel
from faujax.models import macg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MACG public model sizes (parameter counts of the public code, issue 7), shared CCFG block
# (docs/reference/model_details.md, "CCFG"), ResNet-50 at 224 px.
REFERENCE_PARAMS = {8: 28.93e6, 12: 29.99e6}
LINEAR_BLOCK_512 = 512 * 512 + 512 + 2 * 512


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _abstract_params(n: int, **kwargs) -> dict:
  """Parameter shapes of MACG(n AUs, **kwargs) from ``nnx.eval_shape`` (no compute)."""
  model = nnx.eval_shape(lambda: macg.MACG(_info(n), **kwargs, rngs=nnx.Rngs(0)))
  return model_state.variables(model)['params']


def _param_count(n: int, **kwargs) -> int:
  return _count(_abstract_params(n, **kwargs))


def _load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  path = os.path.join(ROOT, 'configs', 'macg', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'test_cfg_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _info(n: int) -> types.SimpleNamespace:
  return types.SimpleNamespace(task='au', num_labels=n, label_names=[f'AU{i}' for i in range(n)])


SMALL = {'name': 'small_cnn', 'widths': (8, 8, 8, 16)}


def tiny(n: int = 5, **kwargs) -> macg.MACG:
  defaults = dict(backbone=SMALL, node_dim=8, rel_features=4, top_k=2, mafg_kernel_sizes=(3, 5),
                  mafg_square_kernel=3)
  defaults.update(kwargs)
  return macg.MACG(_info(n), **defaults, rngs=nnx.Rngs(0))


def _images(b: int = 4, size: int = 48, seed: int = 0) -> dict[str, jax.Array]:
  return {'image': jax.random.normal(jax.random.key(seed), (b, size, size, 3))}


# ------------------------------------------------------------------------------- parameter count


@pytest.mark.parametrize('num_aus', [8, 12])
def test_param_count_matches_reference_with_shared_ccfg_block(num_aus):
  shared = _param_count(num_aus, shared_ccfg_block=True)
  paper = _param_count(num_aus, shared_ccfg_block=False)
  print(f'MACG {num_aus} AUs: shared CCFG block {shared:,} (reference '
        f'{REFERENCE_PARAMS[num_aus]:,.0f}), paper per-AU phi_i {paper:,}')
  assert abs(shared - REFERENCE_PARAMS[num_aus]) / REFERENCE_PARAMS[num_aus] < 0.01
  # Per-AU phi_i adds N - 1 LinearBlocks 512 -> 512.
  assert paper - shared == (num_aus - 1) * LINEAR_BLOCK_512


def test_param_count_of_the_parts_is_the_sum_of_their_layers():
  """Layer-by-layer count of the 8-AU model without its trunk, from the shapes in the paper."""
  n, c = 8, 512
  params = dict(_abstract_params(n))
  assert _count(params.pop('backbone')) == 23_508_032     # torchvision ResNet-50 without fc
  heads = _count(params)
  dw = sum(c * k + c for k in (7, 11, 21)) * 2 + (25 * c + c)
  expected = (2048 * c + c + 2 * c          # global LinearBlock
              + dw + c * c + c              # MAFG attention (eq. 1-3)
              + n * (c * c + c + 2 * c)     # per-AU LinearBlocks (eq. 4)
              + 2 * (c * c + c) + 2 * n     # GNN U, V and the node BatchNorm (eq. 9)
              + 2 * (c * 64 + 64) + (c * c + c) + (64 * c + c) + 1   # CCFG convs + lambda
              + n * (c * c + c + 2 * c)     # phi_i (eq. 12)
              + 2 * c * c + c + 2 * c       # fusion LinearBlock (eq. 13)
              + n * c)                      # s_i (eq. 14)
  assert heads == expected


# ------------------------------------------------------------------------------- ablations


@pytest.mark.parametrize('row', list(macg.ABLATIONS))
def test_ablation_rows_switch_the_modules(row):
  """``config.ablation=<row>`` sets the three switches; the model then has exactly those parts."""
  config = _load_config('synthetic', 'disfa')
  config.ablation = row
  resolved = config_base.resolve_config(config)
  switches = macg.ABLATIONS[row]
  assert all(resolved.model[k.split('.')[1]] == v for k, v in switches.items())
  use_mafg, use_gnn, use_ccfg = (switches[f'model.use_{m}'] for m in ('mafg', 'gnn', 'ccfg'))
  model = nnx.eval_shape(lambda: models.build(resolved.model, _info(8), rngs=nnx.Rngs(0)))
  p = model_state.variables(model)['params']
  assert ('attention' in p['mafg']) == use_mafg
  assert ('gnn_0' in p) == use_gnn
  assert ('ccfg' in p) == use_ccfg
  assert ('fusion' in p) == use_ccfg
  assert {'backbone', 'global_block', 'mafg', 'head'} <= set(p)


def test_bad_settings_name_their_config_key():
  with pytest.raises(ValueError, match='config.model.top_k'):
    tiny(top_k=6)
  with pytest.raises(ValueError, match='config.model.similarity'):
    tiny(similarity='l2')
  with pytest.raises(ValueError, match='AU model'):
    macg.MACG(types.SimpleNamespace(task='expression', num_labels=7), backbone=SMALL,
              rngs=nnx.Rngs(0))
  config = _load_config('synthetic')
  config.ablation = 'resnet'
  with pytest.raises(config_schema.ConfigError, match="config.ablation='resnet'.*resnet50"):
    config_base.resolve_config(config)
  config.ablation = ''
  config.model.top_kk = 3
  with pytest.raises(config_schema.ConfigError, match='config.model.top_kk.*Did you mean top_k'):
    models.build(config.model, _info(12), rngs=nnx.Rngs(0))
  # Without the GNN, K is unused and not checked.
  assert tiny(top_k=9, use_gnn=False).gnn_layers == 0


@pytest.mark.parametrize('name,arg,n_aus,k', [('synthetic', None, 12, 4),
                                              ('synthetic', 'disfa', 8, 3),
                                              ('synthetic_disfa', None, 8, 3),
                                              ('bp4d', None, 12, 4), ('disfa', None, 8, 3),
                                              ('emotionet', None, 12, 4)])
def test_configs_build_the_model(name, arg, n_aus, k):
  config = _load_config(name, arg)
  assert config.model.name == 'macg' and config.model.top_k == k
  assert config.loss.name == 'asymmetric' and config.loss.weighted
  assert config.optim.name == 'adamw' and config.optim.weight_decay == 5e-4
  assert config.schedule.name == 'cosine'
  model = nnx.eval_shape(lambda: models.build(config.model, _info(n_aus), rngs=nnx.Rngs(0)))
  assert model.gnn_0.k == k and model.num_labels == n_aus
  if name in ('bp4d', 'disfa', 'emotionet'):
    assert config.data.name == name and config.model.backbone.name == 'resnet50'
    assert config.augment.image_size == 224 and config.train.batch_size == 16
    assert config.optim.learning_rate == 1e-4 and config.train.num_epochs == 40
    assert config.augment.mean == (0.485, 0.456, 0.406)
    assert config.schedule.warmup_epochs == 0
  else:
    assert config.data.name == 'synthetic_faces'
    assert config.model.backbone.name in ('small_cnn', 'resnet18')


# ------------------------------------------------------------------------------- forward / grad
# One tiny model, initialised once: XLA compiles dominate the runtime on a small CPU, so the module
# compiles with most optimisations off and initialises with the cheap-to-compile 'rbg' PRNG.


@pytest.fixture(scope='module', autouse=True)
def _fast_compiles():
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


LABELS = jnp.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1]],
                   jnp.float32)


@pytest.fixture(scope='module')
def setup():
  model = tiny()
  return model, _images(), model_state.variables(model)


@pytest.fixture(scope='module')
def train_step(setup):
  """Loss, outputs, new batch_stats and parameter gradients of one train-mode step."""
  model, batch, variables = setup
  fn = model_state.ModelFn.from_model(model)

  @jax.jit
  def loss_and_grad(params):
    def loss_fn(p):
      out, new_stats = fn({**variables, 'params': p}, batch, train=True)
      return losses.weighted_asymmetric_loss(out['au_probs'], LABELS), (out, new_stats)
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  (loss, (out, new_stats)), grads = loss_and_grad(variables['params'])
  return loss, out, {'batch_stats': new_stats}, grads


def test_forward_and_gradient_end_to_end(setup, train_step):
  _, _, variables = setup
  loss, out, new_vars, grads = train_step
  probs = out['au_probs']
  assert probs.shape == (4, 5) and probs.dtype == jnp.float32
  assert np.all(probs >= 0) and np.all(probs <= 1 + 1e-6)
  assert np.isfinite(loss)
  flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): g
          for path, g in jax.tree_util.tree_leaves_with_path(grads)}
  assert all(np.all(np.isfinite(g)) for g in flat.values())
  # (Biases right before a train-mode BatchNorm have a zero gradient in exact arithmetic.)
  dead = [k for k, g in flat.items() if not k.endswith('bias') and not np.any(g)]
  assert not dead, f'parameters without gradient: {dead}'
  # Running statistics move in train mode.
  changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), variables['batch_stats'],
                                   new_vars['batch_stats'])
  assert all(jax.tree_util.tree_leaves(changed))


def _perturbed(variables, seed=0):
  """The variables with every parameter and BatchNorm statistic moved at random (a fresh model's
  BatchNorm is the identity in eval mode, which would hide a wrong or missing one)."""
  rng = np.random.default_rng(seed)
  move = lambda x: np.asarray(x) * (1 + 0.3 * rng.uniform(-1, 1, np.shape(x))) + 0.05 * (
      rng.uniform(-1, 1, np.shape(x)))
  out = dict(variables)
  out['params'] = jax.tree.map(move, variables['params'])
  out['batch_stats'] = jax.tree.map(lambda x: np.abs(move(x)) + 0.1, variables['batch_stats'])
  return out


def test_graph_fusion_and_head_follow_equations_5_to_14(setup):
  """Eq. 5-9 against the pure top-K graph function, and eq. 13-14 written out in numpy from the
  parameters (fully connected layer on concat(v_GNN, v_CCFG), BatchNorm with its running
  statistics, ReLU; ReLU, normalisation and the cosine with s_i), on the model's own branch
  outputs; the model's output must equal that."""
  _, batch, variables = setup
  variables = _perturbed(variables)
  model = model_state.load_variables(tiny(), variables)
  fmap = model.backbone(batch['image'], train=False)
  b, h, w, c = fmap.shape
  x = model.global_block(fmap.reshape(b, h * w, c), train=False).reshape(b, h, w, 8)
  nodes = model.mafg(x, train=False)
  v_gnn = np.asarray(model.gnn_0(nodes, train=False), np.float64)
  v_ccfg = np.asarray(model.ccfg(x, train=False), np.float64)
  assert nodes.shape == v_gnn.shape == v_ccfg.shape == (4, 5, 8)
  p, s = variables['params'], variables['batch_stats']
  # eq. 5-9: one top-K layer on the MAFG nodes (K = 2), against the pure function.
  ref_gnn, _ = graph.dynamic_graph_apply(
      {**{k: p['gnn_0'][k] for k in ('U_kernel', 'U_bias', 'V_kernel', 'V_bias')},
       'bn_scale': p['gnn_0']['bn']['scale'], 'bn_bias': p['gnn_0']['bn']['bias']},
      nodes, k=2, batch_stats=s['gnn_0']['bn'], train=False)
  np.testing.assert_allclose(v_gnn, ref_gnn, rtol=1e-4, atol=1e-5)
  assert np.all(graph.topk_adjacency(nodes, 2).sum(-1) >= 2)
  # eq. 13: Post(FC(concat(v_GNN, v_CCFG))), Post = BatchNorm (eval) then ReLU.
  f64 = lambda t: np.asarray(t, np.float64)
  fc, bn, stats = p['fusion']['fc'], p['fusion']['bn'], s['fusion']['bn']
  z = np.concatenate([v_gnn, v_ccfg], -1) @ f64(fc['kernel']) + f64(fc['bias'])
  z = (z - f64(stats['mean'])) / np.sqrt(f64(stats['var']) + 1e-5) * f64(bn['scale']) + f64(
      bn['bias'])
  fused = np.maximum(z, 0.0)
  # eq. 14: cosine between ReLU(v_i) and ReLU(s_i).
  sc = np.maximum(f64(p['head']['sc']), 0.0)
  fused = np.maximum(fused, 0.0)
  want = np.einsum('bnc,nc->bn', fused / np.linalg.norm(fused, axis=-1, keepdims=True),
                   sc / np.linalg.norm(sc, axis=-1, keepdims=True))
  got = model(batch, train=False)['au_probs']
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert np.std(want) > 1e-3  # the comparison sees varied outputs


def test_batch_norm_statistics_sync_over_the_pmap_axis(setup, train_step):
  """``parallel.sync_batch_norm`` + 2 'devices': the outputs of the whole batch (pmap contract)."""
  _, batch, variables = setup
  whole = train_step[1]['au_probs']
  synced = tiny()
  # 4 in the trunk, global block, MAFG per-AU blocks, GNN, CCFG per-AU blocks, fusion.
  assert parallel.sync_batch_norm(synced, 'batch') == 9
  fn = model_state.ModelFn.from_model(synced)
  split = jax.jit(jax.vmap(
      lambda b: fn(variables, b, train=True)[0]['au_probs'],
      axis_name='batch'))({'image': batch['image'].reshape(2, 2, 48, 48, 3)})
  np.testing.assert_allclose(split.reshape(4, 5), whole, rtol=1e-4, atol=1e-5)
  # Without the sync each half normalises by its own statistics: different outputs.
  plain = model_state.ModelFn.from_model(tiny())
  unsynced = jax.jit(jax.vmap(
      lambda b: plain(variables, b, train=True)[0]['au_probs'],
      axis_name='batch'))({'image': batch['image'].reshape(2, 2, 48, 48, 3)})
  assert np.max(np.abs(unsynced.reshape(4, 5) - whole)) > 1e-3


def test_bfloat16_compute_keeps_float32_params_and_outputs(setup):
  _, batch, variables = setup
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables['params']))
  model = model_state.load_variables(tiny(dtype=jnp.bfloat16), variables)
  out = model(batch, train=False)
  assert out['au_probs'].dtype == jnp.float32
  assert np.all(np.isfinite(out['au_probs']))
  ref = model_state.load_variables(tiny(), variables)(batch, train=False)['au_probs']
  np.testing.assert_allclose(out['au_probs'], ref, atol=0.05)


@pytest.mark.parametrize('kwargs,match', [
    ({'mafg_kernel_sizes': (3, 4)}, r'config\.model\.mafg_kernel_sizes=\(3, 4\)'),
    ({'mafg_square_kernel': 0}, r'config\.model\.mafg_square_kernel=0'),
    ({'node_dim': 0}, r'config\.model\.node_dim=0'),
    ({'gnn_layers': 0}, r'config\.model\.gnn_layers=0'),
])
def test_numeric_options_are_range_checked_naming_the_key(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tiny(**kwargs)

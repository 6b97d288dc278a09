"""Tests of the MACG model (faujax.models.macg): parameter count, ablation switches, composition."""

from __future__ import annotations

import functools
import importlib.util
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from faujax import graph
from faujax import losses
from faujax.models import macg
from faujax.models import parts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MACG public model sizes (reference-facts / issue 7), shared CCFG block, ResNet-50 at 224 px.
REFERENCE_PARAMS = {8: 28.93e6, 12: 29.99e6}
LINEAR_BLOCK_512 = 512 * 512 + 512 + 2 * 512


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _param_count(model: macg.MACG, size: int = 224) -> int:
  """Parameters of ``model`` from ``jax.eval_shape`` of its init (no compute)."""
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), {'image': jnp.zeros((1, size, size, 3))}, train=False))
  return _count(shapes['params'])


def _load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  path = os.path.join(ROOT, 'configs', 'macg', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'test_cfg_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _info(n: int) -> types.SimpleNamespace:
  return types.SimpleNamespace(task='au', num_labels=n, label_names=[f'AU{i}' for i in range(n)])


def tiny(n: int = 5, **kwargs) -> macg.MACG:
  defaults = dict(num_labels=n, backbone='small_cnn', backbone_kwargs={'widths': (8, 8, 8, 16)},
                  node_dim=8, rel_features=4, top_k=2, mafg_kernel_sizes=(3, 5),
                  mafg_square_kernel=3)
  defaults.update(kwargs)
  return macg.MACG(**defaults)


def _images(b: int = 4, size: int = 48, seed: int = 0) -> dict[str, jax.Array]:
  return {'image': jax.random.normal(jax.random.key(seed), (b, size, size, 3))}


# ------------------------------------------------------------------------------- parameter count


@pytest.mark.parametrize('num_aus', [8, 12])
def test_param_count_matches_reference_with_shared_ccfg_block(num_aus):
  shared = _param_count(macg.MACG(num_labels=num_aus, shared_ccfg_block=True))
  paper = _param_count(macg.MACG(num_labels=num_aus, shared_ccfg_block=False))
  print(f'MACG {num_aus} AUs: shared CCFG block {shared:,} (reference '
        f'{REFERENCE_PARAMS[num_aus]:,.0f}), paper per-AU phi_i {paper:,}')
  assert abs(shared - REFERENCE_PARAMS[num_aus]) / REFERENCE_PARAMS[num_aus] < 0.01
  # Per-AU phi_i adds N - 1 LinearBlocks 512 -> 512.
  assert paper - shared == (num_aus - 1) * LINEAR_BLOCK_512


def test_param_count_of_the_parts_is_the_sum_of_their_layers():
  """Layer-by-layer count of the 8-AU model without its trunk, from the shapes in the paper."""
  n, c = 8, 512
  model = macg.MACG(num_labels=n)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             {'image': jnp.zeros((1, 224, 224, 3))}, train=False))
  params = dict(shapes['params'])
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
  use_mafg, use_gnn, use_ccfg = macg.ABLATIONS[row]
  cfg = ml_collections.ConfigDict({'ablation': row, 'backbone': {'name': 'small_cnn'},
                                   'node_dim': 8, 'rel_features': 4, 'top_k': 2})
  model = macg.from_config(cfg, _info(5), jnp.float32, None)
  assert (model.use_mafg, model.use_gnn, model.use_ccfg) == (use_mafg, use_gnn, use_ccfg)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), _images(2, 32), train=False))
  p = shapes['params']
  assert ('attention' in p['mafg']) == use_mafg
  assert ('gnn_0' in p) == use_gnn
  assert ('ccfg' in p) == use_ccfg
  assert ('fusion' in p) == use_ccfg
  assert {'backbone', 'global_block', 'mafg', 'head'} <= set(p)


def test_from_config_rejects_bad_settings():
  base = {'backbone': {'name': 'small_cnn'}}
  with pytest.raises(ValueError, match='config.model.top_k'):
    macg.from_config(ml_collections.ConfigDict({**base, 'top_k': 6}), _info(5), jnp.float32, None)
  with pytest.raises(ValueError, match='config.model.similarity'):
    macg.from_config(ml_collections.ConfigDict({**base, 'similarity': 'l2'}), _info(5),
                     jnp.float32, None)
  with pytest.raises(ValueError, match='config.model.ablation'):
    macg.from_config(ml_collections.ConfigDict({**base, 'ablation': 'resnet'}), _info(5),
                     jnp.float32, None)
  with pytest.raises(ValueError, match='AU model'):
    macg.from_config(ml_collections.ConfigDict(base),
                     types.SimpleNamespace(task='expression', num_labels=7), jnp.float32, None)
  # Without the GNN, K is unused and not checked.
  cfg = ml_collections.ConfigDict({**base, 'top_k': 9, 'use_gnn': False})
  assert not macg.from_config(cfg, _info(5), jnp.float32, None).use_gnn


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
  model = macg.from_config(config.model, _info(n_aus), jnp.float32, None)
  assert model.top_k == k and model.num_labels == n_aus
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
  batch = _images()
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(1, impl='rbg'),
                                                                  batch)
  return model, batch, variables


@pytest.fixture(scope='module')
def train_step(setup):
  """Loss, outputs, new batch_stats and parameter gradients of one train-mode step."""
  model, batch, variables = setup

  @jax.jit
  def loss_and_grad(params):
    def loss_fn(p):
      out, new = model.apply({'params': p, 'batch_stats': variables['batch_stats']}, batch,
                             train=True, mutable=['batch_stats'])
      return losses.weighted_asymmetric_loss(out['au_probs'], LABELS), (out, new)
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  (loss, (out, new_vars)), grads = loss_and_grad(variables['params'])
  return loss, out, new_vars, grads


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


def test_composition_follows_equations_5_to_14(setup):
  """Intermediates: graph on the MAFG nodes, fusion of concat(v_gnn, v_ccfg), cosine head."""
  model, batch, variables = setup
  out, state = jax.jit(functools.partial(model.apply, train=False,
                                         capture_intermediates=True))(variables, batch)
  inter = state['intermediates']
  nodes = inter['mafg']['__call__'][0]
  v_gnn = inter['gnn_0']['__call__'][0]
  v_ccfg = inter['ccfg']['__call__'][0]
  fused = inter['fusion']['__call__'][0]
  assert nodes.shape == v_gnn.shape == v_ccfg.shape == fused.shape == (4, 5, 8)
  p, s = variables['params'], variables['batch_stats']
  # eq. 5-9: one top-K layer on the MAFG nodes (K = 2).
  ref_gnn, _ = graph.dynamic_graph_apply(
      {**{k: p['gnn_0'][k] for k in ('U_kernel', 'U_bias', 'V_kernel', 'V_bias')},
       'bn_scale': p['gnn_0']['bn']['scale'], 'bn_bias': p['gnn_0']['bn']['bias']},
      nodes, k=2, batch_stats=s['gnn_0']['bn'], train=False)
  np.testing.assert_allclose(v_gnn, ref_gnn, rtol=1e-4, atol=1e-5)
  assert np.all(graph.topk_adjacency(nodes, 2).sum(-1) >= 2)
  # eq. 13: LinearBlock on the concatenation; eq. 14: cosine head on the fused features.
  ref_fused = parts.LinearBlock(8).apply({'params': p['fusion'], 'batch_stats': s['fusion']},
                                         jnp.concatenate([v_gnn, v_ccfg], -1), train=False)
  np.testing.assert_allclose(fused, ref_fused, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['au_probs'], parts.cosine_probabilities(fused, p['head']['sc']),
                             rtol=1e-5, atol=1e-6)


def test_batch_norm_statistics_sync_over_bn_axis_name(setup, train_step):
  """Split into 2 'devices' with bn_axis_name: same outputs as the whole batch (pmap contract)."""
  _, batch, variables = setup
  whole = train_step[1]['au_probs']
  synced = tiny(bn_axis_name='batch')
  split = jax.jit(jax.vmap(
      lambda b: synced.apply(variables, b, train=True, mutable=['batch_stats'])[0]['au_probs'],
      axis_name='batch'))({'image': batch['image'].reshape(2, 2, 48, 48, 3)})
  np.testing.assert_allclose(split.reshape(4, 5), whole, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_outputs(setup):
  _, batch, variables = setup
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables['params']))
  model = tiny(dtype=jnp.bfloat16)
  out = jax.jit(functools.partial(model.apply, train=False))(variables, batch)
  assert out['au_probs'].dtype == jnp.float32
  assert np.all(np.isfinite(out['au_probs']))
  ref = jax.jit(functools.partial(tiny().apply, train=False))(variables, batch)['au_probs']
  np.testing.assert_allclose(out['au_probs'], ref, atol=0.05)


def test_synthetic_config_trains_end_to_end(tmp_path, tiny_data_dir):
  """configs/macg/synthetic.py through faujax.train: cosine-head probabilities, asymmetric loss."""
  import importlib.util
  import os
  from faujax import train
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'macg', 'synthetic.py')
  spec = importlib.util.spec_from_file_location('macg_synthetic', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.data_dir = tiny_data_dir
  config.data.image_size = 48
  config.data.num_subjects = 9
  config.data.frames_per_subject = 6
  config.augment.image_size = 48
  config.train.num_steps = 2
  config.train.batch_size = 8
  config.eval.batch_size = 16
  config.train.eval_every = 2
  config.checkpoint.every = 2
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results['model'] == 'macg'
  assert 0.0 <= results['metrics']['auc_mean'] <= 1.0
  assert np.isfinite(results['validation_history'][-1]['f1_mean'])

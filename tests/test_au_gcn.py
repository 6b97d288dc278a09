"""Tests of AU-GCN (faujax.models.au_gcn and its parts) against the paper's equations, and of the
training stages (faujax.stages) that its two-stage recipe uses."""

from __future__ import annotations

import importlib.util
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faujax import initialization
from faujax import config_base
from faujax import config_schema
from faujax import labels
from faujax import model_state
from faujax import models
from faujax import stages
from faujax import tasks
from faujax import train
from faujax.data import input_pipeline
from faujax.data import builders
from faujax.models import au_gcn
from faujax.models.parts import roi_autoencoders as ae_lib
from faujax.models.parts import roi_nodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BP4D = labels.au_set('bp4d')
DISFA = labels.au_set('disfa')
TINY = {'roi_size': 5, 'latent_dim': 6, 'gcn_dims': (4, 3), 'ae_widths': (4,), 'dropout': 0.0}


def _info(aus, n=300, seed=0, rate=0.3):
  rng = np.random.default_rng(seed)
  y = (rng.random((n, len(aus))) < rate).astype(np.float32)
  y[:, 1] = np.maximum(y[:, 1], y[:, 0])        # a strong pair: AU(col 1) whenever AU(col 0)
  mask = (rng.random(y.shape) < 0.9).astype(np.float32)
  return types.SimpleNamespace(task='au', name='fake', num_labels=len(aus), aus=tuple(aus),
                               label_names=[f'AU{a}' for a in aus],
                               train_labels={'au': y, 'au_mask': mask})


def _augcn(info, **options):
  """AU-GCN with ``options`` and its constants prepared from ``info`` (``faujax.models``)."""
  return au_gcn.AUGCN(info, constants=models.prepare({'name': 'au_gcn', **options}, info),
                      **options, rngs=nnx.Rngs(0))


def _face(scale=1.0, shift=(0.0, 0.0)):
  """A frontal-ish 68-point face of random but well-spread points (eye corners 39 / 42 apart)."""
  rng = np.random.default_rng(3)
  pts = rng.uniform(12, 36, (68, 2)).astype(np.float32)
  pts[39], pts[42] = (20.0, 20.0), (28.0, 20.0)
  return pts * scale + np.asarray(shift, np.float32)


# ------------------------------------------------------------------------------- ROIs (sec. 3.2)


def test_roi_layout_counts_pairs_and_label_mask():
  bp4d = roi_nodes.roi_layout(BP4D)
  assert bp4d.num_nodes == 19 and bp4d.num_local == 18 and bp4d.specs[-1] == (None, None)
  assert ((12, 14, 15), 'right') in bp4d.specs and ((23, 24), 'left') in bp4d.specs
  assert (17, 'up') in bp4d.specs  # EAC-Net's AU17 points 51 / 57 are a midline (up/down) pair
  disfa = roi_nodes.roi_layout(DISFA)
  assert disfa.num_nodes == 14 and ((25, 26), 'right') in disfa.specs
  # eq. 2 partition rule: Y^ROI_ij = 0 when AU j is not in ROI i; the face node holds every AU.
  m = bp4d.membership
  for r, (members, _) in enumerate(bp4d.specs):
    expect = set(BP4D) if members is None else set(members if isinstance(members, tuple)
                                                    else (members,))
    assert {a for a, v in zip(BP4D, m[r]) if v} == expect
  assert not roi_nodes.roi_layout(BP4D, with_face=False).membership.all(axis=1).any()


def test_disfa_has_the_papers_14_rois_with_au9_as_one_roi():
  """AU-GCN sec. 3.2 / eq. 2: 12 ROIs shared with BP4D (AU1, AU2, AU4, AU6, AU12, AU25/26 as
  pairs), one for AU9, and the face: R = 14; AU9's ROI sits between its two nostril centres."""
  disfa = roi_nodes.roi_layout(DISFA)
  assert disfa.num_nodes == 14 and disfa.num_local == 13
  assert [spec for spec in disfa.specs if spec[0] == 9] == [(9, None)]
  shared = [spec for spec in disfa.specs if spec[0] not in (9, None)]
  assert len(shared) == 12 and {spec[0] for spec in shared} == {1, 2, 4, 6, 12, (25, 26)}
  pts = _face()
  r = abs(pts[39, 0] - pts[42, 0])
  centres = np.asarray(roi_nodes.local_centres(jnp.asarray(pts)[None], disfa))[0]
  np.testing.assert_allclose(centres[disfa.specs.index((9, None))],
                             (pts[32] + pts[34]) / 2 + (0, -r / 2), atol=1e-5)
  np.testing.assert_array_equal(disfa.membership[disfa.specs.index((9, None))],
                                [a == 9 for a in DISFA])
  assert roi_nodes.roi_layout(DISFA, single_aus=()).num_nodes == 15   # every region a pair
  model = _augcn(_info(DISFA), **TINY)
  assert model.layout.num_nodes == 14 and model.adjacency.shape == (14, 14)
  with pytest.raises(ValueError, match='single_roi_aus'):
    _augcn(_info(DISFA), single_roi_aus='9', **TINY)


def test_an_au_without_a_roi_rule_is_an_error_naming_it():
  with pytest.raises(ValueError, match=r'roi_rules.*no ROI rule for AU27'):
    roi_nodes.roi_layout((1, 2, 27))
  with pytest.raises(ValueError, match='AU27'):
    _augcn(_info((1, 2, 27)), **TINY)


def test_roi_centres_follow_the_eacnet_rule_on_hand_placed_landmarks():
  pts = _face()
  r = abs(pts[39, 0] - pts[42, 0])
  layout = roi_nodes.roi_layout(BP4D)
  centres = np.asarray(roi_nodes.local_centres(jnp.asarray(pts)[None], layout))[0]
  by_spec = dict(zip(layout.specs, centres))
  expect = {
      (1, 'right'): pts[21] + (0, -r / 2), (1, 'left'): pts[22] + (0, -r / 2),
      (2, 'right'): pts[18] + (0, -r / 3), (2, 'left'): pts[25] + (0, -r / 3),
      (4, 'right'): pts[19] + (0, r / 3), (4, 'left'): pts[24] + (0, r / 3),
      (6, 'right'): pts[41] + (0, r), (6, 'left'): pts[46] + (0, r),
      (7, 'right'): pts[38], (7, 'left'): pts[43], (10, 'right'): pts[49], (10, 'left'): pts[53],
      ((12, 14, 15), 'right'): pts[48], ((12, 14, 15), 'left'): pts[54],
      (17, 'up'): pts[51], (17, 'down'): pts[57],
      ((23, 24), 'right'): pts[61], ((23, 24), 'left'): pts[63]}
  assert set(expect) == set(by_spec)
  for spec, value in expect.items():
    np.testing.assert_allclose(by_spec[spec], value, atol=1e-5, err_msg=str(spec))


def test_a_crop_moves_with_its_landmark_and_out_of_image_rois_are_clamped():
  layout = roi_nodes.roi_layout((12,), with_face=False)   # one region: lip corners 48, 54
  n, s = 5, 40
  img = np.zeros((s, s, 3), np.float32)
  pts = np.full((68, 2), 20.0, np.float32)
  pts[39], pts[42] = (16.0, 15.0), (24.0, 15.0)
  for x, y in ((12, 25), (17, 9)):
    moved = pts.copy()
    moved[48] = (x, y)
    img_k = img.copy()
    img_k[y, x] = 1.0                                      # a dot at the landmark
    patches, clamped = roi_nodes.crop_rois(jnp.asarray(img_k)[None], jnp.asarray(moved)[None],
                                           layout, n)
    centre = np.asarray(patches)[0, 0, :, :, 0]
    assert centre[n // 2, n // 2] == pytest.approx(1.0) and centre.sum() == pytest.approx(1.0)
    assert not np.asarray(clamped).any()
  far = pts.copy()
  far[48], far[54] = (-30.0, 5.0), (np.nan, 1.0)           # outside the image, and not finite
  patches, clamped = roi_nodes.crop_rois(jnp.asarray(img)[None], jnp.asarray(far)[None], layout, n)
  assert np.asarray(clamped).tolist() == [[True, True]]
  assert np.isfinite(np.asarray(patches)).all()
  c, moved = roi_nodes.clamp_centres(jnp.asarray([[-30.0, 5.0], [20.0, 20.0]]), s, n)
  np.testing.assert_allclose(np.asarray(c), [[2.0, 5.0], [20.0, 20.0]])
  assert np.asarray(moved).tolist() == [True, False]


# ---------------------------------------------------------------- graph (sec. 3.4, eq. 4-5)


def _reference_graph(y, mask, aus, specs, h):
  """Loop-based sec. 3.4: conditional probabilities by counting, eq. 4-5, the four edge rules."""
  c = len(aus)
  p = np.zeros((c, c))
  for i in range(c):
    for j in range(c):
      both = (mask[:, i] > 0) & (mask[:, j] > 0)
      n_i = sum(1 for k in range(len(y)) if both[k] and y[k, i] == 1)
      n_ij = sum(1 for k in range(len(y)) if both[k] and y[k, i] == 1 and y[k, j] == 1)
      p[i, j] = n_ij / n_i if n_i else 0.0                 # M_ij = P(AU j | AU i)
  m_bool = (p + p.T) >= h                                  # eq. 4, eq. 5
  r = len(specs)
  g = np.zeros((r, r), np.int64)
  as_set = lambda m: None if m is None else (set(m) if isinstance(m, tuple) else {m})
  for a in range(r):
    for b in range(r):
      ma, mb = as_set(specs[a][0]), as_set(specs[b][0])
      if a == b or ma is None or mb is None:
        g[a, b] = 1                                        # self-loops; face node to all
      elif ma == mb:
        g[a, b] = 1                                        # the symmetric partner
      elif any(m_bool[aus.index(i), aus.index(j)] for i in ma for j in mb):
        g[a, b] = 1                                        # AU-AU relation
  return g


@pytest.mark.parametrize('aus,h', [(BP4D, 1.0), (DISFA, 0.6)])
def test_roi_graph_matches_a_loop_based_reference_on_random_labels(aus, h):
  info = _info(aus, n=120, seed=len(aus))
  layout = roi_nodes.roi_layout(aus)
  got = au_gcn.relation_graph(info, layout, h)
  want = _reference_graph(info.train_labels['au'], info.train_labels['au_mask'], list(aus),
                          layout.specs, h)
  np.testing.assert_array_equal(got, want)
  assert (got == got.T).all() and 0 < got.sum() < got.size  # neither empty nor complete


# --------------------------------------------------------------- auto-encoders (sec. 3.3)


def test_vmapped_roi_autoencoders_equal_a_loop_over_rois():
  params = ae_lib.roi_autoencoders_init(jax.random.key(0), 3, size=7, widths=(4, 5),
                                        latent_dim=6, num_classes=2)
  x = jax.random.normal(jax.random.key(1), (2, 3, 7, 7, 3))
  z, rec, logits = jax.jit(ae_lib.roi_autoencoders_apply)(params, x)
  assert z.shape == (2, 3, 6) and rec.shape == x.shape and logits.shape == (2, 3, 2)
  loop = jax.jit(lambda p, x: [ae_lib._apply_one(jax.tree.map(lambda q: q[r], p), x[:, r], 2)
                                for r in range(3)])      # one network per ROI, a Python loop
  for r, (z_r, rec_r, log_r) in enumerate(loop(params, x)):
    np.testing.assert_allclose(z[:, r], z_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rec[:, r], rec_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits[:, r], log_r, rtol=1e-5, atol=1e-6)
  # The convolution is lax's 'SAME' convolution.
  k, bias = params['enc1_kernel'][2], params['enc1_bias'][2]
  h = jax.random.normal(jax.random.key(2), (2, 4, 4, 4))
  ref = jax.lax.conv_general_dilated(h, k, (2, 2), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias
  np.testing.assert_allclose(ae_lib._conv(h, k, bias, 2), ref, rtol=1e-5, atol=1e-5)
  # ROI r's output depends on ROI r's patch only.
  g = jax.jit(jax.grad(lambda x: jnp.sum(ae_lib.roi_autoencoders_apply(params, x)[0][:, 1])))(x)
  assert float(jnp.abs(g[:, 0]).sum()) == 0 and float(jnp.abs(g[:, 1]).sum()) > 0


# -------------------------------------------------------------- the model (eq. 6, sec. 3.6)


def _batch(b=2, s=32, seed=0):
  rng = np.random.default_rng(seed)
  pts = np.stack([_face(scale=0.7, shift=(2, 2)) for _ in range(b)])
  return {'image': jnp.asarray(rng.normal(size=(b, s, s, 3)), jnp.float32),
          'landmarks': jnp.asarray(pts + rng.normal(0, 0.5, pts.shape), jnp.float32)}


def _forward(model, batch):
  """``model(batch, train=False)`` compiled once for this model."""
  graphdef, state = nnx.split(model)
  return jax.jit(lambda st, b: nnx.merge(graphdef, st)(b, train=False))(state, batch)


def test_forward_is_two_graph_convolutions_then_fc_on_the_raw_graph():
  info = _info(BP4D)
  model = _augcn(info, **TINY)
  batch = _batch()
  out = _forward(model, batch)
  patches = out['reconstruction_target']
  ref_patches, _ = jax.jit(lambda im, lm: roi_nodes.crop_rois(im, lm, model.layout, 5))(
      batch['image'], batch['landmarks'])
  np.testing.assert_allclose(patches, ref_patches, atol=1e-6)
  z0 = jax.jit(ae_lib.roi_autoencoders_apply)(
      {k: getattr(model.autoencoders, k)[...] for k in model.autoencoders.param_names},
      patches)[0]
  g = model.adjacency.astype(np.float64)
  w0, w1 = (np.asarray(layer.kernel[...], np.float64) for layer in model.gcn)
  z1 = np.maximum(np.einsum('rs,bsd->brd', g, np.asarray(z0, np.float64)) @ w0, 0)   # eq. 6
  z2 = np.maximum(np.einsum('rs,bsd->brd', g, z1) @ w1, 0)
  head = model.head
  logits = z2.reshape(2, -1) @ np.asarray(head.kernel[...]) + np.asarray(head.bias[...])
  np.testing.assert_allclose(out['au_logits'], logits, rtol=1e-4, atol=1e-5)
  assert out['roi_logits'].shape == (2, 19, 12) and out['reconstruction'].shape == (2, 19, 5, 5, 3)
  _, moved = roi_nodes.clamp_centres(roi_nodes.local_centres(batch['landmarks'], model.layout),
                                     32, 5)
  np.testing.assert_allclose(out['stat/roi_clamped'], np.mean(np.asarray(moved), axis=1))


def test_ablation_rows_switch_gcn_face_and_dice():
  info = _info(BP4D)
  rows = au_gcn.ABLATIONS
  assert set(rows) >= {'au_net', 'au_net+d', 'au_gcn-f-d', 'au_gcn-f', 'au_gcn-d', 'full'}
  shapes = {}
  for row in ('au_net', 'au_gcn-f', 'full', 'identity_graph'):
    kw = {k.split('.', 1)[1]: v for k, v in rows[row].items() if k.startswith('model.')}
    model = _augcn(info, **{**TINY, **kw})
    out = _forward(model, _batch())
    shapes[row] = (out['roi_logits'].shape[1], model.gcn is None)
  assert shapes == {'au_net': (18, True), 'au_gcn-f': (18, False), 'full': (19, False),
                    'identity_graph': (19, False)}
  assert rows['au_net']['loss.name'] == 'bce' and rows['full']['loss.name'] == 'bce_dice'


# ------------------------------------------------------------------- losses (eq. 1-3, 7-8)


def _np_bce(p, y):
  return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_task_losses_match_numpy_equations_and_stage_terms():
  rng = np.random.default_rng(0)
  b, r, c, n = 4, 3, 2, 5
  rates = np.array([0.25, 0.5], np.float32)
  info = types.SimpleNamespace(task='au', label_names=['AU1', 'AU2'], num_labels=c,
                               train_occurrence_rates=rates)
  cfg = tasks.LossConfig(name='bce_dice', dice_weight=4.0, reconstruction_weight=3.0)
  task = tasks.build(info, cfg, model_terms=models.loss_terms('au_gcn'))
  logits, roi_logits = rng.normal(size=(b, c)), rng.normal(size=(b, r, c))
  member = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
  recon, target = rng.normal(size=(b, r, n, n, 3)), rng.normal(size=(b, r, n, n, 3))
  y = (rng.random((b, c)) < 0.5).astype(np.float32)
  outputs = {'au_logits': logits, 'roi_logits': roi_logits,
             'roi_label_mask': np.broadcast_to(member, (b, r, c)), 'reconstruction': recon,
             'reconstruction_target': target, 'stat/roi_clamped': np.array([0, .5, 0, 1.])}
  outputs = {k: jnp.asarray(v, jnp.float32) for k, v in outputs.items()}
  t = {'au': jnp.asarray(y), 'au_mask': jnp.ones((b, c)), 'landmarks': jnp.zeros((b, 68, 2)),
       'valid': jnp.ones((b,))}
  total, aux = task.loss(outputs, t)
  w = (1 / rates) * c / np.sum(1 / rates)                               # eq. 7 weights
  p = 1 / (1 + np.exp(-logits))
  eq7 = np.mean(np.sum(w * _np_bce(p, y), axis=1) / c)
  eq8 = np.mean(np.sum(w * (1 - (2 * y * p + 1) / (y ** 2 + p ** 2 + 1)), axis=1) / c)
  q = 1 / (1 + np.exp(-roi_logits))
  eq2 = np.mean(np.sum(_np_bce(q, y[:, None] * member), axis=-1) / c)  # mean over b and r
  eq1 = np.mean(np.abs(recon - target))
  np.testing.assert_allclose(aux['dice'], eq8, rtol=1e-5)
  np.testing.assert_allclose(aux['roi_loss'], eq2, rtol=1e-5)
  np.testing.assert_allclose(aux['reconstruction_loss'], eq1, rtol=1e-5)
  np.testing.assert_allclose(total, eq7 + 4 * eq8 + eq2 + 3 * eq1, rtol=1e-5)   # eq. 3 + eq. 9
  np.testing.assert_allclose(aux['roi_clamped'], 0.375)
  stage1, _ = task.loss(outputs, t, ('roi', 'reconstruction'))                    # L_ROI, eq. 3
  np.testing.assert_allclose(stage1, eq2 + 3 * eq1, rtol=1e-5)
  assert task.loss_terms == ('au', 'roi', 'reconstruction')


# ------------------------------------------------------------------------ training stages


def _stage_config(data_dir):
  path = os.path.join(ROOT, 'configs', 'au_gcn', 'synthetic.py')
  spec = importlib.util.spec_from_file_location('au_gcn_synthetic_cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.data_dir = data_dir
  config.data.image_size, config.data.num_subjects, config.data.frames_per_subject = 48, 9, 6
  config.augment.image_size = 32
  for key, value in TINY.items():
    config.model[key] = value
  config.train.batch_size = 8
  config.train.stages.autoencoders.steps = 3
  config.train.stages.joint.steps = 4
  config.train.eval_every = 1000
  config.train.log_every = 1000
  config.eval.batch_size = 16
  config.checkpoint.every = 1000
  return config


class _StopAfter:
  """Stands in for ``train._Preemption``: 'SIGTERM' arrives during training step ``n``."""

  def __init__(self):
    self.n, self.requested = None, False

  def __call__(self):
    self.requested = False
    return self

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return None


def _final(workdir):
  import orbax.checkpoint as ocp
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state',))
  return mgr.restore(mgr.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))['state']


@pytest.mark.slow
def test_stages_freeze_params_and_an_interrupted_run_resumes_exactly(tmp_path, tiny_data_dir,
                                                                    monkeypatch):
  config = _stage_config(tiny_data_dir)
  stop = _StopAfter()
  real_split = input_pipeline.create_split
  # The loop reads prefetch_batches - 1 batches ahead: batch i arrives as step i - ahead is
  # dispatched, so the stop after step n is requested on reading batch n + ahead.
  ahead = config.train.get('prefetch_batches', config_base.TrainConfig.prefetch_batches) - 1

  def create_split(*args, train=False, **kwargs):
    it = real_split(*args, train=train, **kwargs)
    if not train or stop.n is None:
      return it

    def counted():
      for i, batch in enumerate(it, start=kwargs.get('start_batch', 0) + 1):
        stop.requested = i >= stop.n + ahead
        yield batch
    return counted()

  monkeypatch.setattr(train, '_Preemption', stop)
  monkeypatch.setattr(input_pipeline, 'create_split', create_split)
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  parts = str(tmp_path / 'parts')
  stop.n = 3                                   # stopped at the end of stage 1 (step 3)
  assert train.train_and_evaluate(config, parts) == {'preempted_at_step': 3}
  after_stage1 = _final(parts)
  stop.n = 5                                   # resumed into stage 2, stopped in its middle
  assert train.train_and_evaluate(config, parts) == {'preempted_at_step': 5}
  stop.n = None
  resumed = train.train_and_evaluate(config, parts)
  a, b = _final(str(tmp_path / 'straight')), _final(parts)
  assert int(a['step']) == int(b['step']) == 7
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert resumed['metrics']['f1_mean'] == straight['metrics']['f1_mean']
  # Stage 1 trained the auto-encoders only: every other parameter is still at its initial value.
  resolved = config_base.resolve_config(config)
  info = builders.get_dataset_info(resolved.data)
  init_rng = jax.random.split(jax.random.key(config.seed))[0]
  model = initialization.create_model(resolved, info, init_rng)
  init = model_state.flatten(model_state.variables(model)['params'])
  got = model_state.flatten(after_stage1['params'])
  for path, value in init.items():
    same = np.array_equal(np.asarray(value), np.asarray(got[path]))
    assert same != path.startswith('autoencoders'), path


def test_stage_config_errors_name_the_key():
  with pytest.raises(config_schema.ConfigError, match='stage_order'):
    config_schema.read(config_base.TrainConfig, {'stage_order': ('a',), 'stages': {}}, 'train')
  with pytest.raises(config_schema.ConfigError, match='train.stages.a'):
    config_schema.read(config_base.TrainConfig, {'stage_order': ('a',), 'stages': {'a': {}}}, 'train')
  with pytest.raises(config_schema.ConfigError, match='losses names'):
    stages.plan(('a',), {'a': stages.stage(steps=2, losses=('nope',))}, steps_per_epoch=1,
                single_stage_steps=5, loss_terms=('au', 'roi', 'reconstruction'))
  with pytest.raises(config_schema.ConfigError, match="contains 'decoder'"):
    stages.trainable_mask({'autoencoders': {'k': 1}}, ('decoder',), 'config.train.stages.a.params')
  plan = stages.plan(('a', 'b'), {'a': stages.stage(epochs=1.5), 'b': stages.stage(steps=3)},
                     steps_per_epoch=4, single_stage_steps=99)
  assert [(s.start, s.end) for s in plan] == [(0, 6), (6, 9)]
  assert [stages.stage_of_step(plan, i) for i in (0, 5, 6, 8, 9)] == [0, 0, 1, 1, 1]


def test_paper_sizes_parameter_count():
  """AU-GCN sec. 2 says about 2.3 M parameters; faujax's auto-encoder widths are a choice."""
  info = _info(BP4D)
  model = nnx.eval_shape(lambda: _augcn(info))
  params = model_state.variables(model)['params']
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  gcn = 150 * 30 + 30 * 12
  head = 19 * 12 * 12 + 12
  ae = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params['autoencoders']))
  assert ae + gcn + head == count
  assert 1.0e6 < count < 6.0e6

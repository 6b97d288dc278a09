"""SVML-RGCN: relations (eq. 3-4), the generated classifier (eq. 1, 7), the ablation rows, the
visual nodes (eq. 5) and the multi-label metric edge cases of Sec. 4.1."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn import metrics as skm

from faujax import config_base
from faujax import config_schema
from faujax import labels as labels_lib
from faujax import metrics
from faujax import models
from faujax import relations
from faujax.data import input_pipeline
from faujax.data import dataset_info
from faujax.models import svml_rgcn
from faujax.models import visual_nodes as node_files
from faujax.models import svml_rgcn_figures
from faujax.models.parts import graph_classifier
from faujax.tools import visual_nodes

C = 6


def _labels(n=80, seed=0):
  """Multi-labels with structure: 0 and 1 co-occur often, 3 never with 0, label 5 never on."""
  rng = np.random.default_rng(seed)
  y = (rng.random((n, C)) < 0.3).astype(np.float64)
  y[:, 1] = np.where(rng.random(n) < 0.8, y[:, 0], y[:, 1])
  y[y[:, 0] > 0, 3] = 0
  y[:, 5] = 0
  return y


def _info(y):
  info = dataset_info.DatasetInfo(
      name='stand_in', builder_config='', task='expression_multi',
      label_names=list(labels_lib.BASIC_6), num_labels=C, aus=(),
      num_examples={'train': len(y), 'validation': 0, 'test': 0}, image_size=32,
      num_landmarks=68, fold=1, train_occurrence_rates=y.mean(0).astype(np.float32),
      class_counts=y.sum(0).astype(np.int64), multi_label_names=list(labels_lib.BASIC_6))
  info.__dict__['train_labels'] = {'expression_multi': y.astype(np.float32)}
  return info


def _model(info, **overrides):
  cfg = models.default_config('svml_rgcn')
  cfg.backbone = models.backbone_config('small_cnn', widths=(8, 16))
  cfg.update({'hidden_dim': 12, 'mfb_dim': 10, 'visual_nodes': 'random', **overrides})
  return models.build(cfg, info, rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------- relations


def _relations_loop(y, mask, t1, t2):
  c = y.shape[1]
  pos, neg = np.zeros((c, c)), np.zeros((c, c))
  for i in range(c):
    for j in range(c):
      if i == j:
        continue
      both = n_i = 0
      for row, known in zip(y, mask):
        if known[i] and known[j] and row[i]:
          n_i += 1
          both += row[j]
      if n_i == 0:
        continue  # P_ij undefined: no relation
      p = both / n_i  # eq. 3
      pos[i, j] = p > t2  # eq. 4
      neg[i, j] = p < t1
  return np.stack([pos, neg])


@pytest.mark.parametrize('t1, t2', [(0.15, 0.4), (1e-6, 0.45)])
def test_svml_relations_match_loop_reference(t1, t2):
  y = _labels()
  mask = np.random.default_rng(1).random(y.shape) > 0.1
  got = relations.svml_relations(y, t1, t2, mask=mask)
  np.testing.assert_array_equal(got, _relations_loop(y, mask, t1, t2))
  np.testing.assert_array_equal(relations.svml_relations(y, t1, t2),
                                _relations_loop(y, np.ones_like(mask), t1, t2))
  assert got[0, 0, 1] == 1 and got[1, 0, 3] == 1   # co-occurring / exclusive pairs
  assert not got[:, 5].any()                         # label 5 never positive: no relations


# ----------------------------------------------------------------------------- classifier


def _rgcn_layer_numpy(params, h, rel):
  """Eq. 7 for one layer, node by node: sum_r sum_{j in N_i^r} W_r h_j / |N_i^r| + W_0 h_i."""
  out = np.zeros((h.shape[0], params['self_kernel'].shape[1]))
  for i in range(h.shape[0]):
    out[i] = h[i] @ params['self_kernel']
    for r in range(rel.shape[0]):
      nbrs = np.flatnonzero(rel[r, i])
      for j in nbrs:
        out[i] += h[j] @ params['kernel'][r] / len(nbrs)
  return out


def test_graph_classifier_two_rgcn_layers_match_eq7():
  rel = relations.svml_relations(_labels(), 0.15, 0.4)
  gc = graph_classifier.GraphClassifier(5, 7, rel, hidden_dim=4, rngs=nnx.Rngs(0))
  h = np.random.default_rng(0).normal(size=(C, 5))
  p0 = {k: np.asarray(v[...], np.float64) for k, v in vars(gc.layer0).items()
        if isinstance(v, nnx.Param)}
  p1 = {k: np.asarray(v[...], np.float64) for k, v in vars(gc.layer1).items()
        if isinstance(v, nnx.Param)}
  hidden = _rgcn_layer_numpy(p0, h, rel)
  hidden = np.where(hidden > 0, hidden, 0.2 * hidden)   # LeakyReLU(0.2) between the layers
  want = _rgcn_layer_numpy(p1, hidden, rel)
  np.testing.assert_allclose(np.asarray(gc(jnp.asarray(h))), want, rtol=1e-4, atol=1e-5)


def test_model_logits_are_features_times_generated_classifier():
  info = _info(_labels())
  model = _model(info)
  batch = {'image': jax.random.normal(jax.random.key(0), (3, 32, 32, 3)),
           'landmarks': jnp.zeros((3, 68, 2))}
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def forward(p):
    m = nnx.merge(graphdef, p, rest)
    return (m(batch, train=False)['expression_multi_logits'],
            m.features(batch['image'], train=False), m.classifier_weights())

  logits, f, w = forward(params)
  assert w.shape == (C, f.shape[1]) and logits.shape == (3, C)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(f @ w.T), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(model.relations, relations.svml_relations(_labels(), 0.15, 0.4))
  # The classifier learns: gradients reach the MFB, both R-GCN layers and the trunk.
  grads = nnx.to_pure_dict(jax.jit(jax.grad(lambda p: jnp.sum(forward(p)[0] ** 2)))(params))
  for part in ('mfb', 'graph_classifier', 'backbone'):
    assert any(np.abs(np.asarray(g)).sum() > 0 for g in jax.tree.leaves(grads[part])), part


def test_ablation_rows_set_the_graph_and_node_inputs():
  y = _labels()
  info = _info(y)
  rows = svml_rgcn.ABLATIONS
  assert {'baseline', 'svml_gcn', 'svml_rgcn', 'sml_rgcn', 'vml_rgcn'} <= set(rows)

  def build(row):
    return _model(info, **{key.split('.', 1)[1]: v for key, v in rows[row].items()})

  base = build('baseline')
  assert base.relations is None and hasattr(base, 'head')
  gcn = build('svml_gcn')   # eq. 13-14 with t = t2, p = 0.2
  np.testing.assert_allclose(gcn.relations, relations.mlgcn_adjacency(y, 0.4, 0.2))
  assert build('svml_rgcn').relations.shape == (2, C, C)
  assert build('svml_rgcn_positive').relations.shape == (1, C, C)
  sml, vml = build('sml_rgcn'), build('vml_rgcn')
  assert sml.node_inputs().shape == (C, 384)           # the shipped MiniLM vectors
  assert vml.node_inputs().shape == (C, 16)            # 'random': the trunk's width
  assert build('svml_rgcn').node_inputs().shape == (C, 10)   # MFB output o


def test_config_errors_name_the_key(tmp_path):
  info = _info(_labels())
  with pytest.raises(config_schema.ConfigError, match='visual_nodes is empty'):
    _model(info, visual_nodes='')
  with pytest.raises(config_schema.ConfigError, match='does not exist'):
    _model(info, visual_nodes=str(tmp_path / 'none.npz'))
  with pytest.raises(config_schema.ConfigError, match='config.model.t1'):
    _model(info, t1=0.5, t2=0.4)
  with pytest.raises(config_schema.ConfigError, match='config.model.classifier'):
    _model(info, classifier='mlp')
  _model(info, visual_nodes='', nodes='sml')   # semantic only: no visual file needed
  single = dataclasses.replace(info, task='expression')
  with pytest.raises(config_schema.ConfigError, match='expression_multi'):
    _model(single)


def test_figures_save_the_relations(tmp_path):
  y = _labels()
  model = _model(_info(y))
  written = svml_rgcn_figures.write_figures(str(tmp_path), model)
  assert os.path.getsize(written['relations']) > 1000
  with np.load(written['relations_npz']) as saved:
    np.testing.assert_array_equal(saved['graph'], relations.svml_relations(y, 0.15, 0.4))
    assert np.isnan(saved['cooccurrence'][5]).all() and list(saved['names']) == list(
        labels_lib.BASIC_6)
  marks = svml_rgcn_figures.relation_marks(model.relations, 'both', C)
  assert marks[0, 1] == '+' and marks[0, 3] == '-'


# ----------------------------------------------------------------------------- visual nodes


def test_class_means_eq5_and_file_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(50, 4))
  classes = rng.integers(-1, 3, 50)   # -1: a class outside the nodes (e.g. neutral)
  means, counts = node_files.class_means(feats, classes, 3)
  for c in range(3):
    rows = [feats[n] for n in range(50) if classes[n] == c]
    assert counts[c] == len(rows)
    np.testing.assert_allclose(means[c], np.sum(rows, axis=0) / len(rows))
  path = node_files.save(str(tmp_path / 'v.npz'), means, ['happy', 'sad', 'anger'], counts)
  np.testing.assert_allclose(node_files.load(path, ['Anger', 'happy']), means[[2, 0]],
                             rtol=1e-6)
  with pytest.raises(node_files.VisualNodesError, match=r"no visual node for \['fear'\]"):
    node_files.load(path, ['fear'])
  with pytest.raises(node_files.VisualNodesError, match='No images of class'):
    node_files.save(str(tmp_path / 'w.npz'), means, ['a', 'b', 'c'], [1, 0, 2])


def _tiny_config(builder_config, model, data_dir):
  config = config_base.get_config(model)
  config_base.synthetic_data(config, builder_config)
  config.data.update({'data_dir': data_dir, 'image_size': 48, 'num_subjects': 9,
                      'frames_per_subject': 6})
  config_base.synthetic_augment(config, 32)
  config.model.backbone = models.backbone_config('small_cnn', widths=(8, 16))
  config.train.update({'batch_size': 8, 'num_steps': 4, 'log_every': 4, 'eval_every': 4})
  config.eval.batch_size = 16
  config.checkpoint.every = 4
  return config


def test_visual_nodes_command_equals_direct_class_means(tmp_path, tiny_data_dir):
  """Trains the basic network, writes eq. 5 with the command's code and checks it against a
  direct computation over the training split."""
  from faujax.data import augment
  basic = _tiny_config('expression', 'baseline', tiny_data_dir)
  basic.loss.va = 'none'
  workdir = str(tmp_path / 'basic')
  out = str(tmp_path / 'nodes.npz')
  summary = visual_nodes.run(basic, workdir, out, train_first=True)
  got = node_files.load(out, labels_lib.BASIC_6)

  trained = visual_nodes.load_trained(workdir)
  model, info = trained.model(), trained.info
  aug = config_schema.read(augment.AugmentConfig, basic.augment, 'augment')
  sums, counts = np.zeros((C, got.shape[1])), np.zeros(C)
  for batch in input_pipeline.create_split(basic.data, 'train', batch_size=5, train=False):
    images = augment.preprocess(None, batch, aug, train=False)['image']
    fmap = np.asarray(model.backbone(images, train=False), np.float64)
    for n in range(len(images)):
      name = info.label_names[int(batch['expression'][n])]
      if batch['valid'][n] and name in labels_lib.BASIC_6:
        c = labels_lib.BASIC_6.index(name)
        sums[c] += fmap[n].mean(axis=(0, 1))
        counts[c] += 1
  present = counts > 0
  assert present.sum() >= 3
  np.testing.assert_allclose(got[present], (sums / np.maximum(counts, 1)[:, None])[present],
                             rtol=1e-4, atol=1e-5)
  assert [summary['counts'][n] for n in labels_lib.BASIC_6] == counts.astype(int).tolist()

  # SVML-RGCN's training on a visual-node file: tests/test_self_contained_runs.py.


# ----------------------------------------------------------------------------- metric edge cases


def test_multilabel_metrics_on_no_and_all_label_samples():
  """Sec. 4.1 on rows without / with every label: the conventions, against scikit-learn."""
  y = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 1], [0, 1, 0, 0]])
  s = np.array([[0.9, 0.2, 0.1, 0.3], [0.1, 0.7, 0.4, 0.2], [0.8, 0.6, 0.1, 0.5],
                [0.3, 0.2, 0.2, 0.1]])
  m = metrics.multilabel_metrics(s, y)
  assert m['ml/coverage'] == pytest.approx(skm.coverage_error(y, s))
  assert m['ml/coverage'] == pytest.approx((0 + 4 + 3 + 3) / 4)   # no label: 0; all: C
  assert m['ml/ranking_loss'] == pytest.approx(skm.label_ranking_loss(y, s))
  assert m['ml/ranking_loss'] == pytest.approx((0 + 0 + 1 / 4 + 2 / 3) / 4)
  assert m['ml/average_precision'] == pytest.approx(
      skm.label_ranking_average_precision_score(y, s))
  assert m['ml/one_error'] == pytest.approx((1 + 0 + 0 + 1) / 4)  # no label: top is wrong
  p = (s > 0.5).astype(int)  # sec. 4.1: "greater than 0.5" (s[2, 3] = 0.5 is a negative)
  assert m['ml/hamming_loss'] == pytest.approx(skm.hamming_loss(y, p))
  assert m['ml/micro_f1'] == pytest.approx(skm.f1_score(y, p, average='micro', zero_division=0))
  assert m['ml/macro_f1'] == pytest.approx(skm.f1_score(y, p, average='macro', zero_division=0))
  assert m['ml/micro_auc'] == pytest.approx(skm.roc_auc_score(y, s, average='micro'))
  assert m['ml/macro_auc'] == pytest.approx(skm.roc_auc_score(y, s, average='macro'))
  # Every sample without labels: ranking metrics take their conventions, AUC is undefined.
  empty = metrics.multilabel_metrics(s, np.zeros_like(y))
  assert empty['ml/coverage'] == 0 and empty['ml/ranking_loss'] == 0
  assert empty['ml/average_precision'] == 1 and empty['ml/one_error'] == 1
  assert np.isnan(empty['ml/macro_auc'])

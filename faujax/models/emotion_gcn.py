"""Emotion-GCN: GCN-generated expression classifiers and valence-arousal regressors.

Antoniadis, Filntisis, Maragos, "Exploiting Emotional Dependencies with Graph Convolutional
Networks for Facial Expression Recognition", Sec. III, Fig. 2:

  x = f_gmp(f_cnn(I))                      (eq. 1)  trunk feature map (B, h, w, C) -> max -> (B, C)
  H^{l+1} = h(A_hat H^l W^l)               (eq. 2)  GCN over the 9 label nodes, H^1 = Z (9, d)
  W = H^{L+1} in R^{9 x C}; W^c = W[:7], W^r = W[7:]
  expression_logits = x W^c^T              (eq. 7, softmax applied by the loss)
  va = x W^r^T                             (eq. 10, no activation)

Node order (``docs/reference/model_details.md``, "Emotion-GCN"): the K expression classes of the
dataset (``info.label_names``,
Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger), then Valence, Arousal. Z comes from
``faujax.models.label_embeddings`` (MiniLM default, GloVe files, one-hot).

The adjacency (eq. 3-6) is computed once from the training labels (``info.train_labels``) by
``faujax.relations.emotion_gcn_adjacency`` with ``normalize=False`` (the re-weighted ``A''``
of eq. 6, Fig. 3); it and Z are the model's constants (``EmotionGCN.prepare``, saved with the
run: ``faujax.model_state``); each GCN layer applies ML-GCN's normalisation
``D^-1/2 A''^T D^-1/2`` (``faujax.graph`` 'mlgcn'). An imported public checkpoint brings its own
``A`` (``faujax.tools.import_checkpoint``). Variants (``config.model.adjacency``):
'spearman' (the paper) or 'conditional' (Sec. IV-E and its appendix: the expression-expression
block holds ML-GCN conditional probabilities P(j | i) of a multi-label expression set).

GCN (``docs/reference/model_details.md``, "ML-GCN"): ``L = gcn_layers`` layers without bias, weights
U(+-1/sqrt(out)), widths d -> 512 -> C for L = 2 (C = the trunk's channel count, 1024 for
DenseNet-121), LeakyReLU(0.2) between layers and none after the last. L = 1 maps d -> C directly;
L > 2 inserts further 512 -> 512 hidden layers (d -> 512 -> ... -> 512 -> C), Table II.

Table I rows (``config.ablation``, see ``ABLATIONS``): ``classifier='linear'`` replaces the
generated W by free linear classifiers / regressors on the same max-pooled trunk feature
(single-task, multi-task MSE, multi-task CCC), so the only difference to Emotion-GCN is how W is
obtained; the loss keys pick the valence-arousal term.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax import labels as labels_lib
from faujax import model_state
from faujax import relations
from faujax.config_schema import frozen_mapping
from faujax.graph import gcn as gcn_lib
from faujax.models import label_embeddings
from faujax.models import trunk as trunk_lib

DIMENSIONS: tuple[str, ...] = ('valence', 'arousal')
ADJACENCIES: tuple[str, ...] = ('spearman', 'conditional')
CLASSIFIERS: tuple[str, ...] = ('gcn', 'linear')

# The evaluators this model comes with (``faujax.evaluators``).
EVALUATORS = ('faujax.evaluators.emotion_gcn_figures',)

# Table I rows and the Sec. IV-E variant: name -> the config keys they set.
ABLATIONS: dict[str, dict[str, Any]] = {
    'single_task': {'model.classifier': 'linear', 'loss.va': 'none'},   # (i) weighted CE only
    'mtl_mse': {'model.classifier': 'linear', 'loss.va': 'mse'},        # (ii) + MSE on V / A
    'mtl_ccc': {'model.classifier': 'linear', 'loss.va': 'ccc'},        # (iii) + CCC (eq. 12)
    'emotion_gcn': {'model.classifier': 'gcn', 'loss.va': 'ccc',        # (iv) the proposed model
                    'model.adjacency': 'spearman'},
    'conditional': {'model.classifier': 'gcn', 'loss.va': 'ccc',        # Sec. IV-E, appendix
                    'model.adjacency': 'conditional', 'model.p': 0.5},
}


class LabelGCN(nnx.Module):
  """Label embeddings Z (N, d) -> dependent classifiers/regressors W (N, out_features) (eq. 2).

  Args:
    embeddings: Z (N, d), held as a ``model_state.Constant`` (not trained).
    adjacency: the re-weighted A'' (N, N), a ``Constant``; normalised per layer by
      ``D^-1/2 A''^T D^-1/2``.
    out_features: C, the width of the image feature x.
    num_layers: L >= 1.
    hidden_dim: width of the hidden layers (512).
    leaky_slope: LeakyReLU negative slope between layers (0.2).
  """

  def __init__(self, embeddings: np.ndarray, adjacency: np.ndarray, out_features: int, *,
               num_layers: int = 2, hidden_dim: int = 512, leaky_slope: float = 0.2,
               rngs: nnx.Rngs):
    self.embeddings = model_state.Constant(jnp.asarray(embeddings, jnp.float32))
    self.adjacency = model_state.Constant(jnp.asarray(adjacency, jnp.float32))
    self.leaky_slope = leaky_slope
    widths = [self.embeddings.shape[1]] + [hidden_dim] * (num_layers - 1) + [out_features]
    self.num_layers = num_layers
    for i in range(num_layers):  # gcn0, gcn1, ...: the variable paths
      setattr(self, f'gcn{i}', gcn_lib.GraphConv(
          widths[i], widths[i + 1], normalization='mlgcn', use_bias=False,
          initializer='uniform_out', dtype=jnp.float32, rngs=rngs))

  def __call__(self) -> jax.Array:
    h = self.embeddings[...]
    adj = self.adjacency[...]
    for i in range(self.num_layers):
      h = getattr(self, f'gcn{i}')(h, adj)
      if i < self.num_layers - 1:
        h = jax.nn.leaky_relu(h, self.leaky_slope)
    return h


class EmotionGCN(nnx.Module):
  """Trunk -> global max pool -> x (B, C); logits/VA = x @ W^T (Emotion-GCN eq. 1-10).

  Args:
    info: an expression label space (``label_names``: the K classes).
    constants: ``prepare``'s ``embeddings`` Z (K + 2, d) and ``adjacency`` A'' (K + 2, K + 2)
      ('gcn' classifier; none for 'linear').
    backbone: ``config.model.backbone``; DenseNet-121 in the paper.
    classifier: 'gcn' (W = GCN(Z, A), the paper) or 'linear' (free classifiers: Table I (i)-(iii)).
    adjacency: 'spearman' (eq. 3-6) or 'conditional' (Sec. IV-E: ML-GCN conditional probabilities
      between the expressions).
    tau: binarisation threshold of eq. 5 (0.1).
    p: re-weighting of eq. 6 (0.7 in the paper; 0.5 in the public code and the appendix).
    keep_va_edge: keep the valence-arousal edge when |rho(V, A)| >= tau (the public code's
      behaviour; the paper zeroes every dimensional-dimensional and categorical-categorical
      off-diagonal).
    gcn_layers: L (Table II).
    hidden_dim: GCN hidden width (512).
    leaky_slope: LeakyReLU slope (0.2).
    embeddings: 'default' (shipped MiniLM vectors), 'onehot' or a GloVe text file.
    cooccurrence_labels: 'conditional' only: 'train_multi' or a .npy / text file of (m, K) 0/1
      rows.
    dtype: trunk compute dtype; the GCN and the products with W run in float32.
    rngs: parameter initialisation.
  """

  def __init__(self, info: Any, *, constants: Mapping[str, np.ndarray] = frozen_mapping({}),
               backbone: Mapping[str, Any] = frozen_mapping({'name': 'densenet121'}),
               classifier: str = 'gcn', adjacency: str = 'spearman', tau: float = 0.1,
               p: float = 0.7, keep_va_edge: bool = False, gcn_layers: int = 2,
               hidden_dim: int = 512, leaky_slope: float = 0.2, embeddings: str = 'default',
               cooccurrence_labels: str = 'train_multi', dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    if getattr(info, 'task', 'expression') != 'expression':
      raise ValueError(f'config.model.name=emotion_gcn needs an expression dataset; '
                       f'config.data gives task {info.task!r}.')
    if classifier not in CLASSIFIERS:
      raise ValueError(f'config.model.classifier={classifier!r}; expected one of {CLASSIFIERS}.')
    _check_graph_options(tau=tau, p=p)
    for key, ok, expected in (
        ('gcn_layers', gcn_layers >= 1, 'an int >= 1'),
        ('hidden_dim', hidden_dim >= 1, 'an int >= 1'),
        ('leaky_slope', leaky_slope >= 0.0, 'a slope >= 0')):
      if not ok:
        raise ValueError(f'config.model.{key}={locals()[key]!r}; expected {expected}.')
    self.num_classes = int(info.num_labels)
    self.classifier = classifier
    self.backbone = trunk_lib.build(backbone, dtype=dtype, rngs=rngs)
    c = self.backbone.num_features
    if classifier == 'gcn':
      nodes = len(node_names(info.label_names))
      z, a = _checked_constants(constants, nodes)
      self.label_gcn = LabelGCN(z, a, c, num_layers=gcn_layers, hidden_dim=hidden_dim,
                                leaky_slope=leaky_slope, rngs=rngs)
    else:
      self.head = nnx.Linear(c, self.num_classes, dtype=dtype, rngs=rngs)
      self.va_head = nnx.Linear(c, len(DIMENSIONS), dtype=dtype, rngs=rngs)

  @staticmethod
  def prepare(info: Any, *, classifier: str = 'gcn', adjacency: str = 'spearman',
              tau: float = 0.1, p: float = 0.7, keep_va_edge: bool = False,
              embeddings: str = 'default',
              cooccurrence_labels: str = 'train_multi') -> dict[str, np.ndarray]:
    """The constants (``faujax.models.prepare``): Z from ``embeddings`` and A'' from the training
    labels (eq. 3-6 or Sec. IV-E); none for the 'linear' classifiers. Options as the model's."""
    _check_graph_options(tau=tau, p=p)
    if classifier != 'gcn':
      return {}
    return {'embeddings': label_embeddings.load_embeddings(embeddings,
                                                           node_names(info.label_names)),
            'adjacency': build_adjacency(info, kind=adjacency, tau=tau, p=p,
                                         keep_va_edge=keep_va_edge,
                                         cooccurrence_labels=cooccurrence_labels)}

  @property
  def adjacency(self) -> np.ndarray | None:
    """A'' (K + 2, K + 2) of eq. 6 (not normalised), None for the linear classifiers."""
    return np.asarray(self.label_gcn.adjacency[...]) if self.classifier == 'gcn' else None

  def classifier_weights(self) -> jax.Array:
    """W (K + 2, C) float32: rows 0..K-1 are W^c, the last two W^r (valence, arousal)."""
    if self.classifier == 'gcn':
      return self.label_gcn()
    return jnp.concatenate([self.head.kernel[...].T, self.va_head.kernel[...].T], axis=0)

  def features(self, images: jax.Array, *, train: bool) -> jax.Array:
    """x = global max pool of the trunk's final map (eq. 1), (B, C) float32."""
    fmap = self.backbone(images, train=train)
    chex.assert_rank(fmap, 4)
    return jnp.max(fmap, axis=(1, 2)).astype(jnp.float32)

  def __call__(self, batch: dict[str, jax.Array], *, train: bool,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
    del rngs  # no dropout
    images = batch['image']
    chex.assert_rank(images, 4)
    x = self.features(images, train=train)
    if self.classifier == 'linear':
      return {'expression_logits': self.head(x).astype(jnp.float32),
              'va': self.va_head(x).astype(jnp.float32)}
    w = self.classifier_weights()
    chex.assert_equal(w.shape[-1], x.shape[-1])
    scores = x @ w.T
    return {'expression_logits': scores[:, :self.num_classes],
            'va': scores[:, self.num_classes:]}


# ------------------------------------------------------------------------------- building


def node_names(label_names: Sequence[str]) -> list[str]:
  """The graph's node names: the expression classes then 'valence', 'arousal'."""
  return [str(n) for n in label_names] + list(DIMENSIONS)


def _checked_constants(constants: Mapping[str, np.ndarray],
                       nodes: int) -> tuple[np.ndarray, np.ndarray]:
  """(Z, A'') from ``constants``, checked against the node count."""
  missing = [k for k in ('embeddings', 'adjacency') if k not in constants]
  if missing:
    raise ValueError(f'Emotion-GCN needs the constants embeddings and adjacency '
                     f'(EmotionGCN.prepare); missing {missing}.')
  z, a = np.asarray(constants['embeddings']), np.asarray(constants['adjacency'])
  if z.ndim != 2 or z.shape[0] != nodes or a.shape != (nodes, nodes):
    raise ValueError(f'Emotion-GCN constants: embeddings {z.shape} must be ({nodes}, d) and '
                     f'adjacency {a.shape} ({nodes}, {nodes}) for the {nodes} nodes.')
  return z, a


def _training_labels(info: Any) -> tuple[np.ndarray, np.ndarray]:
  """(expression (n,) int, [valence, arousal] (n, 2)) of the training split, unlabelled dropped."""
  train = getattr(info, 'train_labels', None)
  if not train or any(k not in train for k in ('expression', 'valence', 'arousal')):
    raise ValueError('Emotion-GCN computes its adjacency from the training labels: the dataset '
                     "info needs train_labels with 'expression', 'valence' and 'arousal' arrays; "
                     f'got {None if not train else sorted(train)}.')
  expr = np.asarray(train['expression']).astype(np.int64).ravel()
  va = np.stack([np.asarray(train['valence'], np.float64).ravel(),
                 np.asarray(train['arousal'], np.float64).ravel()], axis=1)
  if va.shape[0] != expr.shape[0]:
    raise ValueError(f'info.train_labels: expression has {expr.shape[0]} entries but '
                     f'valence/arousal {va.shape[0]}.')
  keep = (expr >= 0) & (expr < info.num_labels) & np.all(np.isfinite(va), axis=1)
  keep &= np.all(np.abs(va) <= 1.0, axis=1)  # AffectNet -2 / Aff-Wild2 -5: not annotated
  if 'va_mask' in train:
    keep &= np.asarray(train['va_mask']).ravel() > 0
  if keep.sum() < 2:
    raise ValueError(f'info.train_labels holds {int(keep.sum())} examples with both an '
                     'expression and valence/arousal labels; the adjacency needs at least 2.')
  return expr[keep], va[keep]


def _multi_from_basic6(multi: np.ndarray, label_names: Sequence[str]) -> np.ndarray:
  """(n, 6) BASIC_6 multi-labels -> (n, K) in ``label_names`` order; neutral = none active."""
  multi = np.asarray(multi, np.float64) > 0.5
  out = np.zeros((multi.shape[0], len(label_names)))
  basic = {n: i for i, n in enumerate(labels_lib.BASIC_6)}
  for k, name in enumerate(label_names):
    if name.lower() in basic:
      out[:, k] = multi[:, basic[name.lower()]]
    elif name.lower() == 'neutral':
      out[:, k] = ~multi.any(axis=1)
    else:
      raise ValueError(f'Cannot map class {name!r} to the BASIC_6 multi-labels '
                       f'{labels_lib.BASIC_6}.')
  return out


def cooccurrence_labels_from(source: str, info: Any) -> np.ndarray:
  """Multi-label (m, K) 0/1 expression matrix for the Sec. IV-E conditional-probability variant.

  Args:
    source: 'train_multi' (``info.train_labels['expression_multi']``, (n, 6) in BASIC_6 order, the
      synthetic faces' multi-labels; 'neutral' = no basic expression active) or a path to a .npy
      or whitespace/comma separated text file of (m, K) 0/1 rows in ``info.label_names`` order
      (e.g. EMOTIC mapped to the 7 classes, as in the paper's appendix).
    info: dataset info.
  """
  k = info.num_labels
  if source == 'train_multi':
    train = getattr(info, 'train_labels', None) or {}
    if 'expression_multi' not in train:
      raise ValueError("config.model.cooccurrence_labels='train_multi' needs "
                       "info.train_labels['expression_multi'] (multi-label expressions); this "
                       'dataset has none: give a .npy / text file of (m, 7) 0/1 rows instead.')
    return _multi_from_basic6(train['expression_multi'], info.label_names)
  if not os.path.isfile(source):
    raise ValueError(f'config.model.cooccurrence_labels={source!r}: expected "train_multi" or an '
                     'existing .npy / text file of (m, 7) 0/1 rows.')
  if source.endswith('.npy'):
    y = np.load(source, allow_pickle=False)
  else:
    with open(source, encoding='utf-8') as f:
      text = f.read().replace(',', ' ')
    y = np.loadtxt(text.splitlines(), ndmin=2)
  y = np.asarray(y, np.float64)
  if y.ndim != 2 or y.shape[1] != k or not np.all((y == 0) | (y == 1)):
    raise ValueError(f'config.model.cooccurrence_labels file {source}: expected (m, {k}) 0/1 '
                     f'rows in {list(info.label_names)} order; got shape {y.shape}.')
  return y


def _check_graph_options(*, tau: float, p: float) -> None:
  """The options of eq. 5-6, checked before any data is read."""
  for key, value, expected in (('tau', tau, 'a threshold in [0, 1] on |Spearman rho|'),
                               ('p', p, 'a weight in [0, 1]')):
    if not 0.0 <= value <= 1.0:
      raise ValueError(f'config.model.{key}={value!r}; expected {expected}.')


def build_adjacency(info: Any, *, kind: str = 'spearman', tau: float = 0.1, p: float = 0.7,
                    keep_va_edge: bool = False,
                    cooccurrence_labels: str = 'train_multi') -> np.ndarray:
  """The fixed A'' (K + 2, K + 2) of Emotion-GCN eq. 3-6 (or Sec. IV-E) from ``info``'s training
  labels; not yet normalised. Arguments as ``EmotionGCN``'s."""
  if kind not in ADJACENCIES:
    raise ValueError(f'Unknown config.model.adjacency {kind!r}; expected one of {ADJACENCIES}.')
  _check_graph_options(tau=tau, p=p)
  expr, va = _training_labels(info)
  multi = None
  if kind == 'conditional':
    multi = cooccurrence_labels_from(cooccurrence_labels, info)
  return relations.emotion_gcn_adjacency(expr, va, num_classes=info.num_labels, tau=tau, p=p,
                                         expression_labels=multi, normalize=False,
                                         keep_va_edge=keep_va_edge)

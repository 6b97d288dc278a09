"""Emotion-GCN: GCN-generated expression classifiers and valence-arousal regressors.

Antoniadis, Filntisis, Maragos, "Exploiting Emotional Dependencies with Graph Convolutional
Networks for Facial Expression Recognition" (paper ``emotion_gcn.md``), Sec. III, Fig. 2:

  x = f_gmp(f_cnn(I))                      (eq. 1)  trunk feature map (B, h, w, C) -> max -> (B, C)
  H^{l+1} = h(A_hat H^l W^l)               (eq. 2)  GCN over the 9 label nodes, H^1 = Z (9, d)
  W = H^{L+1} in R^{9 x C}; W^c = W[:7], W^r = W[7:]
  expression_logits = x W^c^T              (eq. 7, softmax applied by the loss)
  va = x W^r^T                             (eq. 10, no activation)

Node order (reference-facts): the 7 expression classes of the dataset (``info.label_names``,
Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger), then Valence, Arousal. Z comes from
``faujax.models.label_embeddings`` (MiniLM default, GloVe files, one-hot).

The adjacency (eq. 3-6) is computed once from the training labels (``info.train_labels``) by
``faujax.relations.emotion_gcn_adjacency`` with ``normalize=False`` (the re-weighted ``A''``
of eq. 6, Fig. 3) and kept as a constant; each GCN layer applies ML-GCN's normalisation
``D^-1/2 A''^T D^-1/2`` (``faujax.graph`` 'mlgcn'). Variants (``config.model.adjacency``):
'spearman' (the paper) or 'conditional' (Sec. IV-E and its appendix: the expression-expression
block holds ML-GCN conditional probabilities P(j | i) of a multi-label expression set).

GCN (reference-facts, ML-GCN code): ``L = gcn_layers`` layers without bias, weights
U(+-1/sqrt(out)), widths d -> 512 -> C for L = 2 (C = the trunk's channel count, 1024 for
DenseNet-121), LeakyReLU(0.2) between layers and none after the last. L = 1 maps d -> C directly;
L > 2 inserts further 512 -> 512 hidden layers (d -> 512 -> ... -> 512 -> C), Table II.

Config keys read (``config.model``): ``backbone.name``, ``backbone.kwargs``, ``adjacency``
('spearman' | 'conditional'), ``tau``, ``p``, ``gcn_layers``, ``hidden_dim`` (512),
``leaky_slope`` (0.2), ``embeddings`` ('default' | 'onehot' | GloVe path),
``cooccurrence_labels`` (conditional variant only: 'train_multi' or a .npy / text file path).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from faujax import backbones
from faujax import labels as labels_lib
from faujax import relations
from faujax.graph import gcn as gcn_lib
from faujax.models import label_embeddings

DIMENSIONS: tuple[str, ...] = ('valence', 'arousal')
ADJACENCIES: tuple[str, ...] = ('spearman', 'conditional')
DEFAULT_HIDDEN = 512


def _as_tuple(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
  """A hashable copy of a 2-D array (Flax module attributes must be hashable)."""
  return tuple(tuple(float(v) for v in row) for row in np.asarray(a, np.float64))


class LabelGCN(nn.Module):
  """Label embeddings Z (N, d) -> dependent classifiers/regressors W (N, out_features) (eq. 2).

  Attributes:
    embeddings: Z as nested tuples (N, d), a constant.
    adjacency: the re-weighted A'' (N, N) as nested tuples, a constant; normalised per layer by
      ``D^-1/2 A''^T D^-1/2``.
    out_features: C, the width of the image feature x.
    num_layers: L >= 1.
    hidden_dim: width of the hidden layers (512).
    leaky_slope: LeakyReLU negative slope between layers (0.2).
  """

  embeddings: tuple[tuple[float, ...], ...]
  adjacency: tuple[tuple[float, ...], ...]
  out_features: int
  num_layers: int = 2
  hidden_dim: int = DEFAULT_HIDDEN
  leaky_slope: float = 0.2

  @nn.compact
  def __call__(self) -> jax.Array:
    z = jnp.asarray(self.embeddings, jnp.float32)
    adj = jnp.asarray(self.adjacency, jnp.float32)
    widths = [self.hidden_dim] * (self.num_layers - 1) + [self.out_features]
    h = z
    for i, width in enumerate(widths):
      h = gcn_lib.GraphConv(features=width, normalization='mlgcn', use_bias=False,
                            initializer='uniform_out', dtype=jnp.float32, name=f'gcn{i}')(h, adj)
      if i < len(widths) - 1:
        h = nn.leaky_relu(h, self.leaky_slope)
    return h


class EmotionGCN(nn.Module):
  """Trunk -> global max pool -> x (B, C); logits/VA = x @ GCN(Z, A)^T (Emotion-GCN eq. 1-10).

  Attributes:
    embeddings: Z (num_classes + 2, d) as nested tuples.
    adjacency: A'' (num_classes + 2, num_classes + 2) as nested tuples (eq. 6, not normalised).
    num_classes: K expression classes (7).
    arch: trunk name (``faujax.backbones.ARCHS``); 'densenet121' in the paper. The trunk's
      parameters live under 'backbone' (``config.model.backbone.init_from`` loads into it).
    backbone_kwargs: extra trunk attributes.
    gcn_layers: L (Table II).
    hidden_dim: GCN hidden width.
    leaky_slope: LeakyReLU slope.
    dtype: trunk compute dtype; the GCN and the products with W run in float32.
    bn_axis_name: pmap axis for synced BatchNorm statistics.
  """

  embeddings: tuple[tuple[float, ...], ...]
  adjacency: tuple[tuple[float, ...], ...]
  num_classes: int = 7
  arch: str = 'densenet121'
  backbone_kwargs: Any = None
  gcn_layers: int = 2
  hidden_dim: int = DEFAULT_HIDDEN
  leaky_slope: float = 0.2
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  def setup(self):
    num_nodes = self.num_classes + len(DIMENSIONS)
    if len(self.embeddings) != num_nodes or len(self.adjacency) != num_nodes:
      raise ValueError(f'EmotionGCN needs {num_nodes} node embeddings and a {num_nodes} x '
                       f'{num_nodes} adjacency; got {len(self.embeddings)} and '
                       f'{len(self.adjacency)}.')
    self.backbone = backbones.build(self.arch, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                                 **dict(self.backbone_kwargs or {}))
    self.label_gcn = LabelGCN(embeddings=self.embeddings, adjacency=self.adjacency,
                              out_features=self.backbone.num_features, num_layers=self.gcn_layers,
                              hidden_dim=self.hidden_dim, leaky_slope=self.leaky_slope)

  def classifier_weights(self) -> jax.Array:
    """W (num_classes + 2, C) float32: rows 0..K-1 are W^c, the last two W^r (valence, arousal)."""
    return self.label_gcn()

  def features(self, images: jax.Array, *, train: bool) -> jax.Array:
    """x = global max pool of the trunk's final map (eq. 1), (B, C) float32."""
    fmap = self.backbone(images, train=train)
    chex.assert_rank(fmap, 4)
    return jnp.max(fmap, axis=(1, 2)).astype(jnp.float32)

  def __call__(self, batch: dict[str, jax.Array], *, train: bool) -> dict[str, jax.Array]:
    images = batch['image']
    chex.assert_rank(images, 4)
    x = self.features(images, train=train)
    w = self.classifier_weights()
    chex.assert_equal(w.shape[-1], x.shape[-1])
    scores = x @ w.T
    return {'expression_logits': scores[:, :self.num_classes],
            'va': scores[:, self.num_classes:]}


# ------------------------------------------------------------------------------- building


def node_names(label_names: Sequence[str]) -> list[str]:
  """The graph's node names: the expression classes then 'valence', 'arousal'."""
  return [str(n) for n in label_names] + list(DIMENSIONS)


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


def cooccurrence_labels(source: str, info: Any) -> np.ndarray:
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


def build_adjacency(cfg: ml_collections.ConfigDict, info: Any) -> np.ndarray:
  """The fixed A'' (K + 2, K + 2) of Emotion-GCN eq. 3-6 (or Sec. IV-E) from ``info``'s training
  labels, with ``config.model.tau`` and ``config.model.p``; not yet normalised."""
  kind = cfg.get('adjacency', 'spearman')
  if kind not in ADJACENCIES:
    raise ValueError(f'Unknown config.model.adjacency {kind!r}; expected one of {ADJACENCIES}.')
  tau = float(cfg.get('tau', 0.1))
  p = float(cfg.get('p', 0.7))
  if not 0.0 <= p <= 1.0:
    raise ValueError(f'config.model.p must lie in [0, 1]; got {p}.')
  expr, va = _training_labels(info)
  multi = None
  if kind == 'conditional':
    multi = cooccurrence_labels(cfg.get('cooccurrence_labels', 'train_multi'), info)
  return relations.emotion_gcn_adjacency(expr, va, num_classes=info.num_labels, tau=tau, p=p,
                                         expression_labels=multi, normalize=False)


def from_config(cfg: ml_collections.ConfigDict, info: Any, dtype: Any,
                bn_axis_name: str | None) -> EmotionGCN:
  """Builds ``EmotionGCN`` from ``config.model`` and the dataset info (see the module docstring).

  The adjacency and the embeddings are computed here, once, and stored in the module as
  constants (they are not parameters and are not trained).
  """
  if getattr(info, 'task', 'expression') != 'expression':
    raise ValueError(f'config.model.name=emotion_gcn needs an expression dataset; '
                     f'config.data gives task {info.task!r}.')
  layers = int(cfg.get('gcn_layers', 2))
  if layers < 1:
    raise ValueError(f'config.model.gcn_layers must be >= 1; got {layers}.')
  names = node_names(info.label_names)
  z = label_embeddings.load_embeddings(cfg.get('embeddings', 'default'), names)
  adjacency = build_adjacency(cfg, info)
  return EmotionGCN(embeddings=_as_tuple(z), adjacency=_as_tuple(adjacency),
                    num_classes=info.num_labels, arch=cfg.backbone.name,
                    backbone_kwargs=dict(cfg.backbone.get('kwargs', None) or {}),
                    gcn_layers=layers, hidden_dim=int(cfg.get('hidden_dim', DEFAULT_HIDDEN)),
                    leaky_slope=float(cfg.get('leaky_slope', 0.2)), dtype=dtype,
                    bn_axis_name=bn_axis_name)


def model_adjacency(model: Any) -> np.ndarray | None:
  """A'' of an ``EmotionGCN`` (for Fig. 3), None for other models."""
  if isinstance(model, EmotionGCN):
    return np.asarray(model.adjacency, np.float64)
  return None


# ------------------------------------------------------------------------------- variants

# Table I rows and the Sec. IV-E variant, as config switches (``apply_variant``):
#   name -> (config.model.name, config.loss.va, config.model.adjacency or None)
VARIANTS: dict[str, tuple[str, str, str | None]] = {
    'single_task': ('baseline', 'none', None),     # Table I (i): weighted CE only
    'mtl_mse': ('baseline', 'mse', None),          # (ii) + MSE on valence/arousal
    'mtl_ccc': ('baseline', 'ccc', None),          # (iii) + CCC loss (eq. 12)
    'emotion_gcn': ('emotion_gcn', 'ccc', 'spearman'),     # (iv) the proposed model
    'conditional': ('emotion_gcn', 'ccc', 'conditional'),  # Sec. IV-E, appendix: p = 0.5
}


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Sets ``config.model.name``, ``config.loss.va`` (and the adjacency) for a ``VARIANTS`` row.

  The baselines (``faujax.models.baseline``) keep the same trunk and global MAX pooling
  (``model.pooling='max'``, eq. 1) with free linear classifiers/regressors, so the only difference
  to Emotion-GCN is how W is obtained. 'conditional' also sets ``model.p = 0.5`` (appendix).
  """
  if variant not in VARIANTS:
    raise ValueError(f'Unknown Emotion-GCN variant {variant!r}; expected one of '
                     f'{tuple(VARIANTS)} (e.g. --config configs/emotion_gcn/synthetic.py:mtl_ccc).')
  name, va, adjacency = VARIANTS[variant]
  config.model.name = name
  config.model.pooling = 'max'
  config.loss.va = va
  if adjacency is not None:
    config.model.adjacency = adjacency
  if variant == 'conditional':
    config.model.p = 0.5
  config.model.variant = variant
  return config

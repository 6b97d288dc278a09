"""MACG: multi-scale attention nodes, a top-K dynamic graph and a channel-topology branch.

Paper: Li et al., "Enhancing facial action unit recognition through topological feature integration
and relational learning" (``papers/macg.md``); the public code calls the model MACG.

  image (B, S, S, 3)
    -> trunk (ResNet-50: (B, 7, 7, 2048) at 224 px)
    -> LinearBlock 2048 -> C on every token                                 X (B, h, w, C)
    -> MAFG: multi-scale axial attention (eq. 1-3), one LinearBlock per AU
       and a mean over tokens (eq. 4)                                        V (B, N, C)
    -> top-K dynamic graph layer(s) (eq. 5-9, ``faujax.graph.DynamicGraphLayer``)  v^GNN (B, N, C)
  X -> CCFG: channel-topology conv (eq. 10-11), pooling, phi_i (eq. 12)       v^CCFG (B, N, C)
  f = LinearBlock 2C -> C (concat(v^GNN, v^CCFG)) (eq. 13)                    f (B, N, C)
  p = cosine head (eq. 14)                                                    au_probs (B, N)

Ablation rows of MACG Tables 4-5 as switches (the rest of the network unchanged):
  ResNet50          use_mafg=False use_gnn=False use_ccfg=False  (trunk -> LinearBlock -> per-AU
                                                                  LinearBlocks + mean -> head)
  ResNet50+MAFG     use_mafg=True  use_gnn=False use_ccfg=False
  Baseline          use_mafg=False use_gnn=True  use_ccfg=False  (ResNet50 + GNN, ME-GraphAU-like)
  Baseline+MAFG     use_mafg=True  use_gnn=True  use_ccfg=False
  Baseline+CCFG     use_mafg=False use_gnn=True  use_ccfg=True
  full              use_mafg=True  use_gnn=True  use_ccfg=True
Without CCFG there is nothing to concatenate, so the fusion block of eq. 13 is skipped and the head
reads the node features directly (as in ME-GraphAU). The Fig. 6 K sweep is ``top_k``.

Output: ``{'au_probs': (B, N) float32 in [0, 1]}`` for the 'asymmetric' loss (eq. 15-16).
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from faujax import backbones
from faujax.graph import dynamic_graph
from faujax.models.parts.ccfg import CCFG
from faujax.models.parts.cosine_head import CosineHead
from faujax.models.parts.linear_block import LinearBlock
from faujax.models.parts.mafg import AXIAL_ORDERS, MAFG

SIMILARITIES: tuple[str, ...] = dynamic_graph.METRICS

# The ablation rows of MACG Tables 4-5: name -> (use_mafg, use_gnn, use_ccfg).
ABLATIONS: dict[str, tuple[bool, bool, bool]] = {
    'resnet50': (False, False, False),
    'resnet50+mafg': (True, False, False),
    'baseline': (False, True, False),
    'baseline+mafg': (True, True, False),
    'baseline+ccfg': (False, True, True),
    'full': (True, True, True),
}


class MACG(nn.Module):
  """The MACG AU detector (see the module docstring).

  Attributes:
    num_labels: N AUs (8 DISFA, 12 BP4D / EmotioNet).
    backbone: trunk name (``faujax.backbones.ARCHS``); 'resnet50' in the paper.
    backbone_kwargs: extra trunk attributes.
    node_dim: C, width of the global LinearBlock, the AU nodes, CCFG and the fusion (512).
    rel_features: CCFG relation channels R (64).
    use_mafg: multi-scale axial attention (eq. 1-3) before the per-AU blocks.
    use_gnn: top-K dynamic graph (eq. 5-9).
    use_ccfg: channel-topology branch and fusion (eq. 10-13).
    top_k: K neighbours per node (3 DISFA, 4 BP4D / EmotioNet).
    similarity: 'dot' (paper eq. 5) or 'cosine' similarity of the graph.
    gnn_layers: number of dynamic-graph layers (1 in the public code).
    shared_ccfg_block: one LinearBlock shared by all AUs in CCFG (public code) instead of the
      paper's per-AU phi_i (eq. 12).
    mafg_kernel_sizes, mafg_square_kernel, axial_order: MAFG scales (7, 11, 21), 5, 'yx'.
    ccfg_lambda_init: initial CCFG lambda (eq. 11).
    dtype: compute dtype; parameters float32.
    bn_axis_name: pmap axis of every BatchNorm's statistics.
  """

  num_labels: int
  backbone: str = 'resnet50'
  backbone_kwargs: Any = None
  node_dim: int = 512
  rel_features: int = 64
  use_mafg: bool = True
  use_gnn: bool = True
  use_ccfg: bool = True
  top_k: int = 3
  similarity: str = 'dot'
  gnn_layers: int = 1
  shared_ccfg_block: bool = False
  mafg_kernel_sizes: Sequence[int] = (7, 11, 21)
  mafg_square_kernel: int = 5
  axial_order: str = 'yx'
  ccfg_lambda_init: float = 1.0
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, batch: dict[str, jax.Array], *, train: bool) -> dict[str, jax.Array]:
    validate(self)
    images = batch['image']
    chex.assert_rank(images, 4)
    chex.assert_type(images, float)
    b = images.shape[0]
    # ``backbones.build``'s first parameter is called ``name``: build an orphan, then adopt it.
    trunk = backbones.build(self.backbone, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                            parent=None, **dict(self.backbone_kwargs or {}))
    trunk = trunk.clone(parent=self, name='backbone')
    fmap = trunk(images, train=train)                                   # (B, h, w, C_trunk)
    _, h, w, c_trunk = fmap.shape
    x = LinearBlock(self.node_dim, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                    name='global_block')(fmap.reshape(b, h * w, c_trunk), train=train)
    x = x.reshape(b, h, w, self.node_dim)                               # X (B, h, w, C)

    nodes = MAFG(self.num_labels, self.node_dim, use_attention=self.use_mafg,
                 kernel_sizes=tuple(self.mafg_kernel_sizes), square_kernel=self.mafg_square_kernel,
                 axial_order=self.axial_order, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                 name='mafg')(x, train=train)                           # V (B, N, C)
    f = nodes
    if self.use_gnn:
      for layer in range(self.gnn_layers):
        f = dynamic_graph.DynamicGraphLayer(k=self.top_k, metric=self.similarity,
                                            bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                                            name=f'gnn_{layer}')(f, train=train)
    if self.use_ccfg:
      v_ccfg = CCFG(self.num_labels, self.node_dim, self.rel_features,
                    lambda_init=self.ccfg_lambda_init, shared_block=self.shared_ccfg_block,
                    dtype=self.dtype, bn_axis_name=self.bn_axis_name, name='ccfg')(x, train=train)
      fused = jnp.concatenate([f.astype(self.dtype), v_ccfg.astype(self.dtype)], axis=-1)
      f = LinearBlock(self.node_dim, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                      name='fusion')(fused, train=train)                # eq. 13, (B, N, C)
    probs = CosineHead(name='head')(f)
    chex.assert_shape(probs, (b, self.num_labels))
    return {'au_probs': probs.astype(jnp.float32)}


def validate(m: MACG) -> None:
  """Raises ValueError naming the config key of an inconsistent MACG setting."""
  n = m.num_labels
  if n < 1:
    raise ValueError(f'MACG.num_labels must be >= 1; got {n}.')
  if m.use_gnn and not 1 <= m.top_k <= n:
    raise ValueError(f'config.model.top_k={m.top_k} must be in [1, {n}] (the number of AUs).')
  if m.similarity not in SIMILARITIES:
    raise ValueError(f'config.model.similarity={m.similarity!r}; expected one of '
                     f'{SIMILARITIES}.')
  if m.use_gnn and m.gnn_layers < 1:
    raise ValueError(f'config.model.gnn_layers={m.gnn_layers}; expected >= 1.')
  if m.axial_order not in AXIAL_ORDERS:
    raise ValueError(f'config.model.axial_order={m.axial_order!r}; expected one of '
                     f'{AXIAL_ORDERS}.')
  for key, value in (('node_dim', m.node_dim), ('rel_features', m.rel_features)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'config.model.{key}={value!r}; expected a positive int.')


def from_config(cfg: ml_collections.ConfigDict, info: Any, dtype: Any,
                bn_axis_name: str | None) -> MACG:
  """MACG from ``config.model`` for the dataset ``info`` (``info.num_labels`` AUs).

  Keys read (defaults in brackets): ``backbone.name`` ['resnet50'], ``backbone.kwargs`` [{}],
  ``node_dim`` [512], ``rel_features`` [64], ``use_mafg`` / ``use_gnn`` / ``use_ccfg`` [True],
  ``ablation`` [''] (a name of ``ABLATIONS``; when set it overrides the three switches),
  ``top_k`` [3], ``similarity`` ['dot'], ``gnn_layers`` [1], ``shared_ccfg_block`` [False],
  ``mafg_kernel_sizes`` [(7, 11, 21)], ``mafg_square_kernel`` [5], ``axial_order`` ['yx'],
  ``ccfg_lambda_init`` [1.0].
  """
  if getattr(info, 'task', 'au') != 'au':
    raise ValueError(f"config.model.name='macg' is an AU model; the dataset's task is "
                     f'{info.task!r}.')
  use = (cfg.get('use_mafg', True), cfg.get('use_gnn', True), cfg.get('use_ccfg', True))
  ablation = cfg.get('ablation', '') or ''
  if ablation:
    if ablation not in ABLATIONS:
      raise ValueError(f'config.model.ablation={ablation!r}; expected one of {tuple(ABLATIONS)} '
                       f'or empty.')
    use = ABLATIONS[ablation]
  backbone = cfg.get('backbone', None)
  model = MACG(
      num_labels=int(info.num_labels),
      backbone=backbone.get('name', 'resnet50') if backbone is not None else 'resnet50',
      backbone_kwargs=dict((backbone.get('kwargs', None) or {}) if backbone is not None else {}),
      node_dim=cfg.get('node_dim', 512), rel_features=cfg.get('rel_features', 64),
      use_mafg=bool(use[0]), use_gnn=bool(use[1]), use_ccfg=bool(use[2]),
      top_k=cfg.get('top_k', 3), similarity=cfg.get('similarity', 'dot'),
      gnn_layers=cfg.get('gnn_layers', 1), shared_ccfg_block=cfg.get('shared_ccfg_block', False),
      mafg_kernel_sizes=tuple(cfg.get('mafg_kernel_sizes', (7, 11, 21))),
      mafg_square_kernel=cfg.get('mafg_square_kernel', 5),
      axial_order=cfg.get('axial_order', 'yx'),
      ccfg_lambda_init=float(cfg.get('ccfg_lambda_init', 1.0)), dtype=dtype,
      bn_axis_name=bn_axis_name)
  validate(model)
  return model

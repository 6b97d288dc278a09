"""MACG: multi-scale attention nodes, a top-K dynamic graph and a channel-topology branch.

Paper: Li et al., "Enhancing facial action unit recognition through topological feature integration
and relational learning"; the public code calls the model MACG. Facts the paper leaves open:
``docs/reference/model_details.md`` ("MAFG", "CCFG", "MACG head", "Top-K dynamic graph").

  image (B, S, S, 3)
    -> trunk (ResNet-50: (B, 7, 7, 2048) at 224 px)
    -> LinearBlock 2048 -> C on every token                                 X (B, h, w, C)
    -> MAFG: multi-scale axial attention (eq. 1-3), one LinearBlock per AU
       and a mean over tokens (eq. 4)                                        V (B, N, C)
    -> top-K dynamic graph layer(s) (eq. 5-9, ``faujax.graph.DynamicGraphLayer``)  v^GNN (B, N, C)
  X -> CCFG: channel-topology conv (eq. 10-11), pooling, phi_i (eq. 12)       v^CCFG (B, N, C)
  f = LinearBlock 2C -> C (concat(v^GNN, v^CCFG)) (eq. 13)                    f (B, N, C)
  p = cosine head (eq. 14)                                                    au_probs (B, N)

Ablation rows of MACG Tables 4-5 (``config.ablation``, see ``ABLATIONS``) set these switches (the
rest of the network unchanged):
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

Public-code switches (defaults are the paper's): ``shared_ccfg_block`` (one CCFG block for all AUs),
``ccfg_per_au_statistics`` (that block's BatchNorm statistics move once per AU in each training
step, as the code's per-AU calls move them), ``axial_order='xy'``, ``ccfg_trainable_lambda=False``
(a fixed lambda); docs/reference/model_details.md, "Reference-code parity switches".
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.config_schema import frozen_mapping
from faujax.graph import dynamic_graph
from faujax.models import trunk as trunk_lib
from faujax.models.parts.ccfg import CCFG
from faujax.models.parts.cosine_head import CosineHead
from faujax.models.parts.linear_block import LinearBlock
from faujax.models.parts.mafg import AXIAL_ORDERS, MAFG

SIMILARITIES: tuple[str, ...] = dynamic_graph.METRICS

# The ablation rows of MACG Tables 4-5: name -> the config keys they set.
ABLATIONS: dict[str, dict[str, Any]] = {
    name: {'model.use_mafg': mafg, 'model.use_gnn': gnn, 'model.use_ccfg': ccfg}
    for name, (mafg, gnn, ccfg) in {
        'resnet50': (False, False, False),
        'resnet50+mafg': (True, False, False),
        'baseline': (False, True, False),
        'baseline+mafg': (True, True, False),
        'baseline+ccfg': (False, True, True),
        'full': (True, True, True),
    }.items()}


class MACG(nnx.Module):
  """The MACG AU detector (see the module docstring).

  Args:
    info: the dataset: an AU task with ``num_labels`` N AUs (8 DISFA, 12 BP4D / EmotioNet).
    backbone: ``config.model.backbone``; ResNet-50 in the paper.
    node_dim: C, width of the global LinearBlock, the AU nodes, CCFG and the fusion (512).
    rel_features: CCFG relation channels R (64).
    use_mafg: multi-scale axial attention (eq. 1-3) before the per-AU blocks.
    use_gnn: top-K dynamic graph (eq. 5-9).
    use_ccfg: channel-topology branch and fusion (eq. 10-13).
    top_k: K neighbours per node (3 DISFA, 4 BP4D / EmotioNet).
    similarity: 'dot' (paper eq. 5) or 'cosine' similarity of the graph.
    gnn_layers: number of dynamic-graph layers (1 in the public code).
    shared_ccfg_block: one LinearBlock shared by all AUs in CCFG (the public code's behaviour)
      instead of the paper's per-AU phi_i (eq. 12).
    ccfg_per_au_statistics: with ``shared_ccfg_block``, that block's BatchNorm running statistics
      move N times per training step (the public code calls it once per AU), not once
      (``faujax.models.parts.ccfg``).
    mafg_kernel_sizes, mafg_square_kernel, axial_order: MAFG scales (7, 11, 21), 5, 'yx'
      ('xy': the public code's order).
    ccfg_lambda_init: initial CCFG lambda (eq. 11).
    ccfg_trainable_lambda: False keeps lambda fixed at its initial value (the public code's
      behaviour).
    dtype: compute dtype; parameters float32.
    rngs: parameter initialisation.
  """

  def __init__(self, info: Any, *,
               backbone: Mapping[str, Any] = frozen_mapping({'name': 'resnet50'}),
               node_dim: int = 512, rel_features: int = 64, use_mafg: bool = True,
               use_gnn: bool = True, use_ccfg: bool = True, top_k: int = 3,
               similarity: str = 'dot', gnn_layers: int = 1, shared_ccfg_block: bool = False,
               ccfg_per_au_statistics: bool = False,
               mafg_kernel_sizes: Sequence[int] = (7, 11, 21), mafg_square_kernel: int = 5,
               axial_order: str = 'yx', ccfg_lambda_init: float = 1.0,
               ccfg_trainable_lambda: bool = True, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    if getattr(info, 'task', 'au') != 'au':
      raise ValueError(f"config.model.name='macg' is an AU model; the dataset's task is "
                       f'{info.task!r}.')
    n = int(info.num_labels)
    _validate(n, use_gnn=use_gnn, top_k=top_k, similarity=similarity, gnn_layers=gnn_layers,
              axial_order=axial_order, node_dim=node_dim, rel_features=rel_features,
              mafg_kernel_sizes=mafg_kernel_sizes, mafg_square_kernel=mafg_square_kernel)
    self.num_labels = n
    self.node_dim = node_dim
    self.dtype = dtype
    self.backbone = trunk_lib.build(backbone, dtype=dtype, rngs=rngs)
    self.global_block = LinearBlock(self.backbone.num_features, node_dim, dtype=dtype, rngs=rngs)
    self.mafg = MAFG(n, node_dim, features=node_dim, use_attention=use_mafg,
                     kernel_sizes=tuple(mafg_kernel_sizes), square_kernel=mafg_square_kernel,
                     axial_order=axial_order, dtype=dtype, rngs=rngs)
    layers = gnn_layers if use_gnn else 0
    for i in range(layers):  # attribute names gnn_0, gnn_1, ... (the variable paths)
      setattr(self, f'gnn_{i}', dynamic_graph.DynamicGraphLayer(
          n, node_dim, k=top_k, metric=similarity, dtype=dtype, rngs=rngs))
    self.gnn_layers = layers
    self.ccfg = (CCFG(n, node_dim, features=node_dim, rel_features=rel_features,
                      lambda_init=ccfg_lambda_init,
                      trainable_lambda=ccfg_trainable_lambda, shared_block=shared_ccfg_block,
                      per_au_statistics=ccfg_per_au_statistics, dtype=dtype, rngs=rngs)
                 if use_ccfg else None)
    self.fusion = (LinearBlock(2 * node_dim, node_dim, dtype=dtype, rngs=rngs)
                   if use_ccfg else None)
    self.head = CosineHead(n, node_dim, rngs=rngs)

  def __call__(self, batch: dict[str, jax.Array], *, train: bool,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
    del rngs  # no dropout
    images = batch['image']
    chex.assert_rank(images, 4)
    chex.assert_type(images, float)
    b = images.shape[0]
    out = self.from_map(self.backbone(images, train=train), train=train)
    chex.assert_shape(out['au_probs'], (b, self.num_labels))
    return out

  def from_map(self, fmap: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """Everything after the trunk: its map (B, h, w, C_trunk) -> the outputs."""
    b, h, w, c_trunk = fmap.shape
    x = self.global_block(fmap.reshape(b, h * w, c_trunk), train=train)
    x = x.reshape(b, h, w, self.node_dim)                                # X (B, h, w, C)
    f = self.mafg(x, train=train)                                        # V (B, N, C)
    for i in range(self.gnn_layers):
      f = getattr(self, f'gnn_{i}')(f, train=train)
    if self.ccfg is not None:
      v_ccfg = self.ccfg(x, train=train)
      fused = jnp.concatenate([f.astype(self.dtype), v_ccfg.astype(self.dtype)], axis=-1)
      f = self.fusion(fused, train=train)                                # eq. 13, (B, N, C)
    return {'au_probs': self.head(f).astype(jnp.float32)}


def _validate(n: int, *, use_gnn: bool, top_k: int, similarity: str, gnn_layers: int,
              axial_order: str, node_dim: int, rel_features: int,
              mafg_kernel_sizes: Sequence[int], mafg_square_kernel: int) -> None:
  """Raises ValueError naming the config key of an inconsistent MACG setting."""
  if n < 1:
    raise ValueError(f'MACG needs at least one AU; the dataset has {n}.')
  if use_gnn and not 1 <= top_k <= n:
    raise ValueError(f'config.model.top_k={top_k} must be in [1, {n}] (the number of AUs).')
  if similarity not in SIMILARITIES:
    raise ValueError(f'config.model.similarity={similarity!r}; expected one of {SIMILARITIES}.')
  if use_gnn and gnn_layers < 1:
    raise ValueError(f'config.model.gnn_layers={gnn_layers}; expected >= 1.')
  if axial_order not in AXIAL_ORDERS:
    raise ValueError(f'config.model.axial_order={axial_order!r}; expected one of '
                     f'{AXIAL_ORDERS}.')
  for key, value in (('node_dim', node_dim), ('rel_features', rel_features)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'config.model.{key}={value!r}; expected a positive int.')
  for key, value, sizes in (('mafg_kernel_sizes', mafg_kernel_sizes, tuple(mafg_kernel_sizes)),
                            ('mafg_square_kernel', mafg_square_kernel, (mafg_square_kernel,))):
    if not sizes or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in sizes):
      raise ValueError(f'config.model.{key}={value!r}; expected positive odd kernel sizes.')

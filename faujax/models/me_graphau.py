"""ME-GraphAU and OpenGraphAU: AU nodes, multi-dimensional edges and a gated graph.

Paper: Luo, Song, Xie, Shen, Gunes, "Learning Multi-dimensional Edge Feature-based AU Relation
Graph for Facial Action Unit Recognition", IJCAI 2022; the public code CVI-SZU/ME-GraphAU
(``model/ANFL.py`` stage 1, ``model/MEFL.py`` stage 2) and its OpenGraphAU variant (41 AUs,
``OpenGraphAU/model``). Facts and the places where faujax follows the code:
``docs/reference/model_details.md``, "ME-GraphAU".

  image (B, S, S, 3) -> trunk tokens (ResNet-50 at 224 px: (B, 49, 2048))
    -> global_linear: LinearBlock C_trunk -> C on every token              X (B, D, C)
    -> class_linears: one LinearBlock per AU on the tokens (AFG)           U (B, N, D, C)
       and its mean over the tokens                                         V (B, N, C)
  stage 1 (ANFL):
    -> gnn: the top-K dynamic graph layer (FGG; MACG eq. 5-9 is the same)  V' (B, N, C)
  stage 2 (MEFL):
    -> edge_extractor: GEM, two cross-attentions (``parts.edge_features``) E (B, N, N, C)
    -> gnn: two gated node-and-edge layers (``graph.gated_edge_graph``)    V', E'
    -> edge_fc: Linear C -> 4, the relation class of every AU pair (training only)
  -> head: cosine similarity of each node with a learnt vector (``parts.cosine_head``)
     au_probs (B, N [+ sub classes])

Outputs: ``au_probs`` (B, labels) in [0, 1] (thresholded at 0.5), for the weighted asymmetric
loss (``config.loss.name='asymmetric'``); stage 2 with ``edge_classifier`` adds
``edge_logits`` (B, N, N, 4), whose cross-entropy against the pair's relation 2 y_i + y_j is the
``edge`` loss term (weight ``config.loss.edge_weight``, the public ``--lam``).

OpenGraphAU (``info.label_names`` = ``faujax.labels.opengraphau_label_names()``): the nodes are
the 27 main AUs; each sided label 'AUL<k>' / 'AUR<k>' reads the node of 'AU<k>' with its own
vector (``CosineHead.sub_nodes``), and its gated layers use ``x + ReLU(BN(h))``
(``relu_before_residual=True``) and carry no edge classifier.

Two-stage training as the authors run it: stage 1 in one run (``config.model.stage=1``), then
stage 2 in another initialised from it (``config.init_from=<stage-1 workdir>``: every variable
whose path and shape match, as the public code's ``load_state_dict(strict=False)``);
``configs/me_graphau/``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.config_schema import frozen_mapping
from faujax.graph import dynamic_graph
from faujax.graph import gated_edge_graph
from faujax.models import trunk as trunk_lib
from faujax.models.parts.cosine_head import CosineHead
from faujax.models.parts.edge_features import EdgeFeatures
from faujax.models.parts.linear_block import LinearBlock, PerNodeLinearBlock, torch_bias_init

STAGES = (1, 2)
# Relation classes of an AU pair (i, j): 2 y_i + y_j (neither, only j, only i, both).
EDGE_CLASSES = 4
# The auxiliary loss terms this model trains with (``faujax.tasks``).
LOSS_TERMS = ('edge',)


def sided_labels(label_names: Sequence[str],
                 sided_nodes: Sequence[int] = ()) -> tuple[int, tuple[int, ...]]:
  """(number of main labels, the main node of each sided label) of a label list.

  Sided labels 'AUL<k>' / 'AUR<k>' (OpenGraphAU) come after every main label and read the node of
  'AU<k>', or the nodes ``sided_nodes`` names (one per sided label); other label lists have no
  sided labels.

  Raises:
    ValueError: a sided label before a main one, one whose main AU is not a label, or
      ``sided_nodes`` of the wrong length or range.
  """
  names = [str(n) for n in label_names]
  sided = [i for i, n in enumerate(names) if re.fullmatch(r'AU[LR]\d+', n)]
  if not sided:
    return len(names), ()
  first = sided[0]
  if sided != list(range(first, len(names))):
    raise ValueError(f'sided labels must follow every main label; got {names}.')
  main = names[:first]
  if sided_nodes:
    if len(sided_nodes) != len(names) - first or not all(0 <= k < first for k in sided_nodes):
      raise ValueError(f'config.model.sided_nodes={tuple(sided_nodes)}: expected one index in '
                       f'[0, {first}) for each of the {len(names) - first} sided labels.')
    return first, tuple(int(k) for k in sided_nodes)
  nodes = []
  for n in names[first:]:
    target = 'AU' + n[3:]
    if target not in main:
      raise ValueError(f'the sided label {n!r} reads the node of {target!r}, which is not among '
                       f'the main labels {main}.')
    nodes.append(main.index(target))
  return first, tuple(nodes)


def default_node_dim(trunk_name: str, trunk_width: int) -> int:
  """The public code's node width: a quarter of a ResNet's channels, half a transformer's."""
  return trunk_width // (2 if trunk_name.startswith(('swin', 'mae', 'vit')) else 4)


class MEGraphAU(nnx.Module):
  """The ME-GraphAU / OpenGraphAU AU detector (see the module docstring).

  Args:
    info: an AU label space; ``label_names`` in output order (OpenGraphAU: 27 main then 14
      sided).
    backbone: ``config.model.backbone`` (ResNet-50 in the paper; ResNet-18/101 released too).
    stage: 1 (ANFL: the top-K graph) or 2 (MEFL: edge features and the gated graph).
    node_dim: C, the width of the nodes and edges (0: the public code's, ``default_node_dim``).
    top_k: stage 1: K neighbours (4 BP4D, 3 DISFA and OpenGraphAU's config 4).
    similarity: stage 1: 'dot' (the public default) or 'cosine'.
    gnn_layers: stage 2: gated layers (2).
    relu_before_residual: stage 2: ``x + ReLU(BN(h))`` (OpenGraphAU) instead of
      ``ReLU(x + BN(h))`` (ME-GraphAU).
    edge_classifier: stage 2: the ``edge_fc`` head and its ``edge_logits`` (ME-GraphAU; not in
      OpenGraphAU).
    sided_nodes: the main node each sided label reads (empty: 'AUL<k>' reads 'AU<k>'). The public
      OpenGraphAU code reads 'AUL12' / 'AUR12' from AU11's node (its ``sub_list``; its README
      names them "nasolabial deepener", AU11): ``configs/me_graphau/opengraphau.py`` sets its
      list, which the released weights were trained with.
    dtype: compute dtype; parameters float32.
    rngs: initialisation.
  """

  def __init__(self, info: Any, *,
               backbone: Mapping[str, Any] = frozen_mapping({'name': 'resnet50'}),
               stage: int = 2, node_dim: int = 0, top_k: int = 4, similarity: str = 'dot',
               gnn_layers: int = 2, relu_before_residual: bool = False,
               edge_classifier: bool = True, sided_nodes: Sequence[int] = (),
               dtype: Any = jnp.float32, rngs: nnx.Rngs):
    if getattr(info, 'task', 'au') != 'au':
      raise ValueError(f"config.model.name='me_graphau' is an AU model; the dataset's task is "
                       f'{info.task!r}.')
    if stage not in STAGES:
      raise ValueError(f'config.model.stage={stage!r}; expected one of {STAGES}.')
    n, sub_nodes = sided_labels(info.label_names, sided_nodes)
    if stage == 1 and not 1 <= top_k <= n:
      raise ValueError(f'config.model.top_k={top_k} must be in [1, {n}] (the number of AUs).')
    if similarity not in dynamic_graph.METRICS:
      raise ValueError(f'config.model.similarity={similarity!r}; expected one of '
                       f'{dynamic_graph.METRICS}.')
    if stage == 2 and gnn_layers < 1:
      raise ValueError(f'config.model.gnn_layers={gnn_layers}; expected >= 1.')
    self.stage = stage
    self.num_nodes = n
    self.num_labels = int(info.num_labels)
    self.dtype = dtype
    self.backbone = trunk_lib.build(backbone, dtype=dtype, rngs=rngs)
    # Transformer trunks take the call's rngs for stochastic depth (the public code's drop path).
    self.trunk_rngs = 'rngs' in inspect.signature(type(self.backbone).__call__).parameters
    width = int(self.backbone.num_features)
    c = node_dim or default_node_dim(str(dict(backbone)['name']), width)
    if c < 2 or c % 2:
      raise ValueError(f'config.model.node_dim={c}; expected an even width >= 2.')
    self.node_dim = c
    self.global_linear = LinearBlock(width, c, dtype=dtype, rngs=rngs)
    self.class_linears = PerNodeLinearBlock(n, c, c, shared_input=True, dtype=dtype, rngs=rngs)
    if stage == 1:
      self.gnn = dynamic_graph.DynamicGraphLayer(n, c, k=top_k, metric=similarity, dtype=dtype,
                                                 rngs=rngs)
      self.edge_extractor = None
      self.edge_fc = None
    else:
      self.edge_extractor = EdgeFeatures(n, c, dtype=dtype, rngs=rngs)
      self.gnn = nnx.List([gated_edge_graph.GatedEdgeGraphLayer(
          n, c, relu_before_residual=relu_before_residual, dtype=dtype, rngs=rngs)
                           for _ in range(gnn_layers)])
      self.edge_fc = (nnx.Linear(c, EDGE_CLASSES, dtype=dtype, param_dtype=jnp.float32,
                                 kernel_init=nnx.initializers.xavier_uniform(),
                                 bias_init=torch_bias_init(c), rngs=rngs)
                      if edge_classifier else None)
    self.head = CosineHead(n, c, sub_nodes=sub_nodes, rngs=rngs)

  def __call__(self, batch: dict[str, jax.Array], *, train: bool,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
    images = batch['image']
    chex.assert_rank(images, 4)
    chex.assert_type(images, float)
    b = images.shape[0]
    fmap = self.backbone(images, train=train, **({'rngs': rngs} if self.trunk_rngs else {}))
    out = self.from_tokens(fmap.reshape(b, -1, fmap.shape[-1]), train=train)
    chex.assert_shape(out['au_probs'], (b, self.num_labels))
    return out

  def from_tokens(self, tokens: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """Everything after the trunk: its tokens (B, D, C_trunk) -> the outputs."""
    x = self.global_linear(tokens, train=train)                          # X (B, D, C)
    per_au = jnp.moveaxis(self.class_linears(x, train=train), 2, 1)      # U (B, N, D, C)
    nodes = per_au.mean(axis=2)                                          # V (B, N, C)
    out = {}
    if self.stage == 1:
      nodes = self.gnn(nodes, train=train)
    else:
      edges = self.edge_extractor(per_au, x, train=train)                # E (B, N, N, C)
      for layer in self.gnn:
        nodes, edges = layer(nodes, edges, train=train)
      if self.edge_fc is not None:
        out['edge_logits'] = self.edge_fc(edges).astype(jnp.float32)     # (B, N, N, 4)
    out['au_probs'] = self.head(nodes).astype(jnp.float32)
    return out


"""AU-GCN: landmark ROIs, per-ROI auto-encoders and a GCN over the AU relation graph.

Paper: Liu, Dong, Zhang, Wang, Dang, "Relation Modeling with Graph Convolutional Networks for
Facial Action Unit Detection" (``/work/shared/papers/au_gcn.md``). Facts the paper leaves open:
``docs/reference/model_details.md`` ("AU-GCN ROIs", "AU-GCN auto-encoders", "AU-GCN relation
graph", "AU-GCN training").

  image (B, S, S, 3), landmarks (B, P, 2)
    -> ROIs (sec. 3.2, ``parts.roi_nodes``): two n x n crops per EAC-Net AU region (one for
       AU9's), clamped inside the image, + the whole face resized to n x n  (B, R, n, n, 3)
       R = 19 on BP4D, 14 on DISFA
    -> one auto-encoder per ROI, vmapped (sec. 3.3, ``parts.roi_autoencoders``)
         latent Z_0 (B, R, d0), reconstruction (eq. 1), ROI logits (eq. 2)
    -> two graph convolutions Z_{i+1} = G Z_i W_i (eq. 6), d0 -> d1 -> d2,
       each followed by dropout then ReLU (sec. 3.5)                          Z_2 (B, R, d2)
    -> flatten -> FC -> C AU logits (sec. 3.6)                                 au_logits (B, C)

The graph G (sec. 3.4) is the model's constant ``graph`` (``AUGCN.prepare``, saved with the run),
computed once from the fold's training labels (``info.train_labels``): M_ij = P(AU j | AU i), M_sym = M + M^T (eq. 4), M_bool = [M_sym >=
``relation_threshold``] (eq. 5) (``relations.au_gcn_relation_matrix``), then the ROI graph with
self-loops, symmetric-pair edges, AU-AU edges and the face node linked to all
(``relations.roi_graph``). eq. 6 multiplies by the raw 0/1 graph (``graph_normalization='none'``);
any normalisation of ``faujax.graph.adjacency`` can be chosen instead.

Losses (``faujax.tasks``, AU task): eq. 7 weighted BCE + lambda2 eq. 8 weighted Dice on
``au_logits`` (``loss.name='bce_dice'``, ``loss.dice_weight`` = lambda2 = 4); eq. 2 on
``roi_logits`` with targets y * ``roi_label_mask`` (``loss.roi_weight``) and lambda1 eq. 1 on
``reconstruction`` / ``reconstruction_target`` (``loss.reconstruction_weight`` = lambda1 = 3),
together L_ROI of eq. 3. Two-stage training (sec. 4.1) is ``config.train.stages``.

Ablation rows of Table 4 (``config.ablation``, see ``ABLATIONS``):
  au_net          graph='none'      use_face=False  bce        (concat R latents -> FC)
  au_net+d        graph='none'      use_face=False  bce_dice
  au_gcn-f-d      graph='relation'  use_face=False  bce
  au_gcn-f        graph='relation'  use_face=False  bce_dice
  au_gcn-d        graph='relation'  use_face=True   bce
  full            graph='relation'  use_face=True   bce_dice
and faujax's control row ``identity_graph`` (the full model with G = I: the same layers and
widths without any message passing), which separates what the relation graph adds from what the
two extra per-node layers add.

Outputs: ``au_logits`` (B, C); ``roi_logits`` (B, R, C); ``roi_label_mask`` (B, R, C);
``reconstruction`` and ``reconstruction_target`` (B, R, n, n, 3); ``stat/roi_clamped`` (B,), the
fraction of the example's landmark ROIs whose centre was clamped into the image (logged as a
training statistic).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax import model_state
from faujax import relations
from faujax.config_schema import frozen_mapping
from faujax.graph import adjacency as adjacency_lib
from faujax.graph import gcn as gcn_lib
from faujax.models.parts import roi_nodes
from faujax.models.parts.roi_autoencoders import RoiAutoencoders

GRAPHS: tuple[str, ...] = ('relation', 'identity', 'none')

# The auxiliary loss terms this model trains with (``faujax.tasks.AUXILIARY_TERMS``).
LOSS_TERMS = ('roi', 'reconstruction')

# Table 4 rows: name -> the config keys they set (GCN, Dice D, whole face F).
ABLATIONS: dict[str, dict[str, Any]] = {
    name: {'model.graph': graph, 'model.use_face': face,
           'loss.name': 'bce_dice' if dice else 'bce'}
    for name, (graph, dice, face) in {
        'au_net': ('none', False, False),
        'au_net+d': ('none', True, False),
        'au_gcn-f-d': ('relation', False, False),
        'au_gcn-f': ('relation', True, False),
        'au_gcn-d': ('relation', False, True),
        'full': ('relation', True, True),
        'identity_graph': ('identity', True, True),
    }.items()}


# AU-GCN Table 1: M_bool on BP4D and DISFA (the paper's real training labels), rows = columns =
# the AUs in this order. For comparison with the graphs faujax computes (``table1_comparison``).
PAPER_TABLE1: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    'bp4d': ((1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24), (
        '110001000000', '110001100000', '001010000000', '000111111100', '000111111110',
        '110111111110', '010111111110', '000111111111', '000111111100', '000111111111',
        '000011110110', '000000010101')),
    'disfa': ((1, 2, 4, 6, 9, 12, 25, 26), (
        '11000000', '11000000', '00101000', '00010110', '00101000', '00010110', '00010111',
        '00000011')),
}


def table1_comparison(m_bool: np.ndarray, aus: Sequence[int], dataset: str) -> str:
  """Markdown: ``m_bool`` (eq. 5) beside the paper's Table 1 for ``dataset``, cell = 'ours/paper'."""
  paper_aus, rows = PAPER_TABLE1[dataset]
  if tuple(aus) != paper_aus:
    raise ValueError(f'aus {tuple(aus)} are not the Table 1 AUs of {dataset} {paper_aus}.')
  head = '| AU | ' + ' | '.join(str(a) for a in aus) + ' |'
  lines = [head, '|' + '---|' * (len(aus) + 1)]
  for i, a in enumerate(aus):
    cells = [f'{int(m_bool[i, j])}/{rows[i][j]}' for j in range(len(aus))]
    lines.append(f'| {a} | ' + ' | '.join(cells) + ' |')
  agree = np.mean([int(m_bool[i, j]) == int(rows[i][j]) for i in range(len(aus))
                   for j in range(len(aus))])
  return '\n'.join(lines) + f'\n\nAgreement with Table 1: {100 * agree:.0f} % of the cells.\n'


def relation_graph(info: Any, layout: roi_nodes.RoiLayout, threshold: float) -> np.ndarray:
  """AU-GCN sec. 3.4 ROI graph (R, R) int 0/1 of ``layout`` from the fold's training labels."""
  labels = info.train_labels
  if 'au' not in labels:
    raise ValueError(f'AU-GCN builds its graph from the training AU labels; the dataset '
                     f'{getattr(info, "name", "?")!r} gives {sorted(labels)}.')
  m_bool = relations.au_gcn_relation_matrix(labels['au'], threshold, labels.get('au_mask'))
  return relations.roi_graph(layout.specs, m_bool, layout.aus)


class AUGCN(nnx.Module):
  """The AU-GCN AU detector (see the module docstring).

  Args:
    info: the label space of an AU task; ``info.aus`` the AU numbers.
    constants: ``prepare``'s ``graph`` (R, R), the ROI graph G of sec. 3.4.
    roi_rules: AU centre rules of the ROIs ('eacnet' in the paper; 'jaanet').
    roi_size: n, the side of a ROI in input pixels (25 on the paper's 200 x 200 faces).
    use_face: the whole-face node F.
    single_roi_aus: AUs whose region is one ROI at the midpoint of its two centres (AU9: the
      paper's 14 DISFA ROIs, ``roi_nodes.SINGLE_ROI_AUS``); () gives every region two ROIs (15
      on DISFA).
    graph: 'relation' (the paper's G), 'identity' (G = I: no message passing) or 'none'
      (AU-Net: concatenate the R latents, FC to C).
    relation_threshold: h of eq. 5 on M_sym = P(j|i) + P(i|j) in [0, 2] (not given by the paper).
    graph_normalization: normalisation of G in eq. 6 ('none': the raw 0/1 graph).
    latent_dim: d0 (150).
    gcn_dims: (d1, d2) (30, 12).
    dropout: rate of the dropout after each graph convolution.
    ae_widths: channels of the auto-encoder's stride-2 convolutions.
    dtype: compute dtype; parameters float32.
    rngs: parameter initialisation.
  """

  def __init__(self, info: Any, *, constants: Mapping[str, np.ndarray] = frozen_mapping({}),
               roi_rules: str = 'eacnet', roi_size: int = 25, use_face: bool = True,
               single_roi_aus: Sequence[int] = roi_nodes.SINGLE_ROI_AUS,
               graph: str = 'relation', relation_threshold: float = 1.0,
               graph_normalization: str = 'none', latent_dim: int = 150,
               gcn_dims: Sequence[int] = (30, 12), dropout: float = 0.5,
               ae_widths: Sequence[int] = (16, 32, 20), dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    if getattr(info, 'task', 'au') != 'au':
      raise ValueError(f"config.model.name='au_gcn' is an AU model; the dataset's task is "
                       f'{info.task!r}.')
    _validate(graph=graph, roi_size=roi_size, relation_threshold=relation_threshold,
              graph_normalization=graph_normalization, latent_dim=latent_dim,
              gcn_dims=gcn_dims, dropout=dropout, ae_widths=ae_widths)
    aus = tuple(int(a) for a in info.aus)[:int(info.num_labels)]
    if len(aus) != info.num_labels:
      raise ValueError(f'AU-GCN needs the AU number of every label; the dataset has '
                       f'{info.num_labels} labels {list(info.label_names)} but aus={aus}.')
    self.layout = _layout(aus, roi_rules, use_face, single_roi_aus)
    self.num_labels = len(aus)
    self.roi_size = int(roi_size)
    self.graph_kind = graph
    self.graph_normalization = graph_normalization
    self.dtype = dtype
    r = self.layout.num_nodes
    self.membership = self.layout.membership
    if 'graph' not in constants or np.shape(constants['graph']) != (r, r):
      raise ValueError(f'AU-GCN needs the constant graph ({r}, {r}) of its {r} ROIs '
                       f'(AUGCN.prepare); got {np.shape(constants.get("graph"))}.')
    self.graph = model_state.Constant(jnp.asarray(constants['graph'], jnp.float32))
    self.autoencoders = RoiAutoencoders(r, size=roi_size, num_classes=self.num_labels,
                                        widths=tuple(ae_widths), latent_dim=latent_dim,
                                        dtype=dtype, rngs=rngs)
    if graph == 'none':
      self.gcn = None
      head_in = r * latent_dim
    else:
      dims = (latent_dim,) + tuple(int(d) for d in gcn_dims)
      self.gcn = nnx.List([gcn_lib.GraphConv(a, b, normalization=graph_normalization,
                                             dtype=dtype, rngs=rngs)
                           for a, b in zip(dims[:-1], dims[1:])])
      head_in = r * dims[-1]
    self.dropout = nnx.Dropout(dropout)
    self.head = nnx.Linear(head_in, self.num_labels, dtype=dtype, rngs=rngs)

  @property
  def adjacency(self) -> np.ndarray:
    """G (R, R) float32, the constant ROI graph (numpy)."""
    return np.asarray(self.graph[...])

  @staticmethod
  def prepare(info: Any, *, roi_rules: str = 'eacnet', use_face: bool = True,
              single_roi_aus: Sequence[int] = roi_nodes.SINGLE_ROI_AUS, graph: str = 'relation',
              relation_threshold: float = 1.0) -> dict[str, np.ndarray]:
    """The constant ``graph`` (R, R): sec. 3.4's ROI graph from the fold's training labels
    ('relation'), else the identity (no message passing). Options as the model's."""
    aus = tuple(int(a) for a in info.aus)[:int(info.num_labels)]
    layout = _layout(aus, roi_rules, use_face, single_roi_aus)
    if graph == 'relation':
      return {'graph': relation_graph(info, layout, relation_threshold).astype(np.float32)}
    return {'graph': np.eye(layout.num_nodes, dtype=np.float32)}

  def __call__(self, batch: dict[str, jax.Array], *, train: bool,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
    images, landmarks = batch['image'], batch['landmarks']
    chex.assert_rank(images, 4)
    chex.assert_type(images, float)
    b = images.shape[0]
    r, c = self.layout.num_nodes, self.num_labels
    patches, clamped = roi_nodes.crop_rois(images, landmarks, self.layout, self.roi_size)
    patches = jax.lax.stop_gradient(patches.astype(jnp.float32))
    z, recon, roi_logits = self.autoencoders(patches.astype(self.dtype))       # (B, R, d0)
    if self.gcn is not None:
      adj = self.graph[...]
      for layer in self.gcn:                                                   # eq. 6
        z = layer(z, adj)
        z = self.dropout(z, deterministic=not train or self.dropout.rate == 0.0, rngs=rngs)
        z = jax.nn.relu(z)
    logits = self.head(z.reshape(b, -1))
    chex.assert_shape(logits, (b, c))
    f32 = lambda x: x.astype(jnp.float32)
    return {
        'au_logits': f32(logits),
        'roi_logits': f32(roi_logits),
        'roi_label_mask': jnp.broadcast_to(jnp.asarray(self.membership), (b, r, c)),
        'reconstruction': f32(recon),
        'reconstruction_target': patches,
        'stat/roi_clamped': jnp.mean(clamped.astype(jnp.float32), axis=-1),
    }


def _layout(aus: tuple[int, ...], roi_rules: str, use_face: bool,
            single_roi_aus: Sequence[int]) -> roi_nodes.RoiLayout:
  """``roi_nodes.roi_layout`` of the config's ROI keys (errors name ``config.model.<key>``)."""
  if isinstance(single_roi_aus, (str, bytes)) or not all(
      isinstance(a, int) and not isinstance(a, bool) for a in single_roi_aus):
    raise ValueError(f'config.model.single_roi_aus={single_roi_aus!r}; expected a tuple of AU '
                     'numbers (ints), e.g. (9,) or ().')
  return roi_nodes.roi_layout(aus, rules=roi_rules, with_face=use_face,
                              single_aus=tuple(single_roi_aus))


def _validate(*, graph: str, roi_size: int, relation_threshold: float, graph_normalization: str,
              latent_dim: int, gcn_dims: Sequence[int], dropout: float,
              ae_widths: Sequence[int]) -> None:
  """Raises ValueError naming the config key of an inconsistent AU-GCN setting."""
  if graph not in GRAPHS:
    raise ValueError(f'config.model.graph={graph!r}; expected one of {GRAPHS}.')
  if not isinstance(roi_size, int) or roi_size < 4:
    raise ValueError(f'config.model.roi_size={roi_size!r}; expected an int >= 4 (pixels).')
  if not 0.0 <= relation_threshold <= 2.0:
    raise ValueError(f'config.model.relation_threshold={relation_threshold!r}; expected a value '
                     'in [0, 2] (M_sym = P(j|i) + P(i|j)).')
  if graph_normalization not in adjacency_lib.NORMALIZATIONS:
    raise ValueError(f'config.model.graph_normalization={graph_normalization!r}; expected one of '
                     f'{adjacency_lib.NORMALIZATIONS}.')
  for key, values in (('latent_dim', (latent_dim,)), ('gcn_dims', tuple(gcn_dims)),
                      ('ae_widths', tuple(ae_widths))):
    if not values or any(not isinstance(v, int) or v < 1 for v in values):
      raise ValueError(f'config.model.{key}={values!r}; expected positive ints.')
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f'config.model.dropout={dropout!r}; expected a rate in [0, 1).')

"""Graph-generated classifiers: label-node inputs ``H^0 (N, d)`` -> classifier rows ``W (N, D)``.

The ML-GCN idea (Chen et al. 2019) shared by SVML-RGCN and its SVML-GCN ablation: a stack of
graph layers over the N label nodes turns fixed node inputs into one classifier vector per label,
and the image logits are ``y = W f`` (SVML-RGCN eq. 1). Two layer kinds from ``faujax.graph``:

* ``'rgcn'``: R-GCN (SVML-RGCN eq. 7, ``faujax.graph.rgcn``) over a stack of relations
  ``(R, N, N)`` (SVML-RGCN: positive and negative, ``faujax.relations.svml_relations``), with
  ``c_{i,r} = |N_i^r|`` and the self-connection ``W_0``; no bias (eq. 7 has none).
* ``'gcn'``: GCN over one re-weighted correlation matrix (SVML-RGCN eq. 13-14,
  ``faujax.relations.mlgcn_adjacency``) with ML-GCN's normalisation ``D^-1/2 A^T D^-1/2``
  (``faujax.graph`` 'mlgcn'), no bias.

Widths ``d -> hidden_dim -> ... -> D`` (``num_layers`` layers; one layer maps ``d -> D``);
LeakyReLU between layers and none after the last, so the classifier rows can take either sign
(ML-GCN's choice; SVML-RGCN's eq. 7 leaves sigma open: docs/reference/model_details.md,
"SVML-RGCN model").
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax import model_state

from faujax.graph import gcn as gcn_lib
from faujax.graph import rgcn as rgcn_lib

LAYER_KINDS = ('rgcn', 'gcn')


class GraphClassifier(nnx.Module):
  """``h (N, d) -> W (N, out_features)`` through ``num_layers`` graph layers over a fixed graph.

  Args:
    in_features: d, the width of the node inputs.
    out_features: D, the width of the image feature the classifier rows multiply.
    graph: ``'rgcn'``: relations ``(R, N, N)`` (row = receiving node); ``'gcn'``: the
      re-weighted adjacency ``(N, N)``. Held as a ``model_state.Constant`` (not trained).
    kind: 'rgcn' or 'gcn'.
    num_layers: >= 1.
    hidden_dim: width of the hidden layers.
    leaky_slope: LeakyReLU slope between layers.
    rngs: parameter initialisation.
  """

  def __init__(self, in_features: int, out_features: int, graph: np.ndarray, *,
               kind: str = 'rgcn', num_layers: int = 2, hidden_dim: int = 2048,
               leaky_slope: float = 0.2, rngs: nnx.Rngs):
    if kind not in LAYER_KINDS:
      raise ValueError(f'GraphClassifier kind={kind!r}; expected one of {LAYER_KINDS}.')
    if num_layers < 1 or hidden_dim < 1:
      raise ValueError(f'GraphClassifier needs num_layers >= 1 and hidden_dim >= 1; got '
                       f'{num_layers}, {hidden_dim}.')
    g = np.asarray(graph, np.float32)
    expected_rank = 3 if kind == 'rgcn' else 2
    if g.ndim != expected_rank or g.shape[-1] != g.shape[-2]:
      raise ValueError(f"GraphClassifier kind={kind!r} needs a graph of shape "
                       f"{'(R, N, N)' if kind == 'rgcn' else '(N, N)'}; got {g.shape}.")
    self.graph = model_state.Constant(jnp.asarray(g))
    self.kind = kind
    self.num_layers = num_layers
    self.leaky_slope = leaky_slope
    widths = [in_features] + [hidden_dim] * (num_layers - 1) + [out_features]
    for i in range(num_layers):  # layer0, layer1, ...: the variable paths
      if kind == 'rgcn':
        layer = rgcn_lib.RelationalGraphConv(widths[i], widths[i + 1], g.shape[0],
                                             dtype=jnp.float32, rngs=rngs)
      else:
        layer = gcn_lib.GraphConv(widths[i], widths[i + 1], normalization='mlgcn',
                                  use_bias=False, dtype=jnp.float32, rngs=rngs)
      setattr(self, f'layer{i}', layer)

  @property
  def num_nodes(self) -> int:
    return int(self.graph.shape[-1])

  def __call__(self, h: jax.Array) -> jax.Array:
    """``h (N, in_features)`` float -> ``W (N, out_features)`` float32."""
    chex.assert_shape(h, (self.num_nodes, None))
    h = h.astype(jnp.float32)
    graph = self.graph[...]
    for i in range(self.num_layers):
      h = getattr(self, f'layer{i}')(h, graph)
      if i < self.num_layers - 1:
        h = jax.nn.leaky_relu(h, self.leaky_slope)
    return h

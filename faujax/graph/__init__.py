"""Graph layers of the five papers as pure functions with thin Flax NNX wrappers.

Conventions: node features ``(..., N, C)`` (leading batch dims broadcast),
adjacency ``(N, N)`` shared or ``(..., N, N)`` per sample, row = receiving
node. Every layer is ``<layer>_init(rng, ...) -> params`` (flat float32 dict)
plus ``<layer>_apply(params, inputs, ..., *, rng=None, deterministic=True)``;
all work under jit, vmap, grad, pmap and a ``dtype`` compute argument (e.g.
bfloat16). The thin Flax NNX wrappers (``GraphConv``, ``RelationalGraphConv``,
``GraphAttention``, ``DotProductGraphAttention``, ``DynamicGraphLayer``,
``PriorGraphConv``, ``GatedFusionCell``, ``MFB``) take their input sizes
explicitly and ``rngs``, hold exactly the ``<layer>_init`` dict as
``nnx.Param`` attributes of the same names (``params.declare_params``) and call
the same ``<layer>_apply``; those with dropout or a BatchNorm take
``train=...`` (and ``rngs`` for dropout) at call time.
"""

from faujax.graph.adjacency import NORMALIZATIONS, normalize_adjacency, neighbour_mask
from faujax.graph.dot_attention import (DotProductGraphAttention, dot_attention_apply,
                                        dot_attention_init)
from faujax.graph.dynamic_graph import (DynamicGraphLayer, dynamic_graph_apply,
                                        dynamic_graph_batch_stats_init, dynamic_graph_init,
                                        dynamic_graph_message, similarity, topk_adjacency)
from faujax.graph.gat import GraphAttention, gat_apply, gat_init
from faujax.graph.gated_fusion import (GatedFusionCell, gated_fusion_apply, gated_fusion_init,
                                       l2_normalize)
from faujax.graph.gcn import GraphConv, gcn_apply, gcn_init
from faujax.graph.learnable_adjacency import PriorGraphConv, prior_graph_apply, prior_graph_init
from faujax.graph.mfb import MFB, mfb_apply, mfb_init
from faujax.graph.rgcn import RelationalGraphConv, rgcn_apply, rgcn_init

__all__ = [
    'NORMALIZATIONS', 'normalize_adjacency', 'neighbour_mask',
    'DotProductGraphAttention', 'dot_attention_apply', 'dot_attention_init',
    'DynamicGraphLayer', 'dynamic_graph_apply', 'dynamic_graph_batch_stats_init',
    'dynamic_graph_init', 'dynamic_graph_message', 'similarity', 'topk_adjacency',
    'GraphAttention', 'gat_apply', 'gat_init',
    'GatedFusionCell', 'gated_fusion_apply', 'gated_fusion_init', 'l2_normalize',
    'GraphConv', 'gcn_apply', 'gcn_init',
    'PriorGraphConv', 'prior_graph_apply', 'prior_graph_init',
    'MFB', 'mfb_apply', 'mfb_init',
    'RelationalGraphConv', 'rgcn_apply', 'rgcn_init',
]

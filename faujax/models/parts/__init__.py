"""Reusable building blocks of the MACG model (Flax NNX), one concept per module.

``LinearBlock`` / ``PerNodeLinearBlock`` (the ME-GraphAU / MACG linear block), ``MAFG`` and
``MultiScaleAxialAttention`` (MACG eq. 1-4), ``CCFG`` and ``ChannelTopologyConv`` (eq. 10-12),
``CosineHead`` / ``cosine_probabilities`` (eq. 14). The top-K dynamic graph of eq. 5-9 lives in
``faujax.graph.dynamic_graph``. Every constructor takes its input sizes explicitly and ``rngs``;
the variable paths are unchanged from the earlier modules (docs/reference/model_details.md,
"LinearBlock", "MAFG", "CCFG", "MACG head").
"""

from faujax.models.parts.ccfg import CCFG, ChannelTopologyConv
from faujax.models.parts.cosine_head import CosineHead, cosine_probabilities
from faujax.models.parts.linear_block import LinearBlock, PerNodeLinearBlock
from faujax.models.parts.mafg import MAFG, MultiScaleAxialAttention

__all__ = [
    'CCFG', 'ChannelTopologyConv', 'CosineHead', 'cosine_probabilities', 'LinearBlock',
    'PerNodeLinearBlock', 'MAFG', 'MultiScaleAxialAttention',
]

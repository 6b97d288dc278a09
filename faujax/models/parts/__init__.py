"""Reusable building blocks of the MACG model (paper macg.md), one concept per module.

``LinearBlock`` / ``PerNodeLinearBlock`` (the ME-GraphAU / MACG linear block), ``MAFG`` and
``MultiScaleAxialAttention`` (MACG eq. 1-4), ``CCFG`` and ``ChannelTopologyConv`` (eq. 10-12),
``CosineHead`` / ``cosine_probabilities`` (eq. 14). The top-K dynamic graph of eq. 5-9 lives in
``faujax.graph.dynamic_graph``.
"""

from faujax.models.parts.ccfg import CCFG, ChannelTopologyConv
from faujax.models.parts.cosine_head import CosineHead, cosine_probabilities
from faujax.models.parts.linear_block import LinearBlock, PerNodeLinearBlock
from faujax.models.parts.mafg import MAFG, MultiScaleAxialAttention

__all__ = [
    'CCFG', 'ChannelTopologyConv', 'CosineHead', 'cosine_probabilities', 'LinearBlock',
    'PerNodeLinearBlock', 'MAFG', 'MultiScaleAxialAttention',
]

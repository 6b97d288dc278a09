"""Building blocks shared by the trunks, the graph-layer wrappers and the model parts (Flax NNX)."""

from faujax.layers.batch_norm import BatchNorm, batch_norm

__all__ = ['BatchNorm', 'batch_norm']

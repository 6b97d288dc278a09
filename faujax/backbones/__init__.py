"""CNN feature trunks (ResNet, DenseNet-121, JAA-Net stem, a small CNN) and their registry.

``build(name, *, dtype, rngs, **kwargs)`` returns a Flax NNX module and ``default_kwargs(name)`` its
options; see :mod:`faujax.backbones.registry`. Pretrained torchvision weights:
:mod:`faujax.tools.import_weights` writes them, :func:`faujax.backbones.pretrained.load_pretrained`
reads them.
"""

from __future__ import annotations

from faujax.backbones.registry import (ARCHS, DEFAULT_INPUT_SIZE, TORCHVISION_ARCHS, build,
                                       default_kwargs)

__all__ = ['ARCHS', 'DEFAULT_INPUT_SIZE', 'TORCHVISION_ARCHS', 'build', 'default_kwargs']

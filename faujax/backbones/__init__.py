"""CNN feature trunks (ResNet, DenseNet-121, JAA-Net stem, a small CNN) and their registry.

``build(name, *, dtype, bn_axis_name, **kwargs)`` returns a Flax module; see
:mod:`faujax.backbones.registry`. Pretrained torchvision weights: :mod:`faujax.tools.import_weights`
writes them, :func:`faujax.backbones.pretrained.load_pretrained` reads them.
"""

from __future__ import annotations

from faujax.backbones.registry import ARCHS, DEFAULT_INPUT_SIZE, TORCHVISION_ARCHS, build

__all__ = ['ARCHS', 'DEFAULT_INPUT_SIZE', 'TORCHVISION_ARCHS', 'build']

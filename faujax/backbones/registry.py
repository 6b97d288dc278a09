"""Name -> constructor registry of the CNN trunks (``faujax.backbones.build``).

Every trunk is a Flax linen module with ``__call__(x, *, train, return_intermediates=False)`` taking
NHWC images ``(B, H, W, 3)`` and returning the final feature map ``(B, h, w, C)`` (or ``(map,
{name: map})``), and a ``num_features`` property giving C.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from faujax.backbones.densenet import densenet121
from faujax.backbones.jaanet import JAANetStem
from faujax.backbones.resnet import resnet18, resnet34, resnet50, resnet101
from faujax.backbones.small_cnn import SmallCNN

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    'resnet18': resnet18,
    'resnet34': resnet34,
    'resnet50': resnet50,
    'resnet101': resnet101,
    'densenet121': densenet121,
    'jaanet_stem': JAANetStem,
    'small_cnn': SmallCNN,
}

ARCHS: tuple[str, ...] = tuple(_BUILDERS)

# Architectures whose torchvision ImageNet weights faujax.tools.import_weights converts.
TORCHVISION_ARCHS: tuple[str, ...] = ('resnet18', 'resnet34', 'resnet50', 'resnet101',
                                      'densenet121')

# Input side (pixels) each trunk is normally used at; used to trace parameter shapes.
DEFAULT_INPUT_SIZE: dict[str, int] = {
    'resnet18': 224, 'resnet34': 224, 'resnet50': 224, 'resnet101': 224, 'densenet121': 227,
    'jaanet_stem': 176, 'small_cnn': 64,
}


def build(name: str, /, *, dtype: Any = jnp.float32, bn_axis_name: str | None = None,
          **kwargs: Any) -> nn.Module:
  """Builds a trunk by name.

  Args:
    name: one of :data:`ARCHS`.
    dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``); parameters stay float32.
    bn_axis_name: mapped axis over which BatchNorm statistics are averaged under ``jax.pmap``
      (None under ``jax.jit``, where a sharded batch already gives global statistics).
    **kwargs: further module attributes (e.g. ``hierarchical=False`` for ``jaanet_stem``), including
      the Flax submodule ``name`` (``build('resnet50', name='backbone')``; ``name`` the architecture
      is positional-only).

  Returns:
    The (unbound) Flax module.

  Raises:
    ValueError: unknown ``name``.
  """
  if name not in _BUILDERS:
    raise ValueError(f'backbone name {name!r} is unknown; accepted names: {", ".join(ARCHS)}')
  return _BUILDERS[name](dtype=dtype, bn_axis_name=bn_axis_name, **kwargs)

"""Name -> constructor registry of the image trunks (``faujax.backbones.build``).

CNNs (ResNets, DenseNet-121, the JAA-Net stem, a small CNN) and the transformers of ME-GraphAU /
OpenGraphAU (``swin_tiny``, ``swin_small``, ``swin_base``: :mod:`faujax.backbones.swin`;
``mae_vit_base``: :mod:`faujax.backbones.vit`; these also take ``rngs=`` in ``__call__`` for
stochastic depth in training).

Every trunk is a Flax NNX module with ``__call__(x, *, train, return_intermediates=False)`` taking
NHWC images ``(B, H, W, 3)`` and returning the final feature map ``(B, h, w, C)`` (or ``(map,
{name: map})``), and a ``num_features`` attribute giving C. Its options are keyword arguments with
plain defaults (:func:`default_kwargs`), which the config code declares as
``config.model.backbone.<key>``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax.numpy as jnp
from flax import nnx

from faujax.backbones.densenet import densenet121
from faujax.backbones.jaanet import JAANetStem
from faujax.backbones.resnet import resnet18, resnet34, resnet50, resnet101
from faujax.backbones.small_cnn import SmallCNN
from faujax.backbones.swin import swin_base, swin_small, swin_tiny
from faujax.backbones.vit import mae_vit_base

_BUILDERS: dict[str, Callable[..., nnx.Module]] = {
    'resnet18': resnet18,
    'resnet34': resnet34,
    'resnet50': resnet50,
    'resnet101': resnet101,
    'densenet121': densenet121,
    'jaanet_stem': JAANetStem,
    'small_cnn': SmallCNN,
    'swin_tiny': swin_tiny,
    'swin_small': swin_small,
    'swin_base': swin_base,
    'mae_vit_base': mae_vit_base,
}

ARCHS: tuple[str, ...] = tuple(_BUILDERS)

# Architectures whose torchvision ImageNet weights faujax.tools.import_weights converts.
TORCHVISION_ARCHS: tuple[str, ...] = ('resnet18', 'resnet34', 'resnet50', 'resnet101',
                                      'densenet121')

# Input side (pixels) each trunk is normally used at.
DEFAULT_INPUT_SIZE: dict[str, int] = {
    'resnet18': 224, 'resnet34': 224, 'resnet50': 224, 'resnet101': 224, 'densenet121': 227,
    'jaanet_stem': 176, 'small_cnn': 64,
    'swin_tiny': 224, 'swin_small': 224, 'swin_base': 224, 'mae_vit_base': 224,
}

_NOT_OPTIONS = ('dtype', 'rngs')


def _check_name(name: str) -> None:
  if name not in _BUILDERS:
    raise ValueError(f'backbone name {name!r} is unknown; accepted names: {", ".join(ARCHS)}')


def default_kwargs(name: str) -> dict[str, Any]:
  """The options of trunk ``name`` with their defaults (``dtype`` and ``rngs`` excluded).

  Read from the constructor's signature, so the defaults are written once, in the trunk. Every
  value is a plain int, float, bool, string or tuple (ResNets and DenseNet-121 have none:
  ``{}``). ``build(name, rngs=..., **default_kwargs(name))`` equals ``build(name, rngs=...)``.

  Raises:
    ValueError: unknown ``name``.
  """
  _check_name(name)
  builder = _BUILDERS[name]
  # A class: its __init__ (NNX's module metaclass hides the signature of the class itself).
  fn = builder.__init__ if isinstance(builder, type) else builder
  out: dict[str, Any] = {}
  for param in inspect.signature(fn).parameters.values():
    if param.name in _NOT_OPTIONS + ('self',) or param.kind in (param.VAR_KEYWORD,
                                                                 param.VAR_POSITIONAL):
      continue
    if param.default is inspect.Parameter.empty:
      raise TypeError(f'backbone {name!r}: option {param.name!r} has no default')  # a code bug
    out[param.name] = param.default
  return out


def build(name: str, /, *, dtype: Any = jnp.float32, rngs: nnx.Rngs, **kwargs: Any) -> nnx.Module:
  """Builds a trunk by name.

  Args:
    name: one of :data:`ARCHS`.
    dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``); parameters stay float32.
    rngs: random streams for the initialisation (``nnx.Rngs(0)``).
    **kwargs: trunk options (keys of :func:`default_kwargs`, e.g. ``hierarchical=False`` for
      ``jaanet_stem``, ``widths=(8, 16)`` for ``small_cnn``).

  Returns:
    The NNX module, initialised.

  Raises:
    ValueError: unknown ``name``, or an option the trunk does not have.
  """
  _check_name(name)
  accepted = default_kwargs(name)
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise ValueError(
        f'backbone {name!r} has no option {", ".join(map(repr, unknown))} '
        f'(config.model.backbone); accepted options: {", ".join(accepted) or "none"}')
  return _BUILDERS[name](dtype=dtype, rngs=rngs, **kwargs)

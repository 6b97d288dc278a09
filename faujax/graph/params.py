"""Plain-dict parameter pytrees shared by the pure graph layers and their Flax NNX wrappers.

Every layer in ``faujax.graph`` is one pure function ``<layer>_apply(params, ...)``
with ``params`` a flat ``dict[str, Array]`` built by ``<layer>_init(rng, ...)``.
The NNX wrappers hold exactly that dict, one ``nnx.Param`` attribute per key with
the same name (``declare_params``), and call the same ``<layer>_apply`` with
``declared_params(module)``, so there is a single implementation of every layer
and the variable paths are the dict keys (``gnn_0/U_kernel``, ``gcn0/kernel``).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.layers import torch_init

Params = dict[str, chex.Array]

# Kernel initialisations of the graph layers' linear maps (``linear_kernel``): 'glorot' (Glorot
# uniform) or 'torch' (PyTorch's ``nn.Linear`` / 1 x 1 ``nn.Conv2d`` default, U(+-1/sqrt(fan_in)),
# ``faujax.layers.torch_init``; MGRR-Net sec. 4.2).
KERNEL_INITS: tuple[str, ...] = ('glorot', 'torch')

# The attribute of a wrapper that lists its declared parameter names (static, part of the graph).
_NAMES_ATTR = 'param_names'


def declare_params(module: nnx.Module, params: Params) -> None:
  """Holds every entry of ``params`` (a ``<layer>_init`` dict) as an ``nnx.Param`` of ``module``.

  Entry ``name`` becomes the attribute ``module.<name>`` (so its variable path is ``name``);
  the names are kept in ``module.param_names`` for ``declared_params``. Called once, in the
  wrapper's ``__init__``.

  Raises:
    ValueError: a name is not a plain identifier-like string, or it would overwrite an attribute
      the module already has.
  """
  names = tuple(params)
  for name in names:
    if not isinstance(name, str) or not name or name.startswith('_') or hasattr(module, name):
      raise ValueError(f'declare_params: cannot hold parameter {name!r} on '
                       f'{type(module).__name__} (empty, private or an existing attribute).')
    setattr(module, name, nnx.Param(jnp.asarray(params[name])))
  setattr(module, _NAMES_ATTR, names)


def declared_params(module: nnx.Module) -> Params:
  """The current values of the parameters ``declare_params`` put on ``module``, as a flat dict."""
  return {name: getattr(module, name)[...] for name in getattr(module, _NAMES_ATTR)}


def dropout_key(rngs: nnx.Rngs | None, deterministic: bool, where: str) -> chex.PRNGKey | None:
  """The key a wrapper passes to its ``<layer>_apply`` as ``rng``: None when deterministic, else
  the next key of the call-time ``rngs``' ``dropout`` stream.

  Raises:
    ValueError: dropout is active but ``rngs`` is None.
  """
  if deterministic:
    return None
  if rngs is None:
    raise ValueError(f'{where}: train=True with a dropout rate > 0 needs rngs (an nnx.Rngs with '
                     f'a dropout stream) at call time.')
  return rngs.dropout()


def cast_params(params: Params, dtype: Any | None) -> Params:
  """Casts every floating entry to ``dtype`` (no-op for ``None``)."""
  if dtype is None:
    return params
  return {k: (v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v)
          for k, v in params.items()}


def compute_dtype(dtype: Any | None, *arrays: chex.Array) -> Any:
  """``dtype`` if given, else the promoted floating dtype of ``arrays``."""
  if dtype is not None:
    return jnp.dtype(dtype)
  return jnp.result_type(*[a.dtype for a in arrays], jnp.float32) if arrays else jnp.float32


def check_features(x: chex.Array, in_dim: int | None = None, name: str = 'x') -> None:
  """Raises ValueError unless ``x`` is ``(..., N, C)`` (with ``C == in_dim``)."""
  shape = getattr(x, 'shape', None)
  if shape is None or len(shape) < 2:
    raise ValueError(f'{name} must have shape (..., N, C); got shape {shape}.')
  if in_dim is not None and shape[-1] != in_dim:
    raise ValueError(
        f'{name} has {shape[-1]} channels but the layer expects {in_dim} (shape {shape}).')


def glorot_uniform(rng: chex.PRNGKey, shape: tuple[int, ...], fan_in: int,
                   fan_out: int) -> chex.Array:
  """Glorot/Xavier uniform U(-a, a), a = sqrt(6 / (fan_in + fan_out)), float32."""
  limit = (6.0 / (fan_in + fan_out)) ** 0.5
  return jax.random.uniform(rng, shape, jnp.float32, -limit, limit)


def torch_linear_bias(rng: chex.PRNGKey, shape: tuple[int, ...], fan_in: int) -> chex.Array:
  """PyTorch ``nn.Linear`` default bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), float32."""
  return torch_init.uniform(rng, shape, fan_in)


def check_kernel_init(init: str) -> None:
  """Raises ValueError unless ``init`` is one of ``KERNEL_INITS``."""
  if init not in KERNEL_INITS:
    raise ValueError(f'kernel init {init!r}; expected one of {KERNEL_INITS}.')


def linear_kernel(rng: chex.PRNGKey, shape: tuple[int, ...], in_dim: int, out_dim: int,
                  init: str) -> chex.Array:
  """A linear map's kernel ``shape`` (``(..., in_dim, out_dim)``; leading axes stack independent
  maps), float32: Glorot uniform (``init='glorot'``) or torch's default (``'torch'``)."""
  check_kernel_init(init)
  if init == 'torch':
    return torch_init.uniform(rng, shape, in_dim)
  return glorot_uniform(rng, shape, in_dim, out_dim)

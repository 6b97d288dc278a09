"""Plain-dict parameter pytrees shared by the pure graph layers and their linen wrappers.

Every layer in ``faujax.graph`` is one pure function ``<layer>_apply(params, ...)``
with ``params`` a flat ``dict[str, Array]`` built by ``<layer>_init(rng, ...)``.
The linen wrappers declare exactly that dict with ``self.param`` (one entry per
key, initialised by the same ``<layer>_init``) and call the same
``<layer>_apply``, so there is a single implementation of every layer.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Params = dict[str, chex.Array]


def declare_params(module: nn.Module, init_fn: Callable[[chex.PRNGKey], Params]) -> Params:
  """Declares ``init_fn``'s dict entries as params of ``module`` and returns them.

  Must be called inside a compact method. Entry ``name`` is initialised as
  ``init_fn(rng_name)[name]`` where ``rng_name`` is the module's rng for that param.
  """
  shapes = jax.eval_shape(init_fn, jax.random.key(0))
  return {name: module.param(name, lambda rng, name=name: init_fn(rng)[name])
          for name in shapes}


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
  limit = 1.0 / fan_in ** 0.5
  return jax.random.uniform(rng, shape, jnp.float32, -limit, limit)

"""PyTorch's default initialisation of ``nn.Linear``, ``nn.Conv2d`` and ``nn.ConvTranspose2d``.

torch draws a layer's weight with ``kaiming_uniform_(weight, a=sqrt(5))``, i.e. U(-b, b) with
``b = gain * sqrt(3 / fan_in)``, ``gain = sqrt(2 / (1 + a^2)) = sqrt(1 / 3)``, so
``b = 1 / sqrt(fan_in)``; and its bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the same
``fan_in``. ``fan_in`` is what ``torch.nn.init._calculate_fan_in_and_fan_out`` reads from the
*torch* weight: ``weight.size(1) * receptive field``. For ``Linear`` (out, in) that is ``in``; for
``Conv2d`` (out, in/groups, kh, kw) it is ``in/groups * kh * kw``; for ``ConvTranspose2d``, whose
weight is (in, out/groups, kh, kw), it is ``out/groups * kh * kw`` -- the *output* channels.

MGRR-Net trains "with the default initializer of PyTorch" (sec. 4.2); ``config.model.init``
selects it (docs/reference/model_details.md, "MGRR-Net", initialisation).

Flax layouts of the kernels: ``nnx.Linear`` (in, out), ``nnx.Conv`` (kh, kw, in/groups, out),
``nnx.ConvTranspose`` (kh, kw, in, out). ``fan_in`` below takes the Flax kernel shape and the
torch layer ``kind`` it stands for, so the bounds are torch's whatever the layout.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp

# The torch layers whose default initialisation this module reproduces.
LAYER_KINDS: tuple[str, ...] = ('linear', 'conv', 'conv_transpose')

Initializer = Callable[..., jax.Array]


def fan_in(kernel_shape: Sequence[int], kind: str, groups: int = 1) -> int:
  """torch's ``fan_in`` of the layer whose Flax kernel has ``kernel_shape``.

  Args:
    kernel_shape: 'linear' (..., in, out) (leading axes: a stack of independent layers);
      'conv' (kh, kw, in/groups, out); 'conv_transpose' (kh, kw, in, out).
    kind: one of ``LAYER_KINDS``.
    groups: the convolution's groups (torch's ``groups``).
  """
  shape = tuple(int(d) for d in kernel_shape)
  if kind not in LAYER_KINDS:
    raise ValueError(f'torch layer kind {kind!r}; expected one of {LAYER_KINDS}.')
  if kind == 'linear':
    if len(shape) < 2:
      raise ValueError(f'a linear kernel is (..., in, out); got shape {shape}.')
    return shape[-2]
  if len(shape) < 3:
    raise ValueError(f'a {kind} kernel is (*spatial, in, out); got shape {shape}.')
  receptive = math.prod(shape[:-2])
  if kind == 'conv':
    return shape[-2] * receptive
  if shape[-1] % groups:
    raise ValueError(f'groups={groups} must divide the {shape[-1]} output channels.')
  return shape[-1] // groups * receptive


def bound(fan: int) -> float:
  """``1 / sqrt(fan_in)``: the half-width of torch's default weight and bias draws."""
  if fan < 1:
    raise ValueError(f'fan_in must be >= 1; got {fan}.')
  return 1.0 / math.sqrt(fan)


def uniform(rng: chex.PRNGKey, shape: Sequence[int], fan: int,
            dtype: Any = jnp.float32) -> jax.Array:
  """U(-1/sqrt(fan), 1/sqrt(fan)) of ``shape``: a torch default weight or bias draw."""
  b = bound(fan)
  shape = tuple(int(d) for d in shape)
  # Drawn flat and reshaped: the same values as drawing ``shape`` directly, but XLA's CPU backend
  # compiles the flat draw many times faster (seconds per rank-4 kernel shape otherwise).
  return jax.random.uniform(rng, (math.prod(shape),), dtype, -b, b).reshape(shape)


def kernel_init(kind: str, groups: int = 1) -> Initializer:
  """A Flax initializer ``(key, shape, dtype)`` of torch's default weight for a layer ``kind``
  (``fan`` from the kernel shape, ``fan_in``)."""
  fan_in((1, 1, 1), kind, 1)  # validates ``kind``

  def init(key: chex.PRNGKey, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return uniform(key, shape, fan_in(shape, kind, groups), dtype)

  return init


def bias_init(fan: int) -> Initializer:
  """A Flax initializer ``(key, shape, dtype)`` of torch's default bias of a layer with
  ``fan_in = fan`` (``fan_in`` of its kernel shape)."""
  bound(fan)  # validates ``fan``

  def init(key: chex.PRNGKey, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return uniform(key, shape, fan, dtype)

  return init

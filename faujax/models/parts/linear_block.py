"""LinearBlock: Linear -> BatchNorm over channels -> ReLU (ME-GraphAU / MACG "linear block").

MACG eq. 4 (phi_i of MAFG), eq. 12 (phi_i of CCFG) and eq. 13 (the fusion "Post" layer) all use this
block (reference-facts "LinearBlock"): a fully connected layer whose kernel is drawn from
N(0, sqrt(2 / out_features)) (bias: PyTorch's Linear default U(+-1/sqrt(in_features))), a
BatchNorm1d over the output channels (statistics per channel over every other axis, e.g. batch and
tokens) and a ReLU; dropout 0 by default.

``LinearBlock`` maps ``(..., C_in) -> (..., C_out)``. ``PerNodeLinearBlock`` holds N independent
blocks (one per AU) as stacked parameters and applies block ``i`` to node ``i``:
``(B, ..., C_in)`` (the same input for every node) or ``(B, ..., N, C_in)`` (one input per node)
-> ``(B, ..., N, C_out)``. Its BatchNorm normalises each (node, channel) pair over the remaining
axes, which is exactly N separate BatchNorm1d layers; one einsum instead of N small matmuls.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


def linear_kernel_init(out_features: int) -> Any:
  """N(0, sqrt(2 / out_features)) for a kernel of any shape (float32)."""
  std = (2.0 / out_features) ** 0.5

  def init(rng: chex.PRNGKey, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return std * jax.random.normal(rng, shape, dtype)
  return init


def torch_bias_init(in_features: int) -> Any:
  """PyTorch ``nn.Linear`` bias default U(-1/sqrt(in), 1/sqrt(in))."""
  limit = 1.0 / in_features ** 0.5

  def init(rng: chex.PRNGKey, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(rng, shape, dtype, -limit, limit)
  return init


def _check_features(features: int, name: str) -> None:
  if not isinstance(features, int) or features <= 0:
    raise ValueError(f'{name}.features must be a positive int; got {features!r}.')


class LinearBlock(nn.Module):
  """Linear -> BatchNorm1d(channels) -> ReLU: ``(..., C_in) -> (..., features)``.

  Attributes:
    features: output channels.
    dropout: dropout rate on the input (0 in ME-GraphAU / MACG).
    momentum: BatchNorm running-average momentum (Flax convention; 0.9 == torch 0.1).
    epsilon: BatchNorm epsilon.
    dtype: compute dtype; parameters stay float32.
    bn_axis_name: pmap axis over which BatchNorm statistics are averaged.
  """

  features: int
  dropout: float = 0.0
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    _check_features(self.features, 'LinearBlock')
    if x.ndim < 2:
      raise ValueError(f'LinearBlock input x must have shape (B, ..., C); got shape {x.shape}.')
    chex.assert_type(x, float)
    x = nn.Dropout(self.dropout, deterministic=not train or self.dropout == 0.0)(x)
    x = nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=linear_kernel_init(self.features),
                 bias_init=torch_bias_init(x.shape[-1]), name='fc')(x)
    x = nn.BatchNorm(use_running_average=not train, axis=-1, momentum=self.momentum,
                     epsilon=self.epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                     axis_name=self.bn_axis_name, name='bn')(x)
    return nn.relu(x)


class PerNodeLinearBlock(nn.Module):
  """N independent LinearBlocks, block ``i`` applied to node ``i`` (MACG eq. 4 / eq. 12 phi_i).

  Parameters: ``kernel`` (N, C_in, C_out), ``bias`` (N, C_out) and ``bn`` scale / bias (N, C_out),
  i.e. the parameters of N ``LinearBlock``s stacked on a leading node axis.

  Attributes:
    num_nodes: N (number of AUs).
    features: output channels of every block.
    shared_input: True: ``x`` is ``(B, ..., C_in)`` and every block reads it; False: ``x`` is
      ``(B, ..., N, C_in)``.
    dropout, momentum, epsilon, dtype, bn_axis_name: as ``LinearBlock``.
  """

  num_nodes: int
  features: int
  shared_input: bool = True
  dropout: float = 0.0
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """``(B, ..., [N,] C_in) -> (B, ..., N, features)``."""
    _check_features(self.features, 'PerNodeLinearBlock')
    _check_features(self.num_nodes, 'PerNodeLinearBlock.num_nodes')
    min_rank = 2 if self.shared_input else 3
    if x.ndim < min_rank:
      raise ValueError(f'PerNodeLinearBlock input x must have rank >= {min_rank} '
                       f'(shared_input={self.shared_input}); got shape {x.shape}.')
    if not self.shared_input and x.shape[-2] != self.num_nodes:
      raise ValueError(f'PerNodeLinearBlock input x must have {self.num_nodes} nodes on axis -2; '
                       f'got shape {x.shape}.')
    chex.assert_type(x, float)
    c_in = x.shape[-1]
    kernel = self.param('kernel', linear_kernel_init(self.features),
                        (self.num_nodes, c_in, self.features), jnp.float32)
    bias = self.param('bias', torch_bias_init(c_in), (self.num_nodes, self.features), jnp.float32)
    x = nn.Dropout(self.dropout, deterministic=not train or self.dropout == 0.0)(x)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    if self.shared_input:
      y = jnp.einsum('...c,nco->...no', x, kernel)
    else:
      y = jnp.einsum('...nc,nco->...no', x, kernel)
    y = y + bias.astype(self.dtype)
    y = nn.BatchNorm(use_running_average=not train, axis=(-2, -1), momentum=self.momentum,
                     epsilon=self.epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                     axis_name=self.bn_axis_name, name='bn')(y)
    return nn.relu(y)

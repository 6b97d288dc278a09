"""LinearBlock: Linear -> BatchNorm over channels -> ReLU (ME-GraphAU / MACG "linear block").

MACG eq. 4 (phi_i of MAFG), eq. 12 (phi_i of CCFG) and eq. 13 (the fusion "Post" layer) all use this
block (docs/reference/model_details.md, "LinearBlock"): a fully connected layer whose kernel is
drawn from N(0, sqrt(2 / out_features)) (bias: PyTorch's Linear default U(+-1/sqrt(in_features))), a
BatchNorm1d over the output channels (statistics per channel over every other axis, e.g. batch and
tokens) and a ReLU; dropout 0 by default.

``LinearBlock`` maps ``(..., C_in) -> (..., C_out)``. ``PerNodeLinearBlock`` holds N independent
blocks (one per AU) as stacked parameters and applies block ``i`` to node ``i``:
``(B, ..., C_in)`` (the same input for every node) or ``(B, ..., N, C_in)`` (one input per node)
-> ``(B, ..., N, C_out)``. Its BatchNorm normalises each (node, channel) pair over the remaining
axes, which is exactly N separate BatchNorm1d layers; one einsum instead of N small matmuls.

Both are Flax NNX modules; every BatchNorm is ``faujax.layers.BatchNorm`` (child ``bn``). The
variable paths are unchanged (checkpoints keep loading): ``fc/kernel``, ``fc/bias``, ``bn/scale``,
``bn/bias`` (params), ``bn/mean``, ``bn/var`` (batch_stats); ``PerNodeLinearBlock``: ``kernel``,
``bias``, ``bn/...``.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax import layers


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


def _check_positive(value: int, name: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f'{name} must be a positive int; got {value!r}.')


def _check_dropout(rate: float, name: str) -> None:
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'{name} must be in [0, 1); got {rate!r}.')


class LinearBlock(nnx.Module):
  """Linear -> BatchNorm1d(channels) -> ReLU: ``(..., in_features) -> (..., features)``.

  Args:
    in_features: input channels C_in.
    features: output channels.
    dropout: dropout rate on the input (0 in ME-GraphAU / MACG); active when ``train`` is True and
      then needs ``rngs`` (a ``dropout`` stream) at call time.
    momentum: BatchNorm running-average momentum (Flax convention; 0.9 == torch 0.1).
    epsilon: BatchNorm epsilon.
    dtype: compute dtype; parameters stay float32.
    rngs: parameter initialisation.

  Children: ``fc`` (``nnx.Linear``, kernel N(0, sqrt(2 / features)), bias
  U(+-1/sqrt(in_features))) and ``bn`` (``faujax.layers.BatchNorm(features)``).
  """

  def __init__(self, in_features: int, features: int, *, dropout: float = 0.0,
               momentum: float = 0.9, epsilon: float = 1e-5, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    _check_positive(in_features, 'LinearBlock in_features')
    _check_positive(features, 'LinearBlock features')
    _check_dropout(dropout, 'LinearBlock dropout')
    self.in_features = in_features
    self.features = features
    self.dropout = dropout
    self.dtype = dtype
    self.fc = nnx.Linear(in_features, features, dtype=dtype, param_dtype=jnp.float32,
                         kernel_init=linear_kernel_init(features),
                         bias_init=torch_bias_init(in_features), rngs=rngs)
    self.bn = layers.BatchNorm(features, momentum=momentum, epsilon=epsilon, dtype=dtype,
                               rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
    if x.ndim < 2 or x.shape[-1] != self.in_features:
      raise ValueError(f'LinearBlock input x must have shape (B, ..., {self.in_features}); got '
                       f'shape {x.shape}.')
    chex.assert_type(x, float)
    x = nnx.Dropout(self.dropout)(x, deterministic=not train or self.dropout == 0.0, rngs=rngs)
    x = self.fc(x)
    x = self.bn(x, train=train)
    return jax.nn.relu(x)


class PerNodeLinearBlock(nnx.Module):
  """N independent LinearBlocks, block ``i`` applied to node ``i`` (MACG eq. 4 / eq. 12 phi_i).

  Parameters: ``kernel`` (N, C_in, C_out), ``bias`` (N, C_out) and the child ``bn``
  (``faujax.layers.BatchNorm((N, C_out), feature_axes=(-2, -1))``: scale / bias (N, C_out)), i.e.
  the parameters of N ``LinearBlock``s stacked on a leading node axis.

  Args:
    num_nodes: N (number of AUs).
    in_features: input channels C_in.
    features: output channels of every block.
    shared_input: True: ``x`` is ``(B, ..., C_in)`` and every block reads it; False: ``x`` is
      ``(B, ..., N, C_in)``.
    dropout, momentum, epsilon, dtype, rngs: as ``LinearBlock``.
  """

  def __init__(self, num_nodes: int, in_features: int, features: int, *,
               shared_input: bool = True, dropout: float = 0.0, momentum: float = 0.9,
               epsilon: float = 1e-5, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    _check_positive(num_nodes, 'PerNodeLinearBlock num_nodes')
    _check_positive(in_features, 'PerNodeLinearBlock in_features')
    _check_positive(features, 'PerNodeLinearBlock features')
    _check_dropout(dropout, 'PerNodeLinearBlock dropout')
    self.num_nodes = num_nodes
    self.in_features = in_features
    self.features = features
    self.shared_input = shared_input
    self.dropout = dropout
    self.dtype = dtype
    self.kernel = nnx.Param(linear_kernel_init(features)(
        rngs.params(), (num_nodes, in_features, features), jnp.float32))
    self.bias = nnx.Param(torch_bias_init(in_features)(
        rngs.params(), (num_nodes, features), jnp.float32))
    self.bn = layers.BatchNorm((num_nodes, features), feature_axes=(-2, -1), momentum=momentum,
                               epsilon=epsilon, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
    """``(B, ..., [N,] C_in) -> (B, ..., N, features)``."""
    min_rank = 2 if self.shared_input else 3
    if x.ndim < min_rank:
      raise ValueError(f'PerNodeLinearBlock input x must have rank >= {min_rank} '
                       f'(shared_input={self.shared_input}); got shape {x.shape}.')
    if not self.shared_input and x.shape[-2] != self.num_nodes:
      raise ValueError(f'PerNodeLinearBlock input x must have {self.num_nodes} nodes on axis -2; '
                       f'got shape {x.shape}.')
    if x.shape[-1] != self.in_features:
      raise ValueError(f'PerNodeLinearBlock input x must have {self.in_features} channels on '
                       f'axis -1; got shape {x.shape}.')
    chex.assert_type(x, float)
    x = nnx.Dropout(self.dropout)(x, deterministic=not train or self.dropout == 0.0, rngs=rngs)
    x = x.astype(self.dtype)
    kernel = self.kernel[...].astype(self.dtype)
    if self.shared_input:
      y = jnp.einsum('...c,nco->...no', x, kernel)
    else:
      y = jnp.einsum('...nc,nco->...no', x, kernel)
    y = y + self.bias[...].astype(self.dtype)
    y = self.bn(y, train=train)
    return jax.nn.relu(y)

"""BatchNorm over any feature axes: one pure function and its Flax NNX module.

Every BatchNorm in faujax is this one (trunks, LinearBlocks, the node-axis norm of the top-K graph
layer, the per-patch norms of the JAA-Net stem), so one mechanism makes their statistics global
under every parallel mode: ``faujax.parallel.sync_batch_norm`` sets ``axis_name`` on each of them
before a ``jax.pmap`` step is traced; under ``jax.jit`` over a sharded batch the mean is global
without it. No model takes a parallel-mode argument.

Maths (PyTorch ``BatchNorm*d`` / Flax linen ``nn.BatchNorm`` with ``use_fast_variance``):
training uses the batch statistics over every axis that is not a feature axis,
``mu = E[x]``, ``sigma^2 = max(E[x^2] - mu^2, 0)`` (the biased variance), averaged over
``axis_name`` when set; ``y = (x - mu) / sqrt(sigma^2 + eps) * gamma + beta``; the running averages
become ``m' = momentum m + (1 - momentum) mu`` and ``v' = momentum v + (1 - momentum) s^2``
(Flax momentum 0.9 == torch momentum 0.1). The running variance's ``s^2`` is the biased
``sigma^2`` by default (Flax linen), or with ``unbiased_var=True`` the unbiased
``n / (n - 1) sigma^2`` that PyTorch's ``BatchNorm*d`` tracks (n: the number of values averaged
per feature, over every device under ``axis_name``); the normalisation itself uses the biased
``sigma^2`` either way, as both libraries do. The run's ``config.unbiased_running_var`` sets it
on every BatchNorm of the model (``use_unbiased_running_var``; on in the torch-parity recipes,
docs/reference/model_details.md, "Reference-code parity switches"). Evaluation normalises with the
running averages.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def _feature_axes(ndim: int, feature_axes: int | Sequence[int]) -> tuple[int, ...]:
  axes = (feature_axes,) if isinstance(feature_axes, int) else tuple(feature_axes)
  axes = tuple(sorted(a % ndim for a in axes))
  if len(set(axes)) != len(axes):
    raise ValueError(f'BatchNorm feature_axes {feature_axes} repeat an axis (x has rank {ndim}).')
  return axes


def batch_norm(x: Array, scale: Array | None, bias: Array | None, mean: Array, var: Array, *,
               feature_axes: int | Sequence[int] = -1, train: bool, momentum: float = 0.9,
               epsilon: float = 1e-5, axis_name: str | None = None, unbiased_var: bool = False,
               dtype: Any | None = None) -> tuple[Array, Array, Array]:
  """Batch normalisation of ``x`` with per-feature ``scale`` / ``bias`` and running statistics.

  Args:
    x: any shape; ``feature_axes`` name the axes that index the features.
    scale, bias: shape ``tuple(x.shape[a] for a in feature_axes)`` (or None: 1 and 0).
    mean, var: running statistics, the same shape, float32.
    feature_axes: an axis or axes of ``x`` (-1: channels last; -2: the node axis of MACG eq. 9;
      (-2, -1): one norm per (node, channel), i.e. N separate BatchNorm1d layers).
    train: batch statistics and updated running statistics if True, else the running statistics.
    momentum, epsilon: as Flax linen (momentum 0.9 == torch 0.1), eps 1e-5 (torch's default).
    axis_name: a mapped axis (``jax.pmap``) over which the batch statistics are averaged.
    unbiased_var: the running variance averages ``n / (n - 1) sigma^2`` (PyTorch) instead of the
      biased ``sigma^2`` (Flax); n is the count of values per feature (times the devices of
      ``axis_name``) and must then be > 1.
    dtype: output dtype (default ``x.dtype``); statistics are computed in float32.

  Returns:
    ``(y, new_mean, new_var)``; in eval mode the statistics are returned unchanged.
  """
  axes = _feature_axes(x.ndim, feature_axes)
  feature_shape = tuple(x.shape[a] for a in axes)
  if mean.shape != feature_shape:
    raise ValueError(f'BatchNorm statistics have shape {mean.shape}, but x {x.shape} has feature '
                     f'shape {feature_shape} on axes {axes}.')
  reduce_axes = tuple(a for a in range(x.ndim) if a not in axes)
  xf = x.astype(jnp.float32)
  if train:
    mu = jnp.mean(xf, axis=reduce_axes)
    mu2 = jnp.mean(xf * xf, axis=reduce_axes)
    if axis_name is not None:
      mu, mu2 = jax.lax.pmean((mu, mu2), axis_name)
    sigma2 = jnp.maximum(mu2 - mu * mu, 0.0)
    tracked = sigma2
    if unbiased_var:
      n = 1
      for a in reduce_axes:
        n *= x.shape[a]
      if axis_name is not None:
        n *= jax.lax.axis_size(axis_name)
      if n < 2:
        raise ValueError(f'BatchNorm with unbiased_var needs more than one value per feature in '
                         f'training (PyTorch refuses it too); x has shape {x.shape}.')
      tracked = sigma2 * (n / (n - 1))
    new_mean = momentum * mean + (1.0 - momentum) * mu
    new_var = momentum * var + (1.0 - momentum) * tracked
  else:
    mu, sigma2, new_mean, new_var = mean, var, mean, var
  # Broadcast the feature-shaped statistics back to x's rank.
  shape = [1] * x.ndim
  for a in axes:
    shape[a] = x.shape[a]
  mul = jax.lax.rsqrt(sigma2 + epsilon)
  if scale is not None:
    mul = mul * scale
  y = (xf - mu.reshape(shape)) * mul.reshape(shape)
  if bias is not None:
    y = y + bias.reshape(shape)
  return y.astype(dtype or x.dtype), new_mean, new_var


class BatchNorm(nnx.Module):
  """NNX BatchNorm over ``feature_axes`` (see ``batch_norm``); parameters and statistics float32.

  Variables: ``scale`` / ``bias`` (``nnx.Param``, ones / zeros unless ``scale_init`` says
  otherwise), ``mean`` / ``var`` (``nnx.BatchStat``, zeros / ones), all of shape
  ``feature_shape``. ``axis_name`` is None at construction; the training code sets it for
  ``jax.pmap`` (``faujax.parallel.sync_batch_norm``). ``unbiased_var`` (see ``batch_norm``) is
  False at construction; ``use_unbiased_running_var`` sets it on a whole model.
  """

  def __init__(self, feature_shape: int | Sequence[int], *,
               feature_axes: int | Sequence[int] = -1, momentum: float = 0.9,
               epsilon: float = 1e-5, dtype: Any | None = None, use_scale: bool = True,
               use_bias: bool = True,
               scale_init: Callable[..., Array] = nnx.initializers.ones,
               rngs: nnx.Rngs):
    shape = (feature_shape,) if isinstance(feature_shape, int) else tuple(feature_shape)
    n_axes = 1 if isinstance(feature_axes, int) else len(tuple(feature_axes))
    if len(shape) != n_axes:
      raise ValueError(f'BatchNorm feature_shape {shape} needs one size per feature axis '
                       f'{feature_axes}.')
    self.feature_axes = feature_axes
    self.momentum = momentum
    self.epsilon = epsilon
    self.dtype = dtype
    self.axis_name: str | None = None
    self.unbiased_var = False
    self.scale = nnx.Param(scale_init(rngs.params(), shape, jnp.float32)) if use_scale else None
    self.bias = nnx.Param(jnp.zeros(shape, jnp.float32)) if use_bias else None
    self.mean = nnx.BatchStat(jnp.zeros(shape, jnp.float32))
    self.var = nnx.BatchStat(jnp.ones(shape, jnp.float32))

  def __call__(self, x: Array, *, train: bool) -> Array:
    y, mean, var = batch_norm(
        x, None if self.scale is None else self.scale[...],
        None if self.bias is None else self.bias[...], self.mean[...], self.var[...],
        feature_axes=self.feature_axes, train=train, momentum=self.momentum,
        epsilon=self.epsilon, axis_name=self.axis_name, unbiased_var=self.unbiased_var,
        dtype=self.dtype)
    if train:
      self.mean[...] = mean
      self.var[...] = var
    return y


def use_unbiased_running_var(model: nnx.Module, unbiased: bool = True) -> int:
  """Sets ``unbiased_var`` on every ``BatchNorm`` of ``model`` (in place): their running variance
  then tracks PyTorch's unbiased ``n / (n - 1) sigma^2`` (``unbiased=True``) or the biased
  ``sigma^2`` (False, the default of a new BatchNorm). ``config.unbiased_running_var`` calls it
  when the model is created (``faujax.initialization.create_model``). Returns the number of
  BatchNorms."""
  count = 0
  for _, module in nnx.iter_modules(model):
    if isinstance(module, BatchNorm):
      module.unbiased_var = bool(unbiased)
      count += 1
  return count

"""ResNet-18/34/50/101 feature trunks with torchvision's exact layout (He et al., 2016), Flax NNX.

Used as the image backbone of MACG and SVML-RGCN (both ResNet-50 at 224 px, giving a 7x7x2048 map).

Layout follows torchvision's ``resnet*`` (the "v1.5" variant): the stride of a bottleneck stage sits
in its 3x3 convolution, the projection shortcut is conv1x1(stride) + BN, all convolutions are
bias-free, padding is explicit (``((3, 3), (3, 3))`` for the 7x7 stem, 1 for 3x3 convs, max-pool 3x3
stride 2 padding 1 with -inf padding as in torch). The variable tree mirrors torchvision's
state-dict names one to one (``layer1.0.conv1.weight`` <-> ``params/layer1/0/conv1/kernel``,
``layer2.0.downsample.0.weight`` <-> ``params/layer2/0/downsample/0/kernel``) so that
:mod:`faujax.tools.import_weights` converts weights by name. There is no classifier head (``fc``).

Shapes: input ``(B, H, W, 3)`` NHWC float; output ``(B, ceil(H/32), ceil(W/32), 512 * expansion)``.

BatchNorm is :class:`faujax.layers.BatchNorm` with torch's defaults (torch momentum 0.1 == momentum
0.9 here, eps 1e-5). Its batch statistics are made global under ``jax.pmap`` by the training code
(``axis_name`` set on every BatchNorm); under ``jax.jit`` with a sharded batch they are global
already. One difference with torch stays: the running average stores the biased batch variance
where torch stores the unbiased one (a relative difference of 1 / (n - 1), n = B * H * W per
channel); normalisation itself is identical.
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax import layers

Dtype = Any

# torchvision initialises conv weights with kaiming_normal_(mode='fan_out', nonlinearity='relu').
conv_kernel_init = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def batch_norm(features: int, *, dtype: Dtype, rngs: nnx.Rngs, **kwargs: Any) -> layers.BatchNorm:
  """BatchNorm with torch's defaults: momentum 0.9 (torch 0.1), eps 1e-5, params in float32.

  Args:
    features: channels C (the last axis).
    dtype: compute (output) dtype.
    rngs: the module's random streams.
    **kwargs: further :class:`faujax.layers.BatchNorm` options (``scale_init``, ``feature_axes``).
  """
  return layers.BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs, **kwargs)


def conv(in_features: int, features: int, kernel: int, stride: int = 1, padding: int = 0, *,
         dtype: Dtype, rngs: nnx.Rngs, use_bias: bool = False,
         kernel_init: Any = conv_kernel_init) -> nnx.Conv:
  """A torch-style Conv2d (explicit symmetric padding, no bias by default), NHWC / HWIO."""
  return nnx.Conv(
      in_features,
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=kernel_init,
      rngs=rngs,
  )


def torch_max_pool(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 1) -> jax.Array:
  """torch ``MaxPool2d(window, stride, padding)``: padding cells are -inf, floor output size."""
  return nnx.max_pool(
      x, (window, window), strides=(stride, stride),
      padding=((padding, padding), (padding, padding)))


class BasicBlock(nnx.Module):
  """ResNet-18/34 block: conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut, ReLU (expansion 1).

  ``(B, H, W, in_features) -> (B, H/stride, W/stride, planes)``; ``downsample`` (conv1x1(stride),
  BN as an ``nnx.List``, paths ``downsample/0``, ``downsample/1``) exists when the shape changes.
  """

  expansion = 1

  def __init__(self, in_features: int, planes: int, *, stride: int = 1,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self.conv1 = conv(in_features, planes, 3, stride, 1, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv2 = conv(planes, planes, 3, 1, 1, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.downsample = _downsample(in_features, planes, stride, dtype, rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    out = jax.nn.relu(self.bn1(self.conv1(x), train=train))
    out = self.bn2(self.conv2(out), train=train)
    return jax.nn.relu(out + _shortcut(self.downsample, x, train))


class Bottleneck(nnx.Module):
  """ResNet-50/101 block (v1.5): 1x1-BN-ReLU, 3x3(stride)-BN-ReLU, 1x1(4p)-BN, add, ReLU.

  ``(B, H, W, in_features) -> (B, H/stride, W/stride, 4 * planes)``.
  """

  expansion = 4

  def __init__(self, in_features: int, planes: int, *, stride: int = 1,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    out_features = planes * self.expansion
    self.conv1 = conv(in_features, planes, 1, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv2 = conv(planes, planes, 3, stride, 1, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv3 = conv(planes, out_features, 1, dtype=dtype, rngs=rngs)
    self.bn3 = batch_norm(out_features, dtype=dtype, rngs=rngs)
    self.downsample = _downsample(in_features, out_features, stride, dtype, rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    out = jax.nn.relu(self.bn1(self.conv1(x), train=train))
    out = jax.nn.relu(self.bn2(self.conv2(out), train=train))
    out = self.bn3(self.conv3(out), train=train)
    return jax.nn.relu(out + _shortcut(self.downsample, x, train))


def _downsample(in_features: int, out_features: int, stride: int, dtype: Dtype,
                rngs: nnx.Rngs) -> nnx.List | None:
  """torchvision's ``downsample = Sequential(conv1x1(stride), BN)``, or None for the identity."""
  if stride == 1 and in_features == out_features:
    return None
  return nnx.List([conv(in_features, out_features, 1, stride, dtype=dtype, rngs=rngs),
                   batch_norm(out_features, dtype=dtype, rngs=rngs)])


def _shortcut(downsample: nnx.List | None, x: jax.Array, train: bool) -> jax.Array:
  if downsample is None:
    return x
  return downsample[1](downsample[0](x), train=train)


class ResNet(nnx.Module):
  """ResNet feature trunk (torchvision layout, no ``avgpool`` / ``fc``).

  Args:
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50; stage i has 64 * 2**i planes.
    block: :class:`BasicBlock` or :class:`Bottleneck`.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters are always float32.
    rngs: random streams for the initialisation.

  Attributes:
    num_features: channels C of the final map (512 for ResNet-18/34, 2048 for ResNet-50/101).
  """

  def __init__(self, stage_sizes: Sequence[int], block: type[BasicBlock] | type[Bottleneck], *,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    stage_sizes = tuple(int(n) for n in stage_sizes)
    if not stage_sizes or min(stage_sizes) < 1:
      raise ValueError(f'ResNet stage_sizes: expected a non-empty tuple of positive block counts, '
                       f'got {stage_sizes}')
    if block not in (BasicBlock, Bottleneck):
      raise ValueError(f'ResNet block: expected BasicBlock or Bottleneck, got {block!r}')
    self.stage_sizes = stage_sizes
    self.dtype = dtype
    self.conv1 = conv(3, 64, 7, 2, 3, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(64, dtype=dtype, rngs=rngs)
    in_features = 64
    for i, num_blocks in enumerate(stage_sizes):
      planes = 64 * 2**i
      blocks = []
      for j in range(num_blocks):
        blocks.append(block(in_features, planes, stride=(1 if i == 0 else 2) if j == 0 else 1,
                            dtype=dtype, rngs=rngs))
        in_features = planes * block.expansion
      setattr(self, f'layer{i + 1}', nnx.List(blocks))
    self.num_features = in_features

  def __call__(
      self, x: jax.Array, *, train: bool, return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the trunk.

    Args:
      x: images ``(B, H, W, 3)``, float.
      train: batch statistics (and running-average updates of the BatchNorm statistics).
      return_intermediates: also return ``{'stem', 'layer1', ..., 'layer4'}`` feature maps.

    Returns:
      ``(B, h, w, num_features)`` map, or ``(map, intermediates)``.
    """
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != 3:
      raise ValueError(f'ResNet input x: expected 3 channels (NHWC), got shape {x.shape}')
    x = x.astype(self.dtype)
    intermediates: dict[str, jax.Array] = {}
    x = self.bn1(self.conv1(x), train=train)
    x = torch_max_pool(jax.nn.relu(x))
    intermediates['stem'] = x
    for i in range(len(self.stage_sizes)):
      for blk in getattr(self, f'layer{i + 1}'):
        x = blk(x, train=train)
      intermediates[f'layer{i + 1}'] = x
    if return_intermediates:
      return x, intermediates
    return x


def resnet18(*, dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> ResNet:
  """ResNet-18 trunk (11,176,512 params + torchvision's 513,000-param fc = 11,689,512)."""
  return ResNet((2, 2, 2, 2), BasicBlock, dtype=dtype, rngs=rngs)


def resnet34(*, dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> ResNet:
  """ResNet-34 trunk (21,284,672 params + fc 513,000 = 21,797,672)."""
  return ResNet((3, 4, 6, 3), BasicBlock, dtype=dtype, rngs=rngs)


def resnet50(*, dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> ResNet:
  """ResNet-50 trunk (23,508,032 params + fc 2,049,000 = 25,557,032)."""
  return ResNet((3, 4, 6, 3), Bottleneck, dtype=dtype, rngs=rngs)


def resnet101(*, dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> ResNet:
  """ResNet-101 trunk (42,500,160 params + fc 2,049,000 = 44,549,160)."""
  return ResNet((3, 4, 23, 3), Bottleneck, dtype=dtype, rngs=rngs)

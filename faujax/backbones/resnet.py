"""ResNet-18/34/50/101 feature trunks with torchvision's exact layout (He et al., 2016).

Used as the image backbone of MACG and SVML-RGCN (both ResNet-50 at 224 px, giving a 7x7x2048 map).

Layout follows torchvision's ``resnet*`` (the "v1.5" variant): the stride of a bottleneck stage sits
in its 3x3 convolution, the projection shortcut is conv1x1(stride) + BN, all convolutions are
bias-free, padding is explicit (``((3, 3), (3, 3))`` for the 7x7 stem, 1 for 3x3 convs, max-pool 3x3
stride 2 padding 1 with -inf padding as in torch). The Flax parameter tree mirrors torchvision's
state-dict names one to one (``layer1.0.conv1.weight`` <-> ``params/layer1/0/conv1/kernel``) so that
:mod:`faujax.tools.import_weights` converts weights by name. There is no classifier head (``fc``).

Shapes: input ``(B, H, W, 3)`` NHWC float; output ``(B, ceil(H/32), ceil(W/32), 512 * expansion)``.

BatchNorm matches torch's defaults (torch momentum 0.1 == Flax momentum 0.9, eps 1e-5). With
``bn_axis_name`` set, batch statistics are averaged over that mapped axis (``jax.pmap``); under
``jax.jit`` with a sharded batch they are global without it. One difference with torch stays: Flax
stores the biased batch variance in the running average where torch stores the unbiased one (a
relative difference of 1 / (n - 1), n = B * H * W per channel); normalisation itself is identical.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# torchvision initialises conv weights with kaiming_normal_(mode='fan_out', nonlinearity='relu').
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def batch_norm(
    train: bool,
    *,
    name: str,
    dtype: Dtype,
    axis_name: str | None,
    scale_init: Callable[..., jax.Array] = nn.initializers.ones,
) -> nn.BatchNorm:
  """BatchNorm with torch's defaults: Flax momentum 0.9 (torch 0.1), eps 1e-5, params in fp32.

  Args:
    train: use batch statistics and update the running averages when True.
    name: submodule name (mirrors the torch attribute name).
    dtype: compute dtype of the output.
    axis_name: mapped axis over which statistics are averaged (``jax.pmap``), or None.
    scale_init: initialiser of gamma.
  """
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=dtype,
      param_dtype=jnp.float32,
      axis_name=axis_name,
      scale_init=scale_init,
      name=name,
  )


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    *,
    name: str,
    dtype: Dtype,
    use_bias: bool = False,
) -> nn.Conv:
  """A torch-style Conv2d (explicit symmetric padding, no bias by default), NHWC / HWIO."""
  return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=conv_kernel_init,
      name=name,
  )


def torch_max_pool(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 1) -> jax.Array:
  """torch ``MaxPool2d(window, stride, padding)``: padding cells are -inf, floor output size."""
  return nn.max_pool(
      x, (window, window), strides=(stride, stride),
      padding=((padding, padding), (padding, padding)))


class Downsample(nn.Module):
  """Projection shortcut ``downsample = Sequential(conv1x1(stride), BN)``, children ``0``, ``1``."""

  features: int
  stride: int
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = conv(self.features, 1, self.stride, name='0', dtype=self.dtype)(x)
    return batch_norm(train, name='1', dtype=self.dtype, axis_name=self.bn_axis_name)(x)


class BasicBlock(nn.Module):
  """ResNet-18/34 block: conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut, ReLU (expansion 1)."""

  planes: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bn = functools.partial(batch_norm, train, dtype=self.dtype, axis_name=self.bn_axis_name)
    out = conv(self.planes, 3, self.stride, 1, name='conv1', dtype=self.dtype)(x)
    out = nn.relu(bn(name='bn1')(out))
    out = conv(self.planes, 3, 1, 1, name='conv2', dtype=self.dtype)(out)
    out = bn(name='bn2')(out)
    if self.stride != 1 or x.shape[-1] != self.planes:
      x = Downsample(self.planes, self.stride, self.dtype, self.bn_axis_name, name='downsample')(
          x, train=train)
    return nn.relu(out + x)


class Bottleneck(nn.Module):
  """ResNet-50/101 block (v1.5): 1x1-BN-ReLU, 3x3(stride)-BN-ReLU, 1x1(4p)-BN, add, ReLU."""

  planes: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bn = functools.partial(batch_norm, train, dtype=self.dtype, axis_name=self.bn_axis_name)
    out_features = self.planes * self.expansion
    out = conv(self.planes, 1, name='conv1', dtype=self.dtype)(x)
    out = nn.relu(bn(name='bn1')(out))
    out = conv(self.planes, 3, self.stride, 1, name='conv2', dtype=self.dtype)(out)
    out = nn.relu(bn(name='bn2')(out))
    out = conv(out_features, 1, name='conv3', dtype=self.dtype)(out)
    out = bn(name='bn3')(out)
    if self.stride != 1 or x.shape[-1] != out_features:
      x = Downsample(out_features, self.stride, self.dtype, self.bn_axis_name, name='downsample')(
          x, train=train)
    return nn.relu(out + x)


class ResLayer(nn.Module):
  """One torchvision ``layerN``: a sequence of blocks named ``0``, ``1``, ..."""

  block: type[BasicBlock] | type[Bottleneck]
  planes: int
  num_blocks: int
  stride: int
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i in range(self.num_blocks):
      x = self.block(self.planes, self.stride if i == 0 else 1, self.dtype, self.bn_axis_name,
                     name=str(i))(x, train=train)
    return x


class ResNet(nn.Module):
  """ResNet feature trunk (torchvision layout, no ``avgpool`` / ``fc``).

  Attributes:
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    block: BasicBlock or Bottleneck.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters are always float32.
    bn_axis_name: mapped axis name for cross-device BatchNorm statistics under ``jax.pmap``.
  """

  stage_sizes: Sequence[int]
  block: type[BasicBlock] | type[Bottleneck]
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @property
  def num_features(self) -> int:
    """Channels C of the final feature map (512 for ResNet-18/34, 2048 for ResNet-50/101)."""
    return 512 * self.block.expansion

  @nn.compact
  def __call__(
      self, x: jax.Array, *, train: bool, return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the trunk.

    Args:
      x: images ``(B, H, W, 3)``, float.
      train: batch statistics (and running-average updates, needs ``mutable=['batch_stats']``).
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
    x = conv(64, 7, 2, 3, name='conv1', dtype=self.dtype)(x)
    x = batch_norm(train, name='bn1', dtype=self.dtype, axis_name=self.bn_axis_name)(x)
    x = torch_max_pool(nn.relu(x))
    intermediates['stem'] = x
    for i, num_blocks in enumerate(self.stage_sizes):
      x = ResLayer(self.block, 64 * 2**i, num_blocks, 1 if i == 0 else 2, self.dtype,
                   self.bn_axis_name, name=f'layer{i + 1}')(x, train=train)
      intermediates[f'layer{i + 1}'] = x
    if return_intermediates:
      return x, intermediates
    return x


def resnet18(**kwargs: Any) -> ResNet:
  """ResNet-18 trunk (11,176,512 params + torchvision's 513,000-param fc = 11,689,512)."""
  return ResNet(stage_sizes=(2, 2, 2, 2), block=BasicBlock, **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
  """ResNet-34 trunk (21,284,672 params + fc 513,000 = 21,797,672)."""
  return ResNet(stage_sizes=(3, 4, 6, 3), block=BasicBlock, **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
  """ResNet-50 trunk (23,508,032 params + fc 2,049,000 = 25,557,032)."""
  return ResNet(stage_sizes=(3, 4, 6, 3), block=Bottleneck, **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
  """ResNet-101 trunk (42,500,160 params + fc 2,049,000 = 44,549,160)."""
  return ResNet(stage_sizes=(3, 4, 23, 3), block=Bottleneck, **kwargs)

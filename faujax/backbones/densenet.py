"""DenseNet-121 feature trunk with torchvision's exact layout (Huang et al., 2017).

Emotion-GCN's image branch: DenseNet-121 ``features`` ending at ``norm5`` (no final ReLU), followed
by a global max pool of the 7x7x1024 map at 227 px (Emotion-GCN sec. 3, reference-facts).

torchvision layout: ``conv0`` 7x7/2 pad 3 (no bias) - ``norm0`` - ReLU - max-pool 3x3/2 pad 1, then
dense blocks of (6, 12, 24, 16) layers with growth rate 32 and bottleneck width ``bn_size * growth``
= 128; each dense layer is ``norm1``-ReLU-``conv1`` (1x1) - ``norm2``-ReLU-``conv2`` (3x3 pad 1) and
its output is concatenated after its input channels; transitions are ``norm``-ReLU-``conv`` (1x1,
halving channels)-avg-pool 2x2/2; the trunk ends with ``norm5``. The parameter tree mirrors
torchvision's names with the ``features.`` prefix removed
(``features.denseblock1.denselayer1.norm1`` <-> ``params/denseblock1/denselayer1/norm1``).
No classifier (torchvision's ``classifier`` is 1024 -> 1000).

Shapes: ``(B, H, W, 3)`` -> ``(B, h, w, 1024)``, h = 7 at 224 and 227 px.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faujax.backbones.resnet import batch_norm, torch_max_pool

Dtype = Any

# torchvision DenseNet: nn.init.kaiming_normal_(conv.weight) (fan_in, gain sqrt(2)).
_densenet_conv_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


def _conv(features: int, kernel: int, stride: int = 1, padding: int = 0, *, name: str,
          dtype: Dtype) -> nn.Conv:
  return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      use_bias=False,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=_densenet_conv_init,
      name=name,
  )


class DenseLayer(nn.Module):
  """``denselayerK``: BN-ReLU-conv1x1(bn_size*growth)-BN-ReLU-conv3x3(growth) -> new maps."""

  growth_rate: int
  bn_size: int
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bn = functools.partial(batch_norm, train, dtype=self.dtype, axis_name=self.bn_axis_name)
    y = nn.relu(bn(name='norm1')(x))
    y = _conv(self.bn_size * self.growth_rate, 1, name='conv1', dtype=self.dtype)(y)
    y = nn.relu(bn(name='norm2')(y))
    return _conv(self.growth_rate, 3, 1, 1, name='conv2', dtype=self.dtype)(y)


class DenseBlock(nn.Module):
  """``denseblockN``: ``denselayer1..L``; output = concat(input, all new maps) on channels."""

  num_layers: int
  growth_rate: int
  bn_size: int
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i in range(self.num_layers):
      new = DenseLayer(self.growth_rate, self.bn_size, self.dtype, self.bn_axis_name,
                       name=f'denselayer{i + 1}')(x, train=train)
      x = jnp.concatenate([x, new], axis=-1)
    return x


class Transition(nn.Module):
  """``transitionN``: BN-ReLU-conv1x1(features)-avg-pool 2x2 stride 2."""

  features: int
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nn.relu(batch_norm(train, name='norm', dtype=self.dtype, axis_name=self.bn_axis_name)(x))
    x = _conv(self.features, 1, name='conv', dtype=self.dtype)(x)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(nn.Module):
  """DenseNet feature trunk (torchvision ``DenseNet.features``), ending at ``norm5`` without ReLU.

  Attributes:
    growth_rate: channels added per dense layer (32).
    block_config: layers per dense block ((6, 12, 24, 16) for DenseNet-121).
    num_init_features: channels of ``conv0`` (64).
    bn_size: bottleneck multiplier (4).
    dtype: compute dtype; parameters are float32.
    bn_axis_name: mapped axis name for cross-device BatchNorm statistics under ``jax.pmap``.
  """

  growth_rate: int = 32
  block_config: Sequence[int] = (6, 12, 24, 16)
  num_init_features: int = 64
  bn_size: int = 4
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None

  @property
  def num_features(self) -> int:
    """Channels C of the final (``norm5``) map: 1024 for DenseNet-121."""
    c = self.num_init_features
    for i, n in enumerate(self.block_config):
      c += n * self.growth_rate
      if i != len(self.block_config) - 1:
        c //= 2
    return c

  @nn.compact
  def __call__(
      self, x: jax.Array, *, train: bool, return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the trunk.

    Args:
      x: images ``(B, H, W, 3)``, float.
      train: batch statistics (and running-average updates, needs ``mutable=['batch_stats']``).
      return_intermediates: also return ``{'stem', 'denseblock1', 'transition1', ...,
        'denseblock4', 'norm5'}``.

    Returns:
      ``(B, h, w, num_features)`` map after ``norm5``, or ``(map, intermediates)``.
    """
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != 3:
      raise ValueError(f'DenseNet input x: expected 3 channels (NHWC), got shape {x.shape}')
    bn = functools.partial(batch_norm, train, dtype=self.dtype, axis_name=self.bn_axis_name)
    intermediates: dict[str, jax.Array] = {}
    x = x.astype(self.dtype)
    x = _conv(self.num_init_features, 7, 2, 3, name='conv0', dtype=self.dtype)(x)
    x = torch_max_pool(nn.relu(bn(name='norm0')(x)))
    intermediates['stem'] = x
    channels = self.num_init_features
    for i, num_layers in enumerate(self.block_config):
      x = DenseBlock(num_layers, self.growth_rate, self.bn_size, self.dtype, self.bn_axis_name,
                     name=f'denseblock{i + 1}')(x, train=train)
      intermediates[f'denseblock{i + 1}'] = x
      channels += num_layers * self.growth_rate
      if i != len(self.block_config) - 1:
        channels //= 2
        x = Transition(channels, self.dtype, self.bn_axis_name, name=f'transition{i + 1}')(
            x, train=train)
        intermediates[f'transition{i + 1}'] = x
    x = bn(name='norm5')(x)
    intermediates['norm5'] = x
    if return_intermediates:
      return x, intermediates
    return x


def densenet121(**kwargs: Any) -> DenseNet:
  """DenseNet-121 trunk (6,953,856 params + torchvision's classifier 1,025,000 = 7,978,856)."""
  return DenseNet(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                  **kwargs)

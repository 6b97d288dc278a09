"""DenseNet-121 feature trunk with torchvision's exact layout (Huang et al., 2017), Flax NNX.

Emotion-GCN's image branch: DenseNet-121 ``features`` ending at ``norm5`` (no final ReLU), followed
by a global max pool of the 7x7x1024 map at 227 px (Emotion-GCN sec. 3;
docs/reference/model_details.md, "Emotion-GCN").

torchvision layout: ``conv0`` 7x7/2 pad 3 (no bias) - ``norm0`` - ReLU - max-pool 3x3/2 pad 1, then
dense blocks of (6, 12, 24, 16) layers with growth rate 32 and bottleneck width ``bn_size * growth``
= 128; each dense layer is ``norm1``-ReLU-``conv1`` (1x1) - ``norm2``-ReLU-``conv2`` (3x3 pad 1) and
its output is concatenated after its input channels; transitions are ``norm``-ReLU-``conv`` (1x1,
halving channels)-avg-pool 2x2/2; the trunk ends with ``norm5``. The variable tree mirrors
torchvision's names with the ``features.`` prefix removed
(``features.denseblock1.denselayer1.norm1`` <-> ``params/denseblock1/denselayer1/norm1``).
No classifier (torchvision's ``classifier`` is 1024 -> 1000).

Shapes: ``(B, H, W, 3)`` -> ``(B, h, w, 1024)``, h = 7 at 224 and 227 px.
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.backbones.resnet import batch_norm, conv, torch_max_pool

Dtype = Any

# torchvision DenseNet: nn.init.kaiming_normal_(conv.weight) (fan_in, gain sqrt(2)).
_densenet_conv_init = nnx.initializers.variance_scaling(2.0, 'fan_in', 'normal')


def _conv(in_features: int, features: int, kernel: int, stride: int = 1, padding: int = 0, *,
          dtype: Dtype, rngs: nnx.Rngs) -> nnx.Conv:
  return conv(in_features, features, kernel, stride, padding, dtype=dtype, rngs=rngs,
              kernel_init=_densenet_conv_init)


class DenseLayer(nnx.Module):
  """``denselayerK``: BN-ReLU-conv1x1(bn_size*growth)-BN-ReLU-conv3x3(growth) -> new maps.

  ``(B, H, W, in_features) -> (B, H, W, growth_rate)`` (the new maps only).
  """

  def __init__(self, in_features: int, growth_rate: int, bn_size: int, *,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    width = bn_size * growth_rate
    self.norm1 = batch_norm(in_features, dtype=dtype, rngs=rngs)
    self.conv1 = _conv(in_features, width, 1, dtype=dtype, rngs=rngs)
    self.norm2 = batch_norm(width, dtype=dtype, rngs=rngs)
    self.conv2 = _conv(width, growth_rate, 3, 1, 1, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = self.conv1(jax.nn.relu(self.norm1(x, train=train)))
    return self.conv2(jax.nn.relu(self.norm2(y, train=train)))


class DenseBlock(nnx.Module):
  """``denseblockN``: ``denselayer1..L``; output = concat(input, all new maps) on channels.

  ``(B, H, W, in_features) -> (B, H, W, in_features + num_layers * growth_rate)``.
  """

  def __init__(self, in_features: int, num_layers: int, growth_rate: int, bn_size: int, *,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self.num_layers = num_layers
    for i in range(num_layers):
      setattr(self, f'denselayer{i + 1}',
              DenseLayer(in_features + i * growth_rate, growth_rate, bn_size, dtype=dtype,
                         rngs=rngs))

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i in range(self.num_layers):
      new = getattr(self, f'denselayer{i + 1}')(x, train=train)
      x = jnp.concatenate([x, new], axis=-1)
    return x


class Transition(nnx.Module):
  """``transitionN``: BN-ReLU-conv1x1(features)-avg-pool 2x2 stride 2."""

  def __init__(self, in_features: int, features: int, *, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    self.norm = batch_norm(in_features, dtype=dtype, rngs=rngs)
    self.conv = _conv(in_features, features, 1, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = self.conv(jax.nn.relu(self.norm(x, train=train)))
    return nnx.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(nnx.Module):
  """DenseNet feature trunk (torchvision ``DenseNet.features``), ending at ``norm5`` without ReLU.

  Args:
    growth_rate: channels added per dense layer (32).
    block_config: layers per dense block ((6, 12, 24, 16) for DenseNet-121).
    num_init_features: channels of ``conv0`` (64).
    bn_size: bottleneck multiplier (4).
    dtype: compute dtype; parameters are float32.
    rngs: random streams for the initialisation.

  Attributes:
    num_features: channels C of the final (``norm5``) map: 1024 for DenseNet-121.
  """

  def __init__(self, *, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
               num_init_features: int = 64, bn_size: int = 4, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    block_config = tuple(int(n) for n in block_config)
    if not block_config or min(block_config) < 1:
      raise ValueError(f'DenseNet block_config: expected a non-empty tuple of positive layer '
                       f'counts, got {block_config}')
    self.block_config = block_config
    self.dtype = dtype
    self.conv0 = _conv(3, num_init_features, 7, 2, 3, dtype=dtype, rngs=rngs)
    self.norm0 = batch_norm(num_init_features, dtype=dtype, rngs=rngs)
    channels = num_init_features
    for i, num_layers in enumerate(block_config):
      setattr(self, f'denseblock{i + 1}',
              DenseBlock(channels, num_layers, growth_rate, bn_size, dtype=dtype, rngs=rngs))
      channels += num_layers * growth_rate
      if i != len(block_config) - 1:
        setattr(self, f'transition{i + 1}',
                Transition(channels, channels // 2, dtype=dtype, rngs=rngs))
        channels //= 2
    self.norm5 = batch_norm(channels, dtype=dtype, rngs=rngs)
    self.num_features = channels

  def __call__(
      self, x: jax.Array, *, train: bool, return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the trunk.

    Args:
      x: images ``(B, H, W, 3)``, float.
      train: batch statistics (and running-average updates of the BatchNorm statistics).
      return_intermediates: also return ``{'stem', 'denseblock1', 'transition1', ...,
        'denseblock4', 'norm5'}``.

    Returns:
      ``(B, h, w, num_features)`` map after ``norm5``, or ``(map, intermediates)``.
    """
    chex.assert_rank(x, 4)
    chex.assert_type(x, float)
    if x.shape[-1] != 3:
      raise ValueError(f'DenseNet input x: expected 3 channels (NHWC), got shape {x.shape}')
    intermediates: dict[str, jax.Array] = {}
    x = x.astype(self.dtype)
    x = self.conv0(x)
    x = torch_max_pool(jax.nn.relu(self.norm0(x, train=train)))
    intermediates['stem'] = x
    for i in range(len(self.block_config)):
      x = getattr(self, f'denseblock{i + 1}')(x, train=train)
      intermediates[f'denseblock{i + 1}'] = x
      if i != len(self.block_config) - 1:
        x = getattr(self, f'transition{i + 1}')(x, train=train)
        intermediates[f'transition{i + 1}'] = x
    x = self.norm5(x, train=train)
    intermediates['norm5'] = x
    if return_intermediates:
      return x, intermediates
    return x


def densenet121(*, dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> DenseNet:
  """DenseNet-121 trunk (6,953,856 params + torchvision's classifier 1,025,000 = 7,978,856)."""
  return DenseNet(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                  dtype=dtype, rngs=rngs)

"""The MAE-pretrained ViT-Base/16 encoder of OpenGraphAU's ``MAE-VIT`` models, Flax NNX.

OpenGraphAU (``OpenGraphAU/model/{ANFL,MEFL}.py`` in CVI-SZU/ME-GraphAU) builds
``pretrain_mae_base_patch16_224(pretrained=False)`` from ``OpenGraphAU/model/modeling_pretrain.py``:
a ``PretrainVisionTransformer`` whose decoder, ``encoder_to_decoder`` and ``mask_token`` are
commented out, so the module holds only ``encoder`` (a ``PretrainVisionTransformerEncoder``) and
its ``forward(x, mask=None)`` returns the encoder's tokens after the final LayerNorm,
``(B, 196, 768)`` at 224 px: one token per 16x16 patch, row-major, with no cls token (the public
code has it commented out) and the identity as ``head`` (``encoder_num_classes=0``). This trunk
returns them as a map ``(B, 14, 14, 768)``; ``map.reshape(B, 196, 768)`` is exactly the public
output (the tokens the AU heads read), in the same order (parity with the public code in
``tests/test_transformer_trunks.py``: relative difference ~1e-6 in float32). Other input sides
(multiples of 16; the public code refuses them) use the same formula's table for their number of
patches.

Layout of the public encoder, followed here op for op:

* ``patch_embed.proj``: Conv2d(3, 768, kernel = stride = 16, bias), tokens row-major;
* plus a fixed sine-cosine table (``get_sinusoid_encoding_table(196, 768)``: position p (the
  row-major patch index, 1-D), channel j: ``p / 10000**(2 * (j // 2) / 768)``, sine on even j,
  cosine on odd j; computed in float64, used in float32). The public code keeps it as a plain
  tensor attribute, neither parameter nor buffer, so it is not in the state dict; here it is a
  numpy constant (:func:`sinusoid_table`);
* 12 ``blocks``: ``x + drop_path(attn(norm1(x)))``, ``x + drop_path(mlp(norm2(x)))`` (no layer
  scale: ``init_values=0`` gives ``gamma_1 = gamma_2 = None``); ``attn``: ``qkv`` Linear(768,
  2304) *without* bias plus learnt ``q_bias`` and ``v_bias`` (the key bias is a constant 0),
  12 heads, ``q * 64**-0.5 @ k^T``, softmax, ``attn_drop``, ``@ v``, ``proj`` Linear(768, 768),
  ``proj_drop``; ``mlp``: ``fc1`` Linear(768, 3072) - GELU (erf) - ``fc2`` - dropout (BEiT's MLP
  has no dropout between fc1 and fc2);
* ``norm``: LayerNorm(768); every LayerNorm has eps 1e-6.

Initialisation as the public ``_init_weights``: Linear weights Xavier-uniform, biases 0
(``q_bias``, ``v_bias`` 0), LayerNorm scale 1 and bias 0, the patch convolution torch's Conv2d
default. Regularisation as the public defaults: dropout rates 0, ``drop_path_rate`` 0 (an
option: block k of n gets ``rate * k / (n - 1)``, per sample, only with ``train=True`` and an
``nnx.Rngs`` holding a ``'dropout'`` stream).

The variable tree mirrors the public names without the ``encoder.`` prefix
(``encoder.blocks.3.attn.q_bias`` <-> ``params/blocks/3/attn/q_bias``); see :func:`torch_key_map`.
85,637,376 parameters.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax.backbones.swin import (PatchEmbed, Transform, check_image, drop_path, dropout,
                                   key_map_from_trunk, layer_norm, linear)

Dtype = Any

_LN_EPS = 1e-6

# Keys of the MAE pre-training checkpoint (``mae_pretrain_checkpoint.pth``, loaded by the public
# ``pretrain_mae_base_patch16_224(pretrained=True)`` with ``strict=False``) that the public module
# has no place for: the importer of such a file skips keys with these prefixes.
PRETRAIN_CHECKPOINT_EXTRA_PREFIXES: dict[str, str] = {
    'decoder.': 'the MAE decoder: commented out in the public module, unused by the forward',
    'encoder_to_decoder.': 'the MAE encoder-to-decoder projection: commented out, unused',
    'mask_token': 'the MAE mask token: commented out, unused',
}


@functools.lru_cache(maxsize=None)
def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """``(num_positions, dim)`` float32: the public ``get_sinusoid_encoding_table`` (float64 maths,
  sine on even channels, cosine on odd ones, channel pair j // 2 sharing a frequency)."""
  exponents = np.array([2 * (j // 2) / dim for j in range(dim)], np.float64)
  angles = np.arange(num_positions, dtype=np.float64)[:, None] / np.power(10000, exponents)[None]
  angles[:, 0::2] = np.sin(angles[:, 0::2])
  angles[:, 1::2] = np.cos(angles[:, 1::2])
  out = angles.astype(np.float32)
  out.setflags(write=False)
  return out


class Mlp(nnx.Module):
  """``fc1`` - GELU (erf) - ``fc2`` - dropout (BEiT / MAE: no dropout after the activation)."""

  def __init__(self, features: int, hidden: int, *, drop: float = 0.0, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs, kernel_init: Callable[..., jax.Array]):
    self.fc1 = linear(features, hidden, dtype=dtype, rngs=rngs, kernel_init=kernel_init)
    self.fc2 = linear(hidden, features, dtype=dtype, rngs=rngs, kernel_init=kernel_init)
    self.drop = drop

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    return dropout(self.fc2(jax.nn.gelu(self.fc1(x), approximate=False)), self.drop, rngs)


class Attention(nnx.Module):
  """Global multi-head self-attention, ``qkv`` without bias plus ``q_bias`` / ``v_bias``.

  ``(B, N, C) -> (B, N, C)``.
  """

  def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, attn_drop: float = 0.0,
               proj_drop: float = 0.0, dtype: Dtype = jnp.float32, rngs: nnx.Rngs,
               kernel_init: Callable[..., jax.Array]):
    if dim % num_heads:
      raise ValueError(f'Attention: dim {dim} is not divisible by num_heads {num_heads}')
    self.num_heads = num_heads
    self.scale = (dim // num_heads)**-0.5
    self.qkv = linear(dim, 3 * dim, use_bias=False, dtype=dtype, rngs=rngs,
                      kernel_init=kernel_init)
    if qkv_bias:
      self.q_bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
      self.v_bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
    else:
      self.q_bias = self.v_bias = None
    self.proj = linear(dim, dim, dtype=dtype, rngs=rngs, kernel_init=kernel_init)
    self.attn_drop, self.proj_drop = attn_drop, proj_drop

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    b, n, c = x.shape
    heads = self.num_heads
    qkv = self.qkv(x)
    if self.q_bias is not None:
      q_bias, v_bias = self.q_bias[...], self.v_bias[...]
      qkv = qkv + jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias]).astype(qkv.dtype)
    qkv = qkv.reshape(b, n, 3, heads, c // heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum('bnhd,bmhd->bhnm', q * jnp.asarray(self.scale, q.dtype), k)
    attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    attn = dropout(attn, self.attn_drop, rngs)
    out = jnp.einsum('bhnm,bmhd->bnhd', attn, v).reshape(b, n, c)
    return dropout(self.proj(out), self.proj_drop, rngs)


class Block(nnx.Module):
  """Pre-norm transformer block without layer scale (``init_values=0``)."""

  def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True,
               drop: float = 0.0, attn_drop: float = 0.0, drop_path_rate: float = 0.0,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs,
               kernel_init: Callable[..., jax.Array]):
    self.drop_path_rate = float(drop_path_rate)
    self.norm1 = layer_norm(dim, eps=_LN_EPS, dtype=dtype, rngs=rngs)
    self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop,
                          dtype=dtype, rngs=rngs, kernel_init=kernel_init)
    self.norm2 = layer_norm(dim, eps=_LN_EPS, dtype=dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, dtype=dtype, rngs=rngs,
                   kernel_init=kernel_init)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    x = x + drop_path(self.attn(self.norm1(x), rngs=rngs), self.drop_path_rate, rngs)
    return x + drop_path(self.mlp(self.norm2(x), rngs=rngs), self.drop_path_rate, rngs)


class VisionTransformer(nnx.Module):
  """ViT encoder of the public ``PretrainVisionTransformer`` (MAE), without cls token or head.

  Args:
    embed_dim: token channels C (768).
    depth: blocks (12).
    num_heads: attention heads (12).
    patch_size: side of the patches (16).
    mlp_ratio: hidden width of the MLPs / C.
    qkv_bias: learnt ``q_bias`` / ``v_bias``.
    drop_rate: dropout after ``proj`` and ``fc2`` (public 0).
    attn_drop_rate: dropout of the attention weights (public 0).
    drop_path_rate: stochastic depth of the last block (public 0).
    dtype: compute dtype; parameters are float32 (softmax and LayerNorm statistics in float32).
    rngs: random streams for the initialisation.

  Attributes:
    num_features: C.
  """

  def __init__(self, *, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
               patch_size: int = 16, mlp_ratio: float = 4.0,
               qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
               drop_path_rate: float = 0.0, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    if depth < 1 or patch_size < 1:
      raise ValueError(f'VisionTransformer: depth {depth} and patch_size {patch_size} must be '
                       f'positive')
    if not 0.0 <= drop_path_rate < 1.0:
      raise ValueError(f'VisionTransformer drop_path_rate: expected [0, 1), got {drop_path_rate}')
    self.patch_size = patch_size
    self.dtype = dtype
    self.patch_embed = PatchEmbed(patch_size, 3, embed_dim, norm=False, dtype=dtype, rngs=rngs)
    xavier = nnx.initializers.xavier_uniform()
    rates: Sequence[float] = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
    self.blocks = nnx.List([
        Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate,
              attn_drop=attn_drop_rate, drop_path_rate=rates[i], dtype=dtype, rngs=rngs,
              kernel_init=xavier)
        for i in range(depth)])
    self.norm = layer_norm(embed_dim, eps=_LN_EPS, dtype=dtype, rngs=rngs)
    self.num_features = embed_dim

  def __call__(
      self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None,
      return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the encoder.

    Args:
      x: images ``(B, H, W, 3)``, float, H and W multiples of ``patch_size`` (the public code takes
        224 x 224 only; at other sizes the table of the public formula for ``(H/16) * (W/16)``
        positions is used).
      train: enables dropout and stochastic depth (when ``rngs`` is given).
      rngs: random streams with a ``'dropout'`` stream; None: deterministic.
      return_intermediates: also return ``{'patch_embed', 'block1', ..., 'blockN'}`` maps
        (``patch_embed`` with the position table added; block outputs before the final norm).

    Returns:
      ``(B, H/16, W/16, num_features)`` (14 x 14 at 224 px): the public ``forward`` tokens
      ``(B, 196, C)`` reshaped row-major, or ``(map, intermediates)``.
    """
    check_image(x, self.patch_size, 'VisionTransformer')
    rngs = rngs if train else None
    x = self.patch_embed(x.astype(self.dtype))
    b, gh, gw, c = x.shape
    tokens = x.reshape(b, gh * gw, c) + jnp.asarray(sinusoid_table(gh * gw, c)).astype(x.dtype)
    intermediates: dict[str, jax.Array] = {'patch_embed': tokens.reshape(b, gh, gw, c)}
    for i, blk in enumerate(self.blocks):
      tokens = blk(tokens, rngs=rngs)
      intermediates[f'block{i + 1}'] = tokens.reshape(b, gh, gw, c)
    out = self.norm(tokens).reshape(b, gh, gw, c)
    if return_intermediates:
      return out, intermediates
    return out


def mae_vit_base(*, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, dtype: Dtype = jnp.float32,
                 rngs: nnx.Rngs) -> VisionTransformer:
  """``pretrain_mae_base_patch16_224``'s encoder: ViT-B/16 (768 channels, 12 blocks, 12 heads,
  q/v biases, LayerNorm eps 1e-6); ``(B, 224, 224, 3) -> (B, 14, 14, 768)``."""
  return VisionTransformer(drop_rate=drop_rate,
                           attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                           dtype=dtype, rngs=rngs)


def torch_key_map(name: str = 'mae_vit_base', **options: Any
                  ) -> tuple[dict[str, tuple[str, tuple[str, ...], Transform]], dict[str, str]]:
  """Public ``pretrain_mae_base_patch16_224`` state-dict keys -> faujax parameters.

  Args:
    name: ``'mae_vit_base'``.
    **options: trunk options when not the defaults (they do not change the keys).

  Returns:
    ``(targets, skipped)``. ``targets``: every key of the public ``backbone.state_dict()`` (all
    start with ``encoder.``; no ``backbone.`` prefix) -> ``('params', path in
    variables(trunk)['params'], transform)``: ``encoder.`` is dropped, Linear weights are
    transposed to ``(in, out)``, the Conv2d weight goes OIHW -> HWIO, LayerNorm ``weight`` ->
    ``scale``; every transform returns a new contiguous float32 array. ``skipped`` is empty: the
    public module registers nothing else (its position table is a plain attribute, its decoder is
    commented out). A MAE pre-training checkpoint has further keys, see
    :data:`PRETRAIN_CHECKPOINT_EXTRA_PREFIXES`.
  """
  if name != 'mae_vit_base':
    raise ValueError(f'torch_key_map: {name!r} is not a MAE ViT variant (mae_vit_base)')
  trunk = nnx.eval_shape(lambda: mae_vit_base(rngs=nnx.Rngs(0), **options))
  return key_map_from_trunk(trunk, prefix='encoder.'), {}

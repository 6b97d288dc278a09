"""Swin Transformer trunks (Liu et al., 2021) as ME-GraphAU / OpenGraphAU use them, Flax NNX.

ME-GraphAU's and OpenGraphAU's ``swin_transformer_{tiny,small,base}`` (``model/swin_transformer.py``
in CVI-SZU/ME-GraphAU, and the same file in its ``OpenGraphAU/`` folder) build Microsoft's
classification Swin Transformer, drop its classifier (``backbone.head = None``) and use
``forward``, which returns the tokens after the final LayerNorm, ``(B, L, C)`` with
``L = (224 / 32)**2 = 49`` (the public code takes 224 px only), row-major over the final 7x7 grid,
without pooling. This trunk returns the same tokens as a map ``(B, 7, 7, C)``;
``map.reshape(B, 49, C)`` is exactly the public ``forward`` output (parity with the public code in
``tests/test_transformer_trunks.py``: relative difference ~2e-6 in float32).

Layout of the public code, followed here op for op:

* ``patch_embed``: ``proj`` Conv2d(3, C0, kernel = stride = 4, bias) then ``norm`` LayerNorm(C0)
  (``patch_norm=True``); no absolute position embedding (``ape=False``); ``pos_drop`` dropout.
* four stages ``layers.{0..3}`` of ``blocks`` (depths (2, 2, 6, 2) tiny, (2, 2, 18, 2) small and
  base), channels C0 * 2**i (C0 = 96 tiny / small, 128 base), heads (3, 6, 12, 24) tiny / small,
  (4, 8, 16, 32) base; stages 0-2 end with ``downsample`` (PatchMerging: concatenation of the
  2x2 neighbours in the order (0, 0), (1, 0), (0, 1), (1, 1) (row, column), ``norm``
  LayerNorm(4C), ``reduction`` Linear(4C, 2C, no bias)).
* a block: ``x + drop_path(W-MSA(norm1(x)))`` then ``x + drop_path(mlp(norm2(x)))``; blocks with
  an odd index shift their windows by ``window // 2`` (cyclic roll by ``-shift`` before, ``+shift``
  after) and mask attention between tokens from different regions of the rolled map with -100
  (not -inf) added to the logits. When a stage's resolution is at most the window (the last stage
  at 224 px: 7 <= 7), the window becomes the resolution and the shift 0 (no mask).
* window attention: ``qkv`` Linear(C, 3C, bias), heads of C / heads channels, ``q * head_dim**-0.5
  @ k^T`` + relative position bias (``relative_position_bias_table`` ((2w-1)**2, heads) indexed by
  the row / column offsets of the two tokens, ``(dh + w - 1) * (2w - 1) + (dw + w - 1)``) + mask,
  softmax, ``attn_drop``, ``@ v``, ``proj`` Linear(C, C), ``proj_drop``.
* ``mlp``: ``fc1`` Linear(C, 4C) - GELU (exact, erf) - dropout - ``fc2`` - dropout.
* a final ``norm`` LayerNorm(8 * C0); all LayerNorms use eps 1e-5.

Initialisation as the public ``_init_weights``: Linear weights and the bias tables truncated
normal with std 0.02 (timm's ``trunc_normal_``, cut at +-2 absolute), Linear biases 0, LayerNorm
scale 1 and bias 0; the patch-embedding convolution keeps torch's Conv2d default (uniform, bound
1 / sqrt(fan_in), weight and bias). Regularisation as the public constructors: dropout rates 0,
stochastic depth ``drop_path_rate`` 0.2 (tiny), 0.3 (small), 0.5 (base) increasing linearly over
the blocks from 0 (block k of n: ``rate * k / (n - 1)``), applied per sample only with
``train=True`` and an ``nnx.Rngs`` holding a ``'dropout'`` stream.

The relative position index and the shifted-window masks are numpy constants computed from the
geometry (:func:`relative_position_index`, :func:`shifted_window_mask`), not variables: the
public state dict's ``relative_position_index`` and ``attn_mask`` buffers are skipped by the key
map (:func:`torch_key_map`). The variable tree mirrors the public state-dict names
(``layers.2.blocks.5.attn.qkv.weight`` <-> ``params/layers/2/blocks/5/attn/qkv/kernel``).

Other input sizes (multiples of 4; the public code refuses them) run with zero padding to whole
windows and even sides (:class:`SwinBlock`, :class:`PatchMerging`), as in the Swin detection code;
at 224 px nothing is padded.

Parameters (trunk, without the 1000-way head): tiny 27,519,354; small 48,837,258; base
86,743,224.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax import model_state

Dtype = Any

# The variants of the public code: (embed_dim, depths, num_heads, drop_path_rate).
VARIANTS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...], float]] = {
    'swin_tiny': (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2),
    'swin_small': (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3),
    'swin_base': (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5),
}

_LN_EPS = 1e-5
_MASK_VALUE = -100.0  # what the public code adds to the logits of masked pairs


def trunc_normal_init(std: float = 0.02, bound: float = 2.0) -> Callable[..., jax.Array]:
  """timm's ``trunc_normal_(t, std=std)``: normal(0, std) cut at +-``bound`` (absolute)."""

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return std * jax.random.truncated_normal(key, -bound / std, bound / std, shape, dtype)

  return init


def torch_conv_init(fan_in: int) -> tuple[Callable[..., jax.Array], Callable[..., jax.Array]]:
  """torch's default Conv2d / Linear initialisers (kernel, bias): uniform(+-1 / sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)

  def bias_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return nnx.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform'), bias_init


def dropout(x: jax.Array, rate: float, rngs: nnx.Rngs | None) -> jax.Array:
  """Element-wise dropout (inverted scaling) when ``rate > 0`` and ``rngs`` is given."""
  if rate <= 0.0 or rngs is None:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(rngs.dropout(), keep, x.shape)
  return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def drop_path(x: jax.Array, rate: float, rngs: nnx.Rngs | None) -> jax.Array:
  """Stochastic depth (timm's ``drop_path``): zeroes whole samples (axis 0) with probability
  ``rate`` and scales the kept ones by ``1 / (1 - rate)``; identity without ``rngs``."""
  if rate <= 0.0 or rngs is None:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(rngs.dropout(), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def linear(in_features: int, out_features: int, *, use_bias: bool = True, dtype: Dtype,
           rngs: nnx.Rngs, kernel_init: Callable[..., jax.Array] | None = None) -> nnx.Linear:
  """nnx.Linear with float32 parameters; kernel truncated normal std 0.02, bias 0 by default."""
  return nnx.Linear(in_features, out_features, use_bias=use_bias, dtype=dtype,
                    param_dtype=jnp.float32,
                    kernel_init=kernel_init or trunc_normal_init(0.02),
                    bias_init=nnx.initializers.zeros_init(), rngs=rngs)


def layer_norm(features: int, *, eps: float, dtype: Dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
  """torch's LayerNorm (biased variance computed as E[(x - mean)^2], float32 statistics)."""
  return nnx.LayerNorm(features, epsilon=eps, dtype=dtype, param_dtype=jnp.float32,
                       use_fast_variance=False, rngs=rngs)


@functools.lru_cache(maxsize=None)
def relative_position_index(window: int, table_window: int | None = None) -> np.ndarray:
  """``(w*w, w*w)`` int index into the bias table of a ``table_window`` (default ``window``)
  block: ``(dh + t-1) * (2t-1) + (dw + t-1)`` with (dh, dw) = position of token i minus position
  of token j (row-major tokens), t = ``table_window`` >= w."""
  t = window if table_window is None else table_window
  if t < window:
    raise ValueError(f'relative_position_index: window {window} > table window {t}')
  rows, cols = np.meshgrid(np.arange(window), np.arange(window), indexing='ij')
  rows, cols = rows.reshape(-1), cols.reshape(-1)
  dh = rows[:, None] - rows[None, :] + t - 1
  dw = cols[:, None] - cols[None, :] + t - 1
  out = dh * (2 * t - 1) + dw
  out.setflags(write=False)
  return out


@functools.lru_cache(maxsize=None)
def shifted_window_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
  """``(num_windows, w*w, w*w)`` float32: 0 where two tokens of a window of the rolled map come
  from the same region, -100 elsewhere (the public SW-MSA ``attn_mask``)."""
  region = np.zeros((height, width), np.int64)
  count = 0
  for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
    for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
      region[hs, ws] = count
      count += 1
  windows = region.reshape(height // window, window, width // window, window)
  windows = windows.transpose(0, 2, 1, 3).reshape(-1, window * window)
  out = np.where(windows[:, None, :] != windows[:, :, None], _MASK_VALUE, 0.0).astype(np.float32)
  out.setflags(write=False)
  return out


def window_partition(x: jax.Array, window: int) -> jax.Array:
  """``(B, H, W, C) -> (B, num_windows, w*w, C)``, windows and their tokens row-major."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(x: jax.Array, window: int, height: int, width: int) -> jax.Array:
  """Inverse of :func:`window_partition`: ``(B, num_windows, w*w, C) -> (B, H, W, C)``."""
  b, c = x.shape[0], x.shape[-1]
  x = x.reshape(b, height // window, width // window, window, window, c).transpose(
      0, 1, 3, 2, 4, 5)
  return x.reshape(b, height, width, c)


class Mlp(nnx.Module):
  """``fc1`` - GELU (erf) - dropout - ``fc2`` - dropout."""

  def __init__(self, features: int, hidden: int, *, drop: float = 0.0, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    self.fc1 = linear(features, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = linear(hidden, features, dtype=dtype, rngs=rngs)
    self.drop = drop

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    x = dropout(jax.nn.gelu(self.fc1(x), approximate=False), self.drop, rngs)
    return dropout(self.fc2(x), self.drop, rngs)


class WindowAttention(nnx.Module):
  """Multi-head self-attention inside windows with a learnt relative position bias.

  ``(B, num_windows, w*w, C) -> same``; ``mask`` ``(num_windows, w*w, w*w)`` is added to the
  logits of every head.
  """

  def __init__(self, dim: int, window: int, num_heads: int, *, qkv_bias: bool = True,
               attn_drop: float = 0.0, proj_drop: float = 0.0, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f'WindowAttention: dim {dim} is not divisible by num_heads {num_heads}')
    self.dim, self.window, self.num_heads = dim, window, num_heads
    self.scale = (dim // num_heads)**-0.5
    self.dtype = dtype
    self.relative_position_bias_table = nnx.Param(
        trunc_normal_init(0.02)(rngs.params(), ((2 * window - 1)**2, num_heads), jnp.float32))
    self.qkv = linear(dim, 3 * dim, use_bias=qkv_bias, dtype=dtype, rngs=rngs)
    self.proj = linear(dim, dim, dtype=dtype, rngs=rngs)
    self.attn_drop, self.proj_drop = attn_drop, proj_drop

  def __call__(self, x: jax.Array, mask: np.ndarray | None, *, window: int,
               rngs: nnx.Rngs | None) -> jax.Array:
    """``x``: ``(B, num_windows, window**2, C)``; ``window`` <= the table's window."""
    b, nw, n, c = x.shape
    heads = self.num_heads
    qkv = self.qkv(x).reshape(b, nw, n, 3, heads, c // heads)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    logits = jnp.einsum('bwnhd,bwmhd->bwhnm', q * jnp.asarray(self.scale, q.dtype), k)
    index = relative_position_index(window, self.window).reshape(-1)
    bias = self.relative_position_bias_table[...][index].reshape(n, n, heads).transpose(2, 0, 1)
    logits = logits.astype(jnp.float32) + bias  # softmax in float32 whatever the compute dtype
    if mask is not None:
      logits = logits + jnp.asarray(mask)[None, :, None]
    attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    attn = dropout(attn, self.attn_drop, rngs)
    out = jnp.einsum('bwhnm,bwmhd->bwnhd', attn, v).reshape(b, nw, n, c)
    return dropout(self.proj(out), self.proj_drop, rngs)


class SwinBlock(nnx.Module):
  """One Swin block on a ``(B, H, W, C)`` map; shifted by ``shift`` when the map is larger than
  the window.

  Window and shift follow the public block's rule, applied to the map it receives: when
  ``min(H, W) <= window`` the window becomes ``min(H, W)`` (its biases are the table's entries of
  the same offsets) and the shift 0. At the public sizes (224 px: maps 56, 28, 14, 7 with window
  7) the windows tile the map exactly. Elsewhere (an extension; the public code refuses such
  sizes) the normalised map is zero-padded at the bottom / right to whole windows, attention runs
  on the padded map (the shifted-window mask computed for the padded size) and the result is
  cropped, as in the Swin detection code.
  """

  def __init__(self, dim: int, num_heads: int, *, window: int, shift: int,
               mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
               attn_drop: float = 0.0, drop_path_rate: float = 0.0, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    if window < 1 or not 0 <= shift < window:
      raise ValueError(f'SwinBlock: expected window >= 1 and 0 <= shift < window, got window '
                       f'{window}, shift {shift}')
    self.window, self.shift = window, shift
    self.drop_path_rate = float(drop_path_rate)
    self.norm1 = layer_norm(dim, eps=_LN_EPS, dtype=dtype, rngs=rngs)
    self.attn = WindowAttention(dim, window, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                proj_drop=drop, dtype=dtype, rngs=rngs)
    self.norm2 = layer_norm(dim, eps=_LN_EPS, dtype=dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, dtype=dtype, rngs=rngs)

  def geometry(self, height: int, width: int) -> tuple[int, int]:
    """``(window, shift)`` used on a ``height x width`` map (the public clipping rule)."""
    if min(height, width) <= self.window:
      return min(height, width), 0
    return self.window, self.shift

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    _, h, w, _ = x.shape
    win, s = self.geometry(h, w)
    y = self.norm1(x)
    pad_h, pad_w = -h % win, -w % win
    if pad_h or pad_w:
      y = jnp.pad(y, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    hp, wp = h + pad_h, w + pad_w
    if s:
      y = jnp.roll(y, (-s, -s), axis=(1, 2))
    mask = shifted_window_mask(hp, wp, win, s) if s else None
    y = self.attn(window_partition(y, win), mask, window=win, rngs=rngs)
    y = window_reverse(y, win, hp, wp)
    if s:
      y = jnp.roll(y, (s, s), axis=(1, 2))
    if pad_h or pad_w:
      y = y[:, :h, :w]
    x = x + drop_path(y, self.drop_path_rate, rngs)
    return x + drop_path(self.mlp(self.norm2(x), rngs=rngs), self.drop_path_rate, rngs)


class PatchMerging(nnx.Module):
  """``(B, H, W, C) -> (B, H/2, W/2, 2C)``: 2x2 neighbours concatenated ((0,0), (1,0), (0,1),
  (1,1) as (row, column) offsets), ``norm`` LayerNorm(4C), ``reduction`` Linear(4C, 2C, no bias).
  An odd side (never at the public sizes) is first zero-padded at the bottom / right.
  """

  def __init__(self, dim: int, *, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self.norm = layer_norm(4 * dim, eps=_LN_EPS, dtype=dtype, rngs=rngs)
    self.reduction = linear(4 * dim, 2 * dim, use_bias=False, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    _, h, w, _ = x.shape
    if h % 2 or w % 2:
      x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                        axis=-1)
    return self.reduction(self.norm(x))


class BasicLayer(nnx.Module):
  """A stage: ``blocks`` (even ones plain, odd ones shifted by ``window // 2``), then an optional
  ``downsample`` (:class:`PatchMerging`)."""

  def __init__(self, dim: int, depth: int, num_heads: int, *,
               window: int, mlp_ratio: float, qkv_bias: bool, drop: float, attn_drop: float,
               drop_path_rates: Sequence[float], downsample: bool, dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    self.blocks = nnx.List([
        SwinBlock(dim, num_heads, window=window, shift=0 if i % 2 == 0 else window // 2,
                  mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop,
                  drop_path_rate=drop_path_rates[i], dtype=dtype, rngs=rngs)
        for i in range(depth)])
    self.downsample = PatchMerging(dim, dtype=dtype, rngs=rngs) if downsample else None

  def run_blocks(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    for blk in self.blocks:
      x = blk(x, rngs=rngs)
    return x

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None) -> jax.Array:
    x = self.run_blocks(x, rngs=rngs)
    return x if self.downsample is None else self.downsample(x)


def check_image(x: jax.Array, patch_size: int, owner: str) -> None:
  """Refuses what a patch-embedding trunk cannot read: ``x`` must be float ``(B, H, W, 3)`` with
  ``H`` and ``W`` multiples of ``patch_size``."""
  chex.assert_rank(x, 4)
  chex.assert_type(x, float)
  if x.shape[-1] != 3 or x.shape[1] % patch_size or x.shape[2] % patch_size:
    raise ValueError(f'{owner} input x: expected (B, H, W, 3) NHWC with H and W multiples of the '
                     f'patch size {patch_size}, got shape {x.shape}')


class PatchEmbed(nnx.Module):
  """``proj`` Conv(3, C, kernel = stride = patch, bias) then ``norm`` LayerNorm(C), NHWC."""

  def __init__(self, patch_size: int, in_features: int, embed_dim: int, *, norm: bool = True,
               norm_eps: float = _LN_EPS, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    kernel_init, bias_init = torch_conv_init(in_features * patch_size * patch_size)
    self.proj = nnx.Conv(in_features, embed_dim, (patch_size, patch_size),
                         strides=(patch_size, patch_size), padding='VALID', use_bias=True,
                         dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init,
                         bias_init=bias_init, rngs=rngs)
    self.norm = layer_norm(embed_dim, eps=norm_eps, dtype=dtype, rngs=rngs) if norm else None

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.proj(x)
    return x if self.norm is None else self.norm(x)


class SwinTransformer(nnx.Module):
  """Swin Transformer feature trunk (the public classification model without ``head``).

  Args:
    embed_dim: channels C0 of the patch embedding (stage i has C0 * 2**i).
    depths: blocks per stage.
    num_heads: attention heads per stage.
    window_size: side of the attention windows (7).
    patch_size: side of the patches (4).
    mlp_ratio: hidden width of the MLPs / C.
    qkv_bias: biases in ``qkv``.
    drop_rate: dropout after the patch embedding, in the MLPs and after ``proj`` (public 0).
    attn_drop_rate: dropout of the attention weights (public 0).
    drop_path_rate: stochastic depth of the last block; block k of n gets
      ``drop_path_rate * k / (n - 1)``.
    dtype: compute dtype; parameters are float32 (attention softmax and LayerNorm statistics are
      computed in float32).
    rngs: random streams for the initialisation.

  Attributes:
    num_features: channels C of the output map, C0 * 2**(stages - 1).
  """

  def __init__(self, *, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
               num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7,
               patch_size: int = 4, mlp_ratio: float = 4.0, qkv_bias: bool = True,
               drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    depths, num_heads = tuple(int(d) for d in depths), tuple(int(h) for h in num_heads)
    if not depths or min(depths) < 1 or len(num_heads) != len(depths):
      raise ValueError(f'SwinTransformer: depths {depths} and num_heads {num_heads} must be '
                       f'non-empty, positive and of equal length')
    if window_size < 1 or patch_size < 1:
      raise ValueError(f'SwinTransformer: window_size {window_size} and patch_size {patch_size} '
                       f'must be positive')
    if not 0.0 <= drop_path_rate < 1.0:
      raise ValueError(f'SwinTransformer drop_path_rate: expected [0, 1), got {drop_path_rate}')
    self.depths, self.patch_size = depths, patch_size
    self.drop_rate = float(drop_rate)
    self.dtype = dtype
    self.patch_embed = PatchEmbed(patch_size, 3, embed_dim, dtype=dtype, rngs=rngs)
    rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(depths))]
    self.layers = nnx.List([
        BasicLayer(embed_dim * 2**i, depth, num_heads[i], window=window_size,
                   mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate,
                   attn_drop=attn_drop_rate,
                   drop_path_rates=rates[sum(depths[:i]):sum(depths[:i + 1])],
                   downsample=i < len(depths) - 1, dtype=dtype, rngs=rngs)
        for i, depth in enumerate(depths)])
    self.num_features = embed_dim * 2**(len(depths) - 1)
    self.norm = layer_norm(self.num_features, eps=_LN_EPS, dtype=dtype, rngs=rngs)

  def __call__(
      self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None,
      return_intermediates: bool = False
  ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the trunk.

    Args:
      x: images ``(B, H, W, 3)``, float, H and W multiples of ``patch_size`` (the public code
        takes 224 x 224 only; other sizes use the padding described in :class:`SwinBlock`).
      train: enables dropout and stochastic depth (when ``rngs`` is given).
      rngs: random streams with a ``'dropout'`` stream; None: deterministic.
      return_intermediates: also return ``{'patch_embed', 'stage1', ..., 'stage4'}``: the patch
        embedding and each stage's blocks' output before its patch merging (not normalised).

    Returns:
      ``(B, h, w, num_features)`` (7 x 7 at 224 px): the public ``forward`` tokens after the
      final LayerNorm, row-major, or ``(map, intermediates)``.
    """
    check_image(x, self.patch_size, 'SwinTransformer')
    rngs = rngs if train else None
    intermediates: dict[str, jax.Array] = {}
    x = self.patch_embed(x.astype(self.dtype))
    x = dropout(x, self.drop_rate, rngs)
    intermediates['patch_embed'] = x
    for i, layer in enumerate(self.layers):
      x = layer.run_blocks(x, rngs=rngs)
      intermediates[f'stage{i + 1}'] = x
      if layer.downsample is not None:
        x = layer.downsample(x)
    x = self.norm(x)
    if return_intermediates:
      return x, intermediates
    return x


def swin_transformer(name: str, *, window_size: int = 7, drop_rate: float = 0.0,
                     attn_drop_rate: float = 0.0, drop_path_rate: float, dtype: Dtype = jnp.float32,
                     rngs: nnx.Rngs) -> SwinTransformer:
  """The public ``swin_transformer_<tiny|small|base>`` of ``VARIANTS[name]``.

  Swin-T: C0 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), 768 output channels, 27,519,354
  params; Swin-S: depths (2, 2, 18, 2), 768 channels, 48,837,258 params; Swin-B: C0 128, heads
  (4, 8, 16, 32), 1024 channels, 86,743,224 params. ``drop_path_rate`` defaults (below) are the
  public code's 0.2 / 0.3 / 0.5.
  """
  if name not in VARIANTS:
    raise ValueError(f'swin_transformer: {name!r} is not a Swin variant ({", ".join(VARIANTS)})')
  embed_dim, depths, heads, _ = VARIANTS[name]
  return SwinTransformer(embed_dim=embed_dim, depths=depths, num_heads=heads,
                         window_size=window_size, drop_rate=drop_rate,
                         attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                         dtype=dtype, rngs=rngs)


swin_tiny = functools.partial(swin_transformer, 'swin_tiny',
                              drop_path_rate=VARIANTS['swin_tiny'][3])
swin_small = functools.partial(swin_transformer, 'swin_small',
                               drop_path_rate=VARIANTS['swin_small'][3])
swin_base = functools.partial(swin_transformer, 'swin_base',
                              drop_path_rate=VARIANTS['swin_base'][3])


# --------------------------------------------------------------------------------------------------
# Public state-dict names -> faujax parameters.

Transform = Callable[[np.ndarray], np.ndarray]


def copy_f32(a: Any) -> np.ndarray:
  """A new C-contiguous float32 copy (LayerNorm weights / biases, bias tables, Linear biases)."""
  return np.array(np.asarray(a), dtype=np.float32, copy=True, order='C')


def linear_weight(a: Any) -> np.ndarray:
  """torch Linear weight ``(out, in)`` -> flax kernel ``(in, out)`` (a new contiguous copy)."""
  return np.array(np.asarray(a).T, dtype=np.float32, copy=True, order='C')


def conv_weight(a: Any) -> np.ndarray:
  """torch Conv2d weight OIHW -> flax kernel HWIO (a new contiguous copy)."""
  return np.array(np.asarray(a).transpose(2, 3, 1, 0), dtype=np.float32, copy=True, order='C')


def torch_name(path: tuple[str, ...], ndim: int) -> tuple[str, Transform]:
  """The torch state-dict name of a faujax parameter path and the torch -> faujax transform."""
  *module, leaf = path
  if leaf == 'kernel':
    return '.'.join(module + ['weight']), conv_weight if ndim == 4 else linear_weight
  if leaf == 'scale':
    return '.'.join(module + ['weight']), copy_f32
  return '.'.join(module + [leaf]), copy_f32  # bias, relative_position_bias_table, q_bias, ...


def key_map_from_trunk(trunk: nnx.Module, prefix: str = ''
                       ) -> dict[str, tuple[str, tuple[str, ...], Transform]]:
  """``{prefix + torch name: ('params', path, transform)}`` for every parameter of ``trunk`` (an
  instance or an ``nnx.eval_shape`` abstract one)."""
  params = model_state.flatten(model_state.variables(trunk)['params'])
  out = {}
  for flat, leaf in params.items():
    path = tuple(flat.split('/'))
    name, transform = torch_name(path, len(leaf.shape))
    out[prefix + name] = ('params', path, transform)
  return out


def torch_key_map(name: str, *, input_size: int = 224, **options: Any
                  ) -> tuple[dict[str, tuple[str, tuple[str, ...], Transform]], dict[str, str]]:
  """Public ``swin_transformer_*`` state-dict keys -> faujax parameters.

  Args:
    name: ``'swin_tiny'``, ``'swin_small'`` or ``'swin_base'``.
    input_size: the public module's ``img_size`` (224): it decides which blocks are shifted and
      so have an ``attn_mask`` buffer.
    **options: trunk options (``window_size``) when not the defaults.

  Returns:
    ``(targets, skipped)``. ``targets``: every key of the public ``backbone.state_dict()``
    (no ``backbone.`` prefix; the classifier is absent as the public code sets ``head = None``)
    that faujax needs -> ``('params', path in variables(trunk)['params'], transform)``; Linear
    weights are transposed to ``(in, out)``, the Conv2d weight goes OIHW -> HWIO and LayerNorm
    ``weight`` becomes ``scale``; every transform returns a new contiguous float32 array.
    ``skipped``: the other keys -> the reason: the ``relative_position_index`` buffer of every
    block and the ``attn_mask`` buffer of every shifted block, both recomputed here.
  """
  if name not in VARIANTS:
    raise ValueError(f'torch_key_map: {name!r} is not a Swin variant ({", ".join(VARIANTS)})')
  options = {'drop_path_rate': VARIANTS[name][3], **options}
  trunk = nnx.eval_shape(lambda: swin_transformer(name, rngs=nnx.Rngs(0), **options))
  targets = key_map_from_trunk(trunk)
  skipped = {}
  side = input_size // trunk.patch_size
  for i, layer in enumerate(trunk.layers):
    res = -(-side // 2**i)
    for j, blk in enumerate(layer.blocks):
      skipped[f'layers.{i}.blocks.{j}.attn.relative_position_index'] = (
          'relative_position_index: buffer recomputed by faujax (swin.relative_position_index)')
      if blk.geometry(res, res)[1]:
        skipped[f'layers.{i}.blocks.{j}.attn_mask'] = (
            'attn_mask: shifted-window mask buffer recomputed by faujax '
            '(swin.shifted_window_mask)')
  return targets, skipped

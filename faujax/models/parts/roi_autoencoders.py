"""One convolutional auto-encoder per ROI, run as ONE vmapped computation (AU-GCN sec. 3.3, Fig. 2b).

Every ROI r has its own encoder, decoder and ROI-level classifier; their parameters are stacked
along a leading ROI axis (every leaf is ``(R, ...)``) and ``roi_autoencoders_apply`` maps a single
ROI's network over that axis with ``jax.vmap``, so the R networks are one batched computation
rather than a Python loop over R modules.

One ROI's network (the paper draws it without sizes; ``docs/reference/model_details.md``,
"AU-GCN auto-encoders", gives faujax's choice):

  patch (n, n, 3)
    -> [conv 3x3 stride 2 -> ReLU] per width of ``widths``      (n -> ceil(n/2) -> ...)
    -> flatten -> dense d0                                     latent z (d0,)   (no activation)
  z -> dense -> ReLU -> reshape to the last encoder map
    -> [upsample x2 (bilinear, to the encoder's sizes) -> conv 3x3 -> ReLU] back to widths[0]
    -> upsample to n -> conv 3x3 -> 3 channels                   reconstruction I^R (n, n, 3)
  z -> dense C                                                 ROI logits (eq. 2: every AU)

Pure functions (``roi_autoencoders_init`` / ``roi_autoencoders_apply``) plus the NNX wrapper
``RoiAutoencoders`` that holds exactly the init dict (``faujax.graph.params``), as the graph layers
do.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faujax.graph import params as params_lib

Params = dict[str, chex.Array]


def encoder_sizes(size: int, num_layers: int) -> tuple[int, ...]:
  """Spatial sides of the encoder maps: (n, ceil(n/2), ceil(n/4), ...), ``num_layers + 1`` long."""
  sizes = [int(size)]
  for _ in range(num_layers):
    sizes.append(math.ceil(sizes[-1] / 2))
  return tuple(sizes)


def upsample_matrix(out_size: int, in_size: int) -> np.ndarray:
  """(out, in) bilinear interpolation weights, half-pixel centres, edges clamped.

  Output pixel i samples the input at x = (i + 0.5) in / out - 0.5; applied as U y U^T (a
  matmul, cheap under vmap, unlike a resize op).
  """
  u = np.zeros((out_size, in_size), np.float32)
  for i in range(out_size):
    x = min(max((i + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1.0)
    lo = int(np.floor(x))
    hi = min(lo + 1, in_size - 1)
    u[i, lo] += 1.0 - (x - lo)
    u[i, hi] += x - lo
  return u


def _he(key: chex.PRNGKey, shape: tuple[int, ...], fan_in: int) -> chex.Array:
  return jax.random.normal(key, shape, jnp.float32) * math.sqrt(2.0 / fan_in)


def _init_one(key: chex.PRNGKey, *, size: int, channels: int, widths: Sequence[int],
              latent_dim: int, num_classes: int) -> Params:
  """Parameters of one ROI's network (see the module docstring)."""
  widths = tuple(int(w) for w in widths)
  last = encoder_sizes(size, len(widths))[-1]
  flat = last * last * widths[-1]
  keys = iter(jax.random.split(key, 2 * len(widths) + 4))
  p: Params = {}
  cin = channels
  for i, w in enumerate(widths):
    p[f'enc{i}_kernel'] = _he(next(keys), (3, 3, cin, w), 9 * cin)
    p[f'enc{i}_bias'] = jnp.zeros((w,), jnp.float32)
    cin = w
  p['latent_kernel'] = params_lib.glorot_uniform(next(keys), (flat, latent_dim), flat, latent_dim)
  p['latent_bias'] = jnp.zeros((latent_dim,), jnp.float32)
  p['expand_kernel'] = _he(next(keys), (latent_dim, flat), latent_dim)
  p['expand_bias'] = jnp.zeros((flat,), jnp.float32)
  outs = list(widths[:-1][::-1]) + [channels]  # decoder output channels, last = image channels
  cin = widths[-1]
  for i, w in enumerate(outs):
    p[f'dec{i}_kernel'] = _he(next(keys), (3, 3, cin, w), 9 * cin)
    p[f'dec{i}_bias'] = jnp.zeros((w,), jnp.float32)
    cin = w
  p['cls_kernel'] = params_lib.glorot_uniform(next(keys), (latent_dim, num_classes), latent_dim,
                                              num_classes)
  p['cls_bias'] = jnp.zeros((num_classes,), jnp.float32)
  return p


def roi_autoencoders_init(key: chex.PRNGKey, num_rois: int, *, size: int, channels: int = 3,
                          widths: Sequence[int] = (16, 32, 32), latent_dim: int = 150,
                          num_classes: int) -> Params:
  """Stacked parameters of ``num_rois`` independent ROI networks: every leaf is ``(R, ...)``."""
  if num_rois < 1 or size < 2 or not widths or min(widths) < 1 or latent_dim < 1:
    raise ValueError(f'roi_autoencoders_init: need num_rois >= 1, size >= 2, positive widths and '
                     f'latent_dim; got {num_rois}, {size}, {tuple(widths)}, {latent_dim}.')
  keys = jax.random.split(key, num_rois)
  return jax.vmap(lambda k: _init_one(k, size=size, channels=channels, widths=widths,
                                      latent_dim=latent_dim, num_classes=num_classes))(keys)


def _conv(x: chex.Array, kernel: chex.Array, bias: chex.Array, stride: int) -> chex.Array:
  """A 'SAME' convolution (NHWC input, HWIO kernel) as shifted slices + one matmul.

  Equal to ``lax.conv_general_dilated(..., 'SAME')``; written as a matmul so that vmapping it
  over the ROI axis (one kernel per ROI) is a batched matmul, not a grouped convolution (slow
  on CPU).
  """
  kh, kw, cin, cout = kernel.shape
  _, h, w, _ = x.shape
  oh, ow = -(-h // stride), -(-w // stride)
  ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
  xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  cols = jnp.concatenate(
      [xp[:, dy:dy + (oh - 1) * stride + 1:stride, dx:dx + (ow - 1) * stride + 1:stride, :]
       for dy in range(kh) for dx in range(kw)], axis=-1)          # features ordered (kh, kw, C)
  return cols @ kernel.reshape(kh * kw * cin, cout) + bias


def _apply_one(p: Params, patches: chex.Array, num_layers: int) -> tuple[chex.Array, ...]:
  """One ROI's network on ``patches`` (B, n, n, ch) -> latent (B, d0), recon, logits (B, C)."""
  b, n, _, ch = patches.shape
  sizes = encoder_sizes(n, num_layers)
  x = patches
  for i in range(num_layers):
    x = jax.nn.relu(_conv(x, p[f'enc{i}_kernel'], p[f'enc{i}_bias'], 2))
  z = x.reshape(b, -1) @ p['latent_kernel'] + p['latent_bias']
  y = jax.nn.relu(z @ p['expand_kernel'] + p['expand_bias'])
  y = y.reshape(x.shape)
  for i in range(num_layers):
    side = sizes[num_layers - 1 - i]
    u = jnp.asarray(upsample_matrix(side, y.shape[1]), y.dtype)
    y = jnp.einsum('Hh,bhwc,Ww->bHWc', u, y, u)
    y = _conv(y, p[f'dec{i}_kernel'], p[f'dec{i}_bias'], 1)
    if i < num_layers - 1:
      y = jax.nn.relu(y)
  logits = z @ p['cls_kernel'] + p['cls_bias']
  return z, y, logits


def roi_autoencoders_apply(params: Params, patches: chex.Array, *,
                           dtype: Any | None = None) -> tuple[chex.Array, chex.Array, chex.Array]:
  """The R ROI networks on their own patches, vmapped over the ROI axis.

  Args:
    params: from ``roi_autoencoders_init`` (leaves ``(R, ...)``).
    patches: ``(B, R, n, n, ch)``; patch r goes through network r only.
    dtype: compute dtype (None: the patches' dtype); parameters stay float32 outside.

  Returns:
    latent ``(B, R, d0)`` (AU-GCN's Z_0 per example), reconstruction ``(B, R, n, n, ch)``
    (eq. 1's I^R) and ROI logits ``(B, R, C)`` (eq. 2's ROI-level AU prediction).
  """
  chex.assert_rank(patches, 5)
  r = params['latent_kernel'].shape[0]
  chex.assert_axis_dimension(patches, 1, r)
  num_layers = sum(1 for k in params if k.startswith('enc') and k.endswith('_kernel'))
  dtype = params_lib.compute_dtype(dtype, patches)
  p = params_lib.cast_params(params, dtype)
  fn = jax.vmap(lambda q, x: _apply_one(q, x, num_layers), in_axes=(0, 1), out_axes=1)
  return fn(p, patches.astype(dtype))


class RoiAutoencoders(nnx.Module):
  """NNX wrapper of ``roi_autoencoders_apply``: ``(B, R, n, n, 3) -> (latent, recon, logits)``.

  Params: exactly ``roi_autoencoders_init``'s dict, one ``nnx.Param`` per key, each ``(R, ...)``.
  """

  def __init__(self, num_rois: int, *, size: int, num_classes: int,
               widths: Sequence[int] = (16, 32, 32), latent_dim: int = 150, channels: int = 3,
               dtype: Any | None = None, rngs: nnx.Rngs):
    self.dtype = dtype
    params_lib.declare_params(self, roi_autoencoders_init(
        rngs.params(), num_rois, size=size, channels=channels, widths=widths,
        latent_dim=latent_dim, num_classes=num_classes))

  def __call__(self, patches: chex.Array) -> tuple[chex.Array, chex.Array, chex.Array]:
    return roi_autoencoders_apply(params_lib.declared_params(self), patches, dtype=self.dtype)

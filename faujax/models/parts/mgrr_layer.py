"""One MGRR-Net multi-level relational reasoning layer (sec. 3.2, eq. 3-8).

The AU nodes are patch maps: v_i (B, N, 2, p, p, c) holds, for AU i, the p x p O_G patches
around its two centres (``faujax.models.parts.mgrr_patches``). One layer k:

  region level (eq. 5)   v_bar_i = W_i v_i + sum_j A_ij W_j v_j        (``PriorGraphConv``: a
                         per-AU 1 x 1 map W_i, the learnable adjacency A^k initialised from the
                         prior of eq. 1-2 or at random), applied at every patch position;
  channel / pixel level  C_G, P_G (B, s, s, c) from O_G (eq. 3-4, ``mgrr_global``);
  fusion (eq. 6-8)       G = GFC(O_G, GFC(C_G, P_G)) on the global maps (1 x 1 convs), read at
                         AU i's patch positions as G_i, then v_i^{k+1} = GFC(v_bar_i, G_i).

Every layer reads the stem's O_G (sec. 1: the global features "serve as the inputs of each
multi-level relational reasoning layer") and has its own parameters. With some levels switched
off (MGRR-Net Table 6) the hierarchy nests the remaining ones in the same order (O_G outermost,
then C_G, then P_G): e.g. D_G + O_G is GFC(v_bar, O_G), D_G + C_G + P_G is GFC(v_bar, GFC(C_G,
P_G)); with no global level v^{k+1} = v_bar. ``fusion='mean'`` replaces every gate beta of eq. 8
by 1/2 (an ungated sum of the l2-normalised maps, a faujax ablation of the gate).

``gfc_scale`` (faujax deviation, default 1 = the paper): every GFC output is multiplied by it,
i.e. the l2-normalisation of eq. 7 maps each position's c-vector to norm ``gfc_scale`` instead of
1. With ``gfc_scale = sqrt(c)`` the fused maps have per-element RMS about 1 (as the stem's O_G
cells have order-1 entries) instead of about 1/sqrt(c); see docs/mgrr_net_synthetic.md for why.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax.graph import gated_fusion
from faujax.graph import params as params_lib
from faujax.graph.learnable_adjacency import PriorGraphConv
from faujax.models.parts import mgrr_global
from faujax.models.parts import mgrr_patches

FUSIONS = ('gated', 'mean')
_GATE_KEYS = ('gate_a', 'gate_b', 'gate_bias')


def fuse(cell: gated_fusion.GatedFusionCell, a: chex.Array, b: chex.Array,
         fusion: str, scale: float = 1.0) -> chex.Array:
  """``scale`` x GFC(a, b) (eq. 7-8); ``fusion='mean'``: beta fixed at 1/2 (the gate kernels
  read as 0). ``scale`` = 1 is the paper's GFC; since beta and 1 - beta are per-channel weights,
  scaling the output equals l2-normalising W_a a and W_b b to norm ``scale``."""
  p = params_lib.declared_params(cell)
  if fusion == 'mean':
    p = {k: (jnp.zeros_like(v) if k in _GATE_KEYS else v) for k, v in p.items()}
  out = gated_fusion.gated_fusion_apply(p, a, b, dtype=cell.dtype)
  return out if scale == 1.0 else out * jnp.asarray(scale, out.dtype)


class RelationalLayer(nnx.Module):
  """Layer k of MGRR-Net: ``(v (B, N, 2, p, p, c), O_G (B, s, s, c), centres) -> v^{k+1}``.

  Args:
    num_nodes: N AUs.
    features: c, the channels of O_G and of the node patches.
    side: s, the side of O_G.
    patch_size: p.
    adjacency: (N, N) initial A (the prior of eq. 1-2, or random); None: no region graph.
    use_global, use_channel, use_pixel: the O_G / C_G / P_G levels.
    fusion: 'gated' (eq. 7-8) or 'mean'.
    gfc_scale: multiplies every GFC output (1 = the paper; a faujax deviation otherwise).
    hidden_dim, num_heads: D and L of the MH-GATs.
    init: 'torch' (PyTorch's default initialisation of W_i, the MH-GATs, the deconvolution and the
      GFC convolutions, sec. 4.2) or 'glorot' (``mgrr_global.INITS``).

  Variables: ``region`` (``PriorGraphConv``: ``adjacency`` (N, N), ``kernel`` (N, c, c)),
  ``channel`` / ``pixel`` (``mgrr_global``), ``fuse_cp`` / ``fuse_og`` / ``fuse_v``
  (``GatedFusionCell`` c x c -> c), each only where its level is on.
  """

  def __init__(self, num_nodes: int, features: int, side: int, *, patch_size: int,
               adjacency: Any | None, use_global: bool, use_channel: bool, use_pixel: bool,
               fusion: str = 'gated', gfc_scale: float = 1.0, hidden_dim: int = 1024,
               num_heads: int = 8, init: str = 'torch', dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    if fusion not in FUSIONS:
      raise ValueError(f'config.model.fusion={fusion!r}; expected one of {FUSIONS}.')
    if isinstance(gfc_scale, bool) or not isinstance(gfc_scale, (int, float)) or gfc_scale <= 0:
      raise ValueError(f'config.model.gfc_scale={gfc_scale!r}; expected a positive number '
                       '(1 = the paper\'s unit l2-normalisation, eq. 7).')
    self.gfc_scale = float(gfc_scale)
    self.num_nodes = num_nodes
    self.patch_size = patch_size
    self.fusion = fusion
    mgrr_global.check_init(init)
    self.region = (None if adjacency is None else
                   PriorGraphConv(adjacency, features, features, dtype=dtype, init=init,
                                  rngs=rngs))
    att = dict(hidden_dim=hidden_dim, num_heads=num_heads, init=init, dtype=dtype, rngs=rngs)
    self.channel = mgrr_global.ChannelAttention(features, side, **att) if use_channel else None
    self.pixel = mgrr_global.PixelAttention(features, side, **att) if use_pixel else None
    self.use_global = bool(use_global)
    levels = int(use_global) + int(use_channel) + int(use_pixel)
    cell = lambda: gated_fusion.GatedFusionCell(features, features, features, dtype=dtype,
                                                init=init, rngs=rngs)
    # levels - 1 cells inside the global hierarchy, one more to fuse it into the nodes.
    self.fuse_cp = cell() if use_channel and use_pixel else None
    self.fuse_og = cell() if use_global and (use_channel or use_pixel) else None
    self.fuse_v = cell() if levels else None

  def global_map(self, o_g: jax.Array, *, train: bool) -> jax.Array | None:
    """GFC(O_G, GFC(C_G, P_G)) over the enabled levels (eq. 6, inner part); (B, s, s, c)."""
    g = None
    if self.pixel is not None:
      g = self.pixel(o_g, train=train)
    if self.channel is not None:
      c_g = self.channel(o_g, train=train)
      g = c_g if g is None else fuse(self.fuse_cp, c_g, g, self.fusion, self.gfc_scale)
    if self.use_global:
      g = o_g if g is None else fuse(self.fuse_og, o_g, g, self.fusion, self.gfc_scale)
    return g

  def __call__(self, v: jax.Array, o_g: jax.Array, centres: jax.Array, *,
               train: bool) -> jax.Array:
    """One layer.

    Args:
      v: (B, N, 2, p, p, c) node patch maps v^k.
      o_g: (B, s, s, c) the stem's global map.
      centres: (B, N, 2, 2) the AU centres in O_G map coordinates.
      train: BatchNorm-free here; passed to the attention (dropout-free, kept for the contract).

    Returns:
      v^{k+1}, same shape as ``v``.
    """
    chex.assert_rank(v, 6)
    chex.assert_axis_dimension(v, 1, self.num_nodes)
    v_bar = v
    if self.region is not None:
      nodes_last = jnp.moveaxis(v, 1, -2)                     # (B, 2, p, p, N, c)
      v_bar = jnp.moveaxis(self.region(nodes_last), -2, 1)    # eq. 5
    g = self.global_map(o_g, train=train)
    if g is None:
      return v_bar
    g_i = mgrr_patches.sample_patches(g, centres, self.patch_size)  # (B, N, 2, p, p, c)
    return fuse(self.fuse_v, v_bar, g_i.astype(v_bar.dtype), self.fusion,
                self.gfc_scale)  # eq. 6

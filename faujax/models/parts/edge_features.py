"""Multi-dimensional edge features of every pair of AUs (ME-GraphAU's GEM, the public code's
``model/graph_edge_model.py``).

ME-GraphAU sec. 3.2 (Luo et al., IJCAI 2022) describes each directed AU pair (i, j) by a C-d
feature computed from the two AUs' feature maps and the global map, by two cross-attentions:

  FAM:  F_i = CrossAttn(query U_i, keys/values X)        per AU i: its tokens attend to the
                                                          global tokens X          (B, N, D, C)
  ARM:  F_ij = CrossAttn(query F_j, keys/values F_i)     edge (i, j): AU j's tokens attend to
                                                          AU i's                   (B, N, N, D, C)
  e_ij = mean over the D tokens of BN(Linear(F_ij))                               (B, N, N, C)

with U_i the AU-specific token features (B, N, D, C) (the per-AU LinearBlocks before their
token mean), X the global tokens (B, D, C), CrossAttn(y, x) = softmax(q(y) k(x)^T / sqrt(C/2))
v(x), q and k Linear(C, C/2), v Linear(C, C) (weights N(0, sqrt(2 / out)), torch default biases),
the projection Linear(C, C) (weight N(0, sqrt(2 / C))) and a BatchNorm2d over the N x N edges
(statistics per edge over the batch, tokens and channels). Row i of the edge tensor is the
"end" node (keys/values), column j the "start" node (queries), as the public code's
``feat_end`` / ``feat_start`` (its edge ``i * N + j``). The public code forms the N^2 pairs
before projecting; projecting the N node maps first is the same arithmetic, N times cheaper.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from faujax import layers
from faujax.models.parts.linear_block import linear_kernel_init, torch_bias_init


def _linear(in_features: int, features: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
  """Linear with the public code's N(0, sqrt(2 / out)) weight and torch's default bias."""
  return nnx.Linear(in_features, features, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=linear_kernel_init(features),
                    bias_init=torch_bias_init(in_features), rngs=rngs)


class CrossAttention(nnx.Module):
  """``softmax(q(y) k(x)^T / sqrt(C/2)) v(x)``; children ``q``, ``k`` (C -> C/2) and ``v``.

  ``attend`` takes the projections, so that a caller projects each node map once and pairs them
  afterwards.
  """

  def __init__(self, features: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    if features < 2 or features % 2:
      raise ValueError(f'CrossAttention features must be an even int >= 2; got {features}.')
    self.features = features
    self.scale = float((features // 2) ** -0.5)
    self.q = _linear(features, features // 2, dtype=dtype, rngs=rngs)
    self.k = _linear(features, features // 2, dtype=dtype, rngs=rngs)
    self.v = _linear(features, features, dtype=dtype, rngs=rngs)

  def attend(self, q: chex.Array, k: chex.Array, v: chex.Array, dots: str,
             values: str) -> chex.Array:
    """Attention of projected queries over projected keys / values: ``dots`` is the einsum of
    the dot products (last output axis: the keys), ``values`` the einsum that weights ``v``."""
    logits = jnp.einsum(dots, q, k) * self.scale
    attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum(values, attn, v)


class EdgeFeatures(nnx.Module):
  """GEM (module docstring): AU token features + global tokens -> edge features.

  Args:
    num_nodes: N AUs.
    features: C.
    dtype: compute dtype; parameters float32.
    rngs: initialisation.

  Children: ``fam`` and ``arm`` (``CrossAttention``), ``edge_proj`` (Linear C -> C) and ``bn``
  (``BatchNorm((N, N), feature_axes=(1, 2))`` on (B, N, N, D, C)).
  """

  def __init__(self, num_nodes: int, features: int, *, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    self.num_nodes = num_nodes
    self.features = features
    self.dtype = dtype
    self.fam = CrossAttention(features, dtype=dtype, rngs=rngs)
    self.arm = CrossAttention(features, dtype=dtype, rngs=rngs)
    self.edge_proj = _linear(features, features, dtype=dtype, rngs=rngs)
    self.bn = layers.BatchNorm((num_nodes, num_nodes), feature_axes=(1, 2), dtype=dtype,
                               rngs=rngs)

  def __call__(self, nodes: chex.Array, tokens: chex.Array, *, train: bool) -> chex.Array:
    """``nodes`` U (B, N, D, C), ``tokens`` X (B, D, C) -> edges (B, N, N, C)."""
    chex.assert_rank(nodes, 4)
    chex.assert_rank(tokens, 3)
    b, n, d, c = nodes.shape
    if (n, c) != (self.num_nodes, self.features) or tokens.shape != (b, d, c):
      raise ValueError(f'EdgeFeatures: nodes {nodes.shape} must be (B, {self.num_nodes}, D, '
                       f'{self.features}) and tokens {tokens.shape} (B, D, C).')
    nodes, tokens = nodes.astype(self.dtype), tokens.astype(self.dtype)
    # FAM: every AU's tokens attend to the global tokens.
    fam = self.fam.attend(self.fam.q(nodes), self.fam.k(tokens), self.fam.v(tokens),
                          'bnqc,bkc->bnqk', 'bnqk,bkc->bnqc')                  # (B, N, D, C)
    # ARM: edge (i, j): queries from AU j (start), keys / values from AU i (end).
    arm = self.arm.attend(self.arm.q(fam), self.arm.k(fam), self.arm.v(fam),
                          'bjqc,bikc->bijqk', 'bijqk,bikc->bijqc')             # (B, N, N, D, C)
    edges = self.bn(self.edge_proj(arm), train=train)
    chex.assert_shape(edges, (b, n, n, d, c))
    return edges.mean(axis=3)

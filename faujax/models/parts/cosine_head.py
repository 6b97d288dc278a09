"""Cosine-similarity AU head (MACG eq. 14, after ME-GraphAU; docs/reference/model_details.md,
"MACG head").

``p_i = <ReLU(f_i), ReLU(s_i)> / (||ReLU(f_i)||_2 ||ReLU(s_i)||_2)`` with one trainable vector
``s_i`` per AU (``s``: (N, C), Xavier-uniform). Both factors are non-negative, so ``p_i`` lies in
[0, 1] and is used directly as the occurrence probability (no sigmoid; thresholded at 0.5). Norms
are clamped below at ``eps`` (torch ``F.normalize``), so an all-zero feature gives p = 0.
Computed in float32 whatever the compute dtype. ``(B, N, C) -> (B, N)``.

OpenGraphAU's head adds "sub" classes, the left / right versions of some AUs: sub class k reads
the node of its main AU ``sub_nodes[k]`` with its own vector ``sub_sc[k]``, and its probability
is appended after the N main ones, ``(B, N, C) -> (B, N + len(sub_nodes))`` (the public
``OpenGraphAU/model/MEFL.py`` ``Head``).
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx


def _safe_norm(x: jax.Array, eps: float) -> jax.Array:
  """max(||x||_2, eps) over the last axis with a finite gradient at x = 0."""
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def cosine_probabilities(f: jax.Array, s: jax.Array, eps: float = 1e-12) -> jax.Array:
  """MACG eq. 14 as a pure function: f (B, N, C), s (N, C) -> (B, N) float32 in [0, 1]."""
  chex.assert_rank(f, 3)
  chex.assert_rank(s, 2)
  if f.shape[1:] != s.shape:
    raise ValueError(f'cosine_probabilities: features f {f.shape} must be (B, N, C) with (N, C) '
                     f'equal to the class vectors s {s.shape}.')
  f = jax.nn.relu(f.astype(jnp.float32))
  s = jax.nn.relu(s.astype(jnp.float32))
  f = f / _safe_norm(f, eps)
  s = s / _safe_norm(s, eps)
  return jnp.einsum('bnc,nc->bn', f, s)


class CosineHead(nnx.Module):
  """Eq. 14 with the class vectors ``s`` (N, C) as an ``nnx.Param`` named ``sc``.

  Args:
    num_nodes: N AUs.
    in_features: C, channels of the node features.
    sub_nodes: for each sub class, the main node it reads (OpenGraphAU; empty: none). Its
      vectors are the ``nnx.Param`` ``sub_sc`` (len(sub_nodes), C).
    eps: norm clamp (torch ``F.normalize``).
    rngs: parameter initialisation (``sc``, ``sub_sc``: torch ``xavier_uniform_``, i.e.
      fan_in = C, fan_out = rows).
  """

  def __init__(self, num_nodes: int, in_features: int, *, sub_nodes: Sequence[int] = (),
               eps: float = 1e-12, rngs: nnx.Rngs):
    for value, name in ((num_nodes, 'num_nodes'), (in_features, 'in_features')):
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f'CosineHead {name} must be a positive int; got {value!r}.')
    if any(not 0 <= int(k) < num_nodes for k in sub_nodes):
      raise ValueError(f'CosineHead sub_nodes {tuple(sub_nodes)} must index the {num_nodes} '
                       'main nodes.')
    self.eps = eps
    self.sub_nodes = tuple(int(k) for k in sub_nodes)
    init = nnx.initializers.xavier_uniform(in_axis=-1, out_axis=-2)
    self.sc = nnx.Param(init(rngs.params(), (num_nodes, in_features), jnp.float32))
    self.sub_sc = (nnx.Param(init(rngs.params(), (len(self.sub_nodes), in_features),
                                  jnp.float32)) if self.sub_nodes else None)

  def __call__(self, f: jax.Array) -> jax.Array:
    """``f`` (B, N, C) -> probabilities (B, N [+ sub classes]) float32."""
    p = cosine_probabilities(f, self.sc[...], self.eps)
    if self.sub_sc is None:
      return p
    sub = cosine_probabilities(f[:, list(self.sub_nodes)], self.sub_sc[...], self.eps)
    return jnp.concatenate([p, sub], axis=-1)

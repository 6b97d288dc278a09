"""Cosine-similarity AU head (MACG eq. 14, after ME-GraphAU; docs/reference/model_details.md,
"MACG head").

``p_i = <ReLU(f_i), ReLU(s_i)> / (||ReLU(f_i)||_2 ||ReLU(s_i)||_2)`` with one trainable vector
``s_i`` per AU (``s``: (N, C), Xavier-uniform). Both factors are non-negative, so ``p_i`` lies in
[0, 1] and is used directly as the occurrence probability (no sigmoid; thresholded at 0.5). Norms
are clamped below at ``eps`` (torch ``F.normalize``), so an all-zero feature gives p = 0.
Computed in float32 whatever the compute dtype. ``(B, N, C) -> (B, N)``.
"""

from __future__ import annotations

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
    eps: norm clamp (torch ``F.normalize``).
    rngs: parameter initialisation (``sc``: torch ``xavier_uniform_`` on (N, C), i.e.
      fan_in = C, fan_out = N).
  """

  def __init__(self, num_nodes: int, in_features: int, *, eps: float = 1e-12, rngs: nnx.Rngs):
    for value, name in ((num_nodes, 'num_nodes'), (in_features, 'in_features')):
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f'CosineHead {name} must be a positive int; got {value!r}.')
    self.eps = eps
    init = nnx.initializers.xavier_uniform(in_axis=-1, out_axis=-2)
    self.sc = nnx.Param(init(rngs.params(), (num_nodes, in_features), jnp.float32))

  def __call__(self, f: jax.Array) -> jax.Array:
    """``f`` (B, N, C) -> probabilities (B, N) float32."""
    return cosine_probabilities(f, self.sc[...], self.eps)

"""Masked softmax and attention dropout shared by the two graph-attention layers.

``masked_softmax(logits, mask)`` normalises over the last axis (the neighbours
``j`` of node ``i``) in float32, giving exactly 0 to masked entries; a row whose
mask is all false gives all zeros (never NaN). The attention layers always add
self-loops, so their rows are never empty.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def masked_softmax(logits: chex.Array, mask: chex.Array) -> chex.Array:
  """Softmax over the last axis restricted to ``mask`` (broadcast), float32 result."""
  logits = logits.astype(jnp.float32)
  mask = jnp.broadcast_to(mask, logits.shape)
  neg = jnp.finfo(jnp.float32).min
  masked = jnp.where(mask, logits, neg)
  shifted = masked - jax.lax.stop_gradient(jnp.max(masked, axis=-1, keepdims=True))
  e = jnp.where(mask, jnp.exp(jnp.where(mask, shifted, 0.0)), 0.0)
  denom = jnp.sum(e, axis=-1, keepdims=True)
  return e / jnp.where(denom > 0, denom, 1.0)


def attention_dropout(weights: chex.Array, rate: float, rng: chex.PRNGKey | None,
                      deterministic: bool) -> chex.Array:
  """Inverted dropout on attention weights (identity when deterministic or rate 0)."""
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'attention dropout rate must be in [0, 1); got {rate}.')
  if deterministic or rate == 0.0:
    return weights
  if rng is None:
    raise ValueError('rng is required when deterministic=False and dropout_rate > 0.')
  keep = jax.random.bernoulli(rng, 1.0 - rate, weights.shape)
  return jnp.where(keep, weights / (1.0 - rate), jnp.zeros_like(weights))

"""Adjacency normalisations used by the graph layers, chosen by name.

Conventions shared by every module of ``faujax.graph``: node features are
``(..., N, C)`` with any number of leading batch dims; an adjacency is ``(N, N)``
(shared by the batch) or ``(..., N, N)`` (per sample), broadcast against the
features. ``A[i, j] != 0`` means node ``i`` receives from node ``j`` (row =
receiver), so a layer computes ``A @ X``.

Normalisations (``normalize_adjacency(adj, method)``):

* ``'kipf'``: Kipf & Welling, symmetric with self-loops,
  ``D^-1/2 (A + I) D^-1/2`` with ``D`` the row sums of ``A + I`` (default of the
  GCN layer; a self-loop already in ``A`` gains weight 1 more).
* ``'kipf_remaining'``: PyTorch Geometric's ``GCNConv`` convention (its
  ``add_remaining_self_loops`` then ``gcn_norm``), a parity switch for the
  public code built on PyG's ``GCNConv`` (the public code's behaviour; the
  default stays ``'kipf'``): a weight-1 self-loop is added only to the nodes that have none
  (``A_ii == 0``); existing self-loops keep their weight. ``A' = A + I'`` with
  ``I'_ii = [A_ii == 0]``, then ``D^-1/2 A' D^-1/2`` with ``D`` the row sums of
  ``A'`` (PyG's in-degree at the receiving node). Equal to ``'kipf'`` on graphs
  without self-loops.
* ``'sym'``: ``D^-1/2 A D^-1/2`` with ``D`` the row degrees of ``A`` (no
  self-loops added; MACG eq. 7-8, ME-GraphAU's ``normalize_digraph``).
* ``'row'``: ``D^-1 A`` (every row sums to one; Emotion-GCN eq. 2 text).
* ``'mlgcn'``: ``D^-1/2 A^T D^-1/2`` with ``D`` the row sums of ``A``, the form
  used by ML-GCN / Emotion-GCN / SVML-GCN (docs/reference/model_details.md, "ML-GCN").
* ``'none'``: the matrix as given (AU-GCN eq. 6 uses the raw binary graph).

A node whose degree is zero gets a zero row (never NaN, also in gradients).
"""

from __future__ import annotations

import chex
import jax.numpy as jnp

NORMALIZATIONS: tuple[str, ...] = ('kipf', 'kipf_remaining', 'sym', 'row', 'mlgcn', 'none')


def safe_reciprocal(x: chex.Array, power: float = 1.0) -> chex.Array:
  """``x ** -power`` where ``x > 0`` and 0 elsewhere, with finite gradients."""
  positive = x > 0
  safe = jnp.where(positive, x, jnp.ones_like(x))
  return jnp.where(positive, safe ** (-power), jnp.zeros_like(x))


def check_adjacency(adj: chex.Array, num_nodes: int | None = None,
                    name: str = 'adj') -> None:
  """Raises ValueError unless ``adj`` is ``(..., N, N)`` (with ``N == num_nodes``)."""
  shape = getattr(adj, 'shape', None)
  if shape is None or len(shape) < 2 or shape[-1] != shape[-2]:
    raise ValueError(f'{name} must have shape (..., N, N); got shape {shape}.')
  if num_nodes is not None and shape[-1] != num_nodes:
    raise ValueError(
        f'{name} has {shape[-1]} nodes but the node features have {num_nodes} '
        f'(shape {shape}).')


def normalize_adjacency(adj: chex.Array, method: str = 'kipf') -> chex.Array:
  """Returns the normalised adjacency ``(..., N, N)`` (see the module docstring).

  Args:
    adj: ``(..., N, N)`` non-negative edge weights, row = receiving node.
    method: one of ``NORMALIZATIONS``.

  Returns:
    An array with the shape and dtype of ``adj``.
  """
  check_adjacency(adj)
  if method not in NORMALIZATIONS:
    raise ValueError(
        f'Unknown adjacency normalisation method={method!r}; expected one of '
        f'{list(NORMALIZATIONS)}.')
  if method == 'none':
    return adj
  n = adj.shape[-1]
  if method == 'kipf':
    adj = adj + jnp.eye(n, dtype=adj.dtype)
  elif method == 'kipf_remaining':
    eye = jnp.eye(n, dtype=bool)
    missing = eye & (adj == 0)  # (..., N, N): the diagonal entries without a self-loop
    adj = jnp.where(missing, jnp.ones_like(adj), adj)
  degree = jnp.sum(adj, axis=-1)
  if method == 'row':
    return adj * safe_reciprocal(degree)[..., :, None]
  d = safe_reciprocal(degree, 0.5)
  if method == 'mlgcn':
    adj = jnp.swapaxes(adj, -1, -2)
  return d[..., :, None] * adj * d[..., None, :]


def neighbour_mask(adj: chex.Array | None, num_nodes: int,
                   self_loops: bool = True) -> chex.Array:
  """Boolean ``(..., N, N)`` mask ``adj != 0`` (all true if ``adj`` is None).

  With ``self_loops`` the diagonal is always true.
  """
  if adj is None:
    return jnp.ones((num_nodes, num_nodes), dtype=bool)
  check_adjacency(adj, num_nodes)
  mask = adj != 0
  if self_loops:
    mask = mask | jnp.eye(num_nodes, dtype=bool)
  return mask

"""Permutation equivariance of every faujax.graph layer (hypothesis property test)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
  import test_graph_transforms as layers_table
except ImportError:  # tests/ as a package
  from tests import test_graph_transforms as layers_table

LAYERS = layers_table.LAYERS
NAMES = layers_table.NAMES
N = layers_table.N


@pytest.mark.parametrize('name', NAMES)
@settings(max_examples=8, deadline=None)
@given(perm=st.permutations(list(range(N))), seed=st.integers(0, 2 ** 16))
def test_permutation_equivariance(name, perm, seed):
  init, apply = LAYERS[name]
  params = init(jax.random.key(4))
  fn = lambda p, v, g: apply(p, v, g, None)
  x, a = layers_table._inputs(seed)
  perm = np.asarray(perm)
  out = np.asarray(fn(params, x, a))
  out_perm = np.asarray(fn(params, x[perm], a[perm][:, perm]))
  np.testing.assert_allclose(out_perm, out[perm], rtol=1e-5, atol=1e-5)



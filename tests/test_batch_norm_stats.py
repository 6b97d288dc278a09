"""BatchNorm running statistics against PyTorch, and MACG's shared CCFG block's per-AU updates.

* ``unbiased_var``: after several train-mode steps the running mean and variance of
  ``faujax.layers.BatchNorm`` equal those of ``torch.nn.BatchNorm2d`` / ``BatchNorm1d`` (which track
  the unbiased batch variance, n / (n - 1) sigma^2); the default (Flax's biased variance) does not.
* ``CCFG(shared_block=True, per_au_statistics=True)``: the shared LinearBlock's statistics move
  once per AU in each step, as a loop that applies a torch LinearBlock N times (the public code's
  ``CCFG.forward``, lkq52110/au-recognition ``model.py`` lines 277-281) moves them; with the
  public code checked out (``tests/public_code.py``) also against its own ``CCFG`` module.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import public_code
from faujax.layers.batch_norm import BatchNorm, batch_norm, use_unbiased_running_var
from faujax.models.parts import ccfg as ccfg_lib

torch = pytest.importorskip('torch')

STEPS = 4


def _torch_running(module, inputs):
  module.train()
  with torch.no_grad():
    for x in inputs:
      module(torch.from_numpy(x))
  return module.running_mean.numpy(), module.running_var.numpy()


def _faujax_running(bn, inputs_last):
  for x in inputs_last:
    bn(jnp.asarray(x), train=True)
  return np.asarray(bn.mean[...]), np.asarray(bn.var[...])


@pytest.mark.parametrize('unbiased', [True, False])
def test_running_statistics_match_batchnorm2d(unbiased):
  """NHWC faujax BatchNorm vs NCHW torch BatchNorm2d (momentum 0.1), batch 3 of 5 x 4 maps."""
  rng = np.random.default_rng(0)
  inputs = [rng.normal(1.5, 2.0, (3, 6, 5, 4)).astype(np.float32) for _ in range(STEPS)]
  want_mean, want_var = _torch_running(torch.nn.BatchNorm2d(6), inputs)
  bn = BatchNorm(6, rngs=nnx.Rngs(0))
  assert use_unbiased_running_var(bn, unbiased) == 1
  got_mean, got_var = _faujax_running(bn, [x.transpose(0, 2, 3, 1) for x in inputs])
  np.testing.assert_allclose(got_mean, want_mean, rtol=1e-5, atol=1e-6)
  if unbiased:
    np.testing.assert_allclose(got_var, want_var, rtol=1e-5, atol=1e-6)
  else:  # the biased default differs by the factor (n - 1) / n of each step's batch variance
    assert np.min(np.abs(got_var - want_var) / want_var) > 1e-3


def test_running_statistics_match_batchnorm1d_on_nodes_and_vectors():
  """BatchNorm1d on (B, C) (n = B) and on (B, N, C) over the node axis (MACG's graph norm, n =
  B * C) after several steps; the output (biased normalisation) equals torch's too."""
  rng = np.random.default_rng(1)
  vectors = [rng.normal(0.3, 1.0, (4, 7)).astype(np.float32) for _ in range(STEPS)]
  want = _torch_running(torch.nn.BatchNorm1d(7), vectors)
  bn = BatchNorm(7, rngs=nnx.Rngs(0))
  use_unbiased_running_var(bn)
  got = _faujax_running(bn, vectors)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)

  nodes = [rng.normal(-0.5, 3.0, (2, 5, 3)).astype(np.float32) for _ in range(STEPS)]
  ref = torch.nn.BatchNorm1d(5)
  want = _torch_running(ref, nodes)
  node_bn = BatchNorm(5, feature_axes=-2, rngs=nnx.Rngs(0))
  use_unbiased_running_var(node_bn)
  got = _faujax_running(node_bn, nodes)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  with torch.no_grad():
    want_y = ref.train()(torch.from_numpy(nodes[0])).numpy()
  np.testing.assert_allclose(np.asarray(node_bn(jnp.asarray(nodes[0]), train=True)), want_y,
                             rtol=1e-4, atol=1e-5)


def test_unbiased_variance_is_global_under_pmap():
  """Under pmap with ``axis_name`` n counts the values of every device (one device here: the
  statistics of the whole batch)."""
  x = np.random.default_rng(2).normal(size=(1, 4, 3)).astype(np.float32)
  step = jax.pmap(lambda v: batch_norm(
      v, None, None, jnp.zeros(3), jnp.ones(3), train=True, axis_name='i', unbiased_var=True)[2],
      axis_name='i')
  want = 0.9 + 0.1 * np.var(x[0], axis=0, ddof=1)
  np.testing.assert_allclose(np.asarray(step(x))[0], want, rtol=1e-5)


def test_unbiased_variance_refuses_a_single_value():
  with pytest.raises(ValueError, match='more than one value'):
    batch_norm(jnp.ones((1, 3)), None, None, jnp.zeros(3), jnp.ones(3), train=True,
                      unbiased_var=True)


def _shared_ccfg(n, *, per_au, seed=0):
  return ccfg_lib.CCFG(n, 8, features=6, rel_features=2, shared_block=True,
                       per_au_statistics=per_au, rngs=nnx.Rngs(seed))


def _torch_block(module):
  """A torch Linear + BatchNorm1d with the faujax shared block's weights (the public
  ``LinearBlock`` on one pooled token: fc, BatchNorm1d over the channels, ReLU)."""
  block = module.shared_block
  fc = torch.nn.Linear(*block.fc.kernel[...].shape)
  norm = torch.nn.BatchNorm1d(block.fc.kernel[...].shape[1])
  with torch.no_grad():
    fc.weight.copy_(torch.from_numpy(np.asarray(block.fc.kernel[...]).T.copy()))
    fc.bias.copy_(torch.from_numpy(np.array(block.fc.bias[...])))
  return fc, norm


@pytest.mark.parametrize('n', [3, 8])
def test_shared_ccfg_block_moves_statistics_once_per_au(n):
  """Per-AU statistics: after STEPS train steps the shared block's running statistics equal a
  torch block applied N times per step; per-step (the default) equals it applied once."""
  rng = np.random.default_rng(3)
  maps = [rng.normal(size=(4, 3, 3, 8)).astype(np.float32) for _ in range(STEPS)]
  for per_au, calls in ((True, n), (False, 1)):
    module = _shared_ccfg(n, per_au=per_au)
    use_unbiased_running_var(module)
    fc, norm = _torch_block(module)
    norm.train()
    for x in maps:
      pooled = np.asarray(module.topology(jnp.asarray(x)).mean(axis=(1, 2)))
      out = np.asarray(module(jnp.asarray(x), train=True))
      with torch.no_grad():
        for _ in range(calls):
          want = torch.relu(norm(fc(torch.from_numpy(pooled)))).numpy()
      np.testing.assert_allclose(out, np.broadcast_to(want[:, None], out.shape), rtol=1e-4,
                                 atol=1e-5)
    bn = module.shared_block.bn
    np.testing.assert_allclose(np.asarray(bn.mean[...]), norm.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn.var[...]), norm.running_var.numpy(), rtol=1e-5,
                               atol=1e-6)
  # Evaluation applies it once and moves nothing.
  before = np.asarray(module.shared_block.bn.var[...])
  module(jnp.asarray(maps[0]), train=False)
  np.testing.assert_array_equal(np.asarray(module.shared_block.bn.var[...]), before)


def test_per_au_statistics_need_the_shared_block():
  with pytest.raises(ValueError, match='shared_block'):
    ccfg_lib.CCFG(3, 8, features=6, rel_features=2, per_au_statistics=True, rngs=nnx.Rngs(0))


def test_shared_ccfg_block_against_the_public_ccfg():
  """The public code's ``CCFG`` (its weights copied in), 3 train-mode forwards: the output and
  the shared block's running statistics equal faujax's with per-AU statistics."""
  public = public_code.load('au-recognition', 'model', '_public_macg_bn')
  torch.manual_seed(0)
  n, c = 5, 16
  ref = public.CCFG(n, c, c).double()
  module = ccfg_lib.CCFG(n, c, features=c, rel_features=c // 8, lambda_init=1.0,
                         trainable_lambda=False, shared_block=True, per_au_statistics=True,
                         rngs=nnx.Rngs(0))
  use_unbiased_running_var(module)
  topo = module.topology
  with torch.no_grad():
    for mine, theirs in ((topo.rel1, ref.conv1), (topo.rel2, ref.conv2), (topo.local, ref.conv3),
                         (topo.fuse, ref.conv4), (module.shared_block.fc, ref.class_linear.fc)):
      theirs.weight.copy_(torch.from_numpy(
          np.asarray(mine.kernel[...], np.float64).T.reshape(theirs.weight.shape)))
      theirs.bias.copy_(torch.from_numpy(np.asarray(mine.bias[...], np.float64)))
  ref.train()
  rng = np.random.default_rng(4)
  for _ in range(3):
    x = rng.normal(size=(4, 3, 3, c))
    with torch.no_grad():
      want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    got = np.asarray(module(jnp.asarray(x, jnp.float32), train=True))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  norm = ref.class_linear.bn
  np.testing.assert_allclose(np.asarray(module.shared_block.bn.mean[...]),
                             norm.running_mean.numpy(), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(module.shared_block.bn.var[...]),
                             norm.running_var.numpy(), rtol=1e-4, atol=1e-6)

"""faujax.layers.torch_init against torch.nn's own default initialisation (Kolmogorov-Smirnov).

For ``nn.Linear``, ``nn.Conv2d`` and ``nn.ConvTranspose2d``: torch's fan-in read from its weight
equals ``torch_init.fan_in`` of the Flax kernel shape, and many draws of faujax's weights and
biases have the distribution of torch's (two-sample KS) and of U(-1/sqrt(fan_in), 1/sqrt(fan_in))
(one-sample KS); the same test rejects a bound 10 % off, so it can fail.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import stats

from faujax.layers import torch_init

torch = pytest.importorskip('torch')

# Samples per distribution (weights, biases): against a 10 % wider bound KS gives p ~ 1e-36 and
# ~ 1e-10.
DRAWS = {'weight': 20_000, 'bias': 5_000}
P_MIN = 1e-3    # accept torch's distribution unless p < P_MIN


# (torch layer factory, Flax kernel shape, torch_init kind, groups)
LAYERS = {
    'linear': (lambda: torch.nn.Linear(37, 53), (37, 53), 'linear', 1),
    'conv': (lambda: torch.nn.Conv2d(5, 7, (3, 2)), (3, 2, 5, 7), 'conv', 1),
    'conv_grouped': (lambda: torch.nn.Conv2d(6, 4, 3, groups=2), (3, 3, 3, 4), 'conv', 2),
    'conv_transpose': (lambda: torch.nn.ConvTranspose2d(6, 4, (2, 3)), (2, 3, 6, 4),
                       'conv_transpose', 1),
    'conv_transpose_grouped': (lambda: torch.nn.ConvTranspose2d(6, 4, 2, groups=2),
                               (2, 2, 6, 4), 'conv_transpose', 2),
}


def _torch_draws(make, name: str, n: int) -> tuple[np.ndarray, int]:
  """``n`` values of parameter ``name`` ('weight' / 'bias') over fresh torch layers, and torch's
  fan-in of the weight."""
  torch.manual_seed(0)
  layer = make()
  fan = torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]  # pylint: disable=protected-access
  values = []
  while sum(v.size for v in values) < n:
    layer.reset_parameters()  # what the constructor runs: torch's default initialisation
    values.append(getattr(layer, name).detach().numpy().ravel().astype(np.float64))
  return np.concatenate(values)[:n], fan


def _faujax_draws(init, shape, n: int) -> np.ndarray:
  reps = math.ceil(n / math.prod(shape))
  keys = jax.random.split(jax.random.key(1), reps)
  values = jax.jit(jax.vmap(lambda k: init(k, shape)))(keys)
  return np.asarray(values, np.float64).ravel()[:n]


@pytest.mark.parametrize('layer', sorted(LAYERS))
def test_fan_in_is_the_one_torch_reads_from_its_weight(layer):
  make, shape, kind, groups = LAYERS[layer]
  _, fan = _torch_draws(make, 'weight', 1)
  assert torch_init.fan_in(shape, kind, groups) == fan
  # ConvTranspose2d: the *output* channels count (weight (in, out / groups, kh, kw)).
  if kind == 'conv_transpose':
    assert fan == shape[-1] // groups * shape[0] * shape[1]


@pytest.mark.parametrize('layer', sorted(LAYERS))
@pytest.mark.parametrize('name', ['weight', 'bias'])
def test_draws_have_torchs_distribution(layer, name):
  make, shape, kind, groups = LAYERS[layer]
  reference, fan = _torch_draws(make, name, DRAWS[name])
  if name == 'weight':
    ours = _faujax_draws(torch_init.kernel_init(kind, groups), shape, DRAWS[name])
  else:
    ours = _faujax_draws(torch_init.bias_init(fan), (shape[-1],), DRAWS[name])
  b = 1.0 / math.sqrt(fan)
  assert np.abs(ours).max() <= b and np.abs(reference).max() <= b
  assert np.abs(ours).max() > 0.99 * b  # the whole interval is used
  two_sample = stats.ks_2samp(ours, reference)
  uniform = stats.kstest(ours, stats.uniform(loc=-b, scale=2 * b).cdf)
  assert two_sample.pvalue > P_MIN, (two_sample, b)
  assert uniform.pvalue > P_MIN, (uniform, b)
  # The test's power: the same draws against a bound 10 % wider are rejected.
  wide = stats.kstest(ours, stats.uniform(loc=-1.1 * b, scale=2.2 * b).cdf)
  assert wide.pvalue < 1e-6, wide


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match='torch layer kind'):
    torch_init.kernel_init('deconv')
  with pytest.raises(ValueError, match='groups'):
    torch_init.fan_in((2, 2, 6, 5), 'conv_transpose', groups=2)
  with pytest.raises(ValueError, match='fan_in'):
    torch_init.bias_init(0)

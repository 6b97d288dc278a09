"""Shared test set-up: 8 virtual CPU devices for the multi-device tests, and a tiny synthetic dataset.

The device count must be fixed before JAX initialises its backend, so it is set here, when pytest
imports this file, before any test module imports jax. Unless the user set ``XLA_FLAGS``, the
tests run with the XLA CPU options faujax's commands use (``faujax.runtime``).
"""

import os

from faujax import runtime

os.environ['XLA_FLAGS'] = ' '.join(filter(None, (
    os.environ.get('XLA_FLAGS', runtime.xla_flags({}) or ''),
    '--xla_force_host_platform_device_count=8')))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

# The tiny synthetic dataset every end-to-end test uses (9 subjects x 6 frames at 48 px).
TINY_DATA = {'image_size': 48, 'num_subjects': 9, 'frames_per_subject': 6}


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  """A tfds data_dir in which the tiny synthetic BP4D-like dataset is built once per worker."""
  from faujax.data import builders
  import ml_collections
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  cfg = ml_collections.ConfigDict({'name': 'synthetic_faces', 'builder_config': 'bp4d',
                                   'data_dir': data_dir, 'fold': 1, **TINY_DATA})
  builders.get_builder(cfg)
  return data_dir

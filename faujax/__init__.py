"""faujax: JAX/Flax graph models of facial action-unit and expression relations.

Importing faujax imports nothing else: each command and library module imports what it uses
(``faujax.data.builders.register()`` registers the tensorflow-datasets builders, which
``builders.get_builder`` does on first use).
"""

import os

# TensorFlow (the input pipeline only) prints C++ INFO lines at import; keep the console for faujax.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

__version__ = '0.1.0'


def __getattr__(name: str):
  # ``faujax.Predictor`` (faujax.predictor) is imported on first use: importing faujax must not
  # import jax's model stack (jax.distributed.initialize has to come first in multi-process runs).
  if name == 'Predictor':
    from faujax.predictor import Predictor  # pylint: disable=g-import-not-at-top
    return Predictor
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

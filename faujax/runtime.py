"""Process set-up of faujax's commands: XLA CPU options and the persistent compilation cache.

``configure()`` runs first in every ``python -m faujax.<command>`` (before JAX creates its
backend); importing faujax as a library changes nothing. It

* adds ``CPU_XLA_FLAGS`` to ``XLA_FLAGS`` unless the user set ``XLA_FLAGS`` (then theirs are used
  unchanged). In jax 0.10 the XLA CPU backend hands every convolution to YNNPACK; keeping the
  individual convolutions on XLA's own emitter made the ResNet-50 train step 1.4x faster on a
  2-core CPU (``benchmarks/backbones.py --cases resnet50:160``: 5.8 / 6.0 -> 8.1 / 8.5 images/s,
  A/B alternated). Unknown XLA flags abort the process, so the flag is set only for the jaxlib
  versions it was measured on (``_FLAGS_TESTED_ON``);
* turns on JAX's persistent compilation cache in ``$FAUJAX_CACHE_DIR`` or
  ``~/.cache/faujax/jax`` (unless ``JAX_COMPILATION_CACHE_DIR`` is set) for every program, however
  quick to compile, so a second run of the same command skips compilation. Building a model
  eagerly compiles one small program per parameter shape: for MACG at the paper's size (ResNet-50)
  93 programs, 0.9 MB; the second build took 5.1 s instead of 30.5 s on the 2-core CPU (busy
  with other work at the time).
"""

from __future__ import annotations

import os

CPU_XLA_FLAGS: tuple[str, ...] = (
    '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)
_FLAGS_TESTED_ON = ('0.10.',)  # jaxlib version prefixes


def _jaxlib_version() -> str:
  try:
    from importlib import metadata
    return metadata.version('jaxlib')
  except Exception:  # pylint: disable=broad-except
    return ''


def xla_flags(environ: dict[str, str] | None = None) -> str | None:
  """The ``XLA_FLAGS`` faujax's commands run with, or None to leave the environment alone."""
  environ = os.environ if environ is None else environ
  if 'XLA_FLAGS' in environ:
    return None
  if not _jaxlib_version().startswith(_FLAGS_TESTED_ON):
    return None
  return ' '.join(CPU_XLA_FLAGS)


def cache_dir(environ: dict[str, str] | None = None) -> str | None:
  """Where compiled programs are cached, or None when the user configured JAX's own setting."""
  environ = os.environ if environ is None else environ
  if 'JAX_COMPILATION_CACHE_DIR' in environ:
    return None
  return environ.get('FAUJAX_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'faujax', 'jax')


def configure() -> None:
  """Applies ``xla_flags()`` and ``cache_dir()`` (see the module docstring). Call it before the
  first JAX computation of the process."""
  flags = xla_flags()
  if flags is not None:
    os.environ['XLA_FLAGS'] = flags
  directory = cache_dir()
  if directory is not None:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_compilation_cache_dir', directory)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)

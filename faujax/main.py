"""Command line: ``python -m faujax.main --config configs/<name>.py --workdir <dir>``.

Only parses flags and calls ``faujax.train.train_and_evaluate``. Config values can be overridden on
the command line, e.g. ``--config.train.batch_size=64 --config.parallelism=pmap``; unknown keys are
an error. Running the same command again resumes from the newest good checkpoint in ``--workdir``;
a resume with a different config is refused unless ``--allow_config_change`` is given.

Multi-process (multi-host) training: start one process per host with the same flags plus
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``; each process feeds its own
shard of every batch.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from faujax import runtime

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-process runs).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
flags.DEFINE_integer('process_id', None, 'Index of this process (multi-process runs).')
flags.DEFINE_bool('allow_config_change', False,
                  'Resume a --workdir with a config that differs from the run\'s (refused by '
                  'default). The change is recorded in <workdir>/config_history.json; the model '
                  'and input shape cannot change.')
flags.DEFINE_string('cpu_collectives', 'gloo',
                    'Cross-process collectives on CPU devices (multi-process CPU runs).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:  # orbax and tfds log every file at INFO
    logging.set_verbosity(logging.WARNING)
  if FLAGS.coordinator_address:
    jax.config.update('jax_cpu_collectives_implementation', FLAGS.cpu_collectives)
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  logging.info('JAX process %d/%d, local devices %s', jax.process_index(), jax.process_count(),
               jax.local_devices())
  try:
    config = FLAGS.config
    config.keys()  # a config file that failed to load raises here
  except Exception as e:  # pylint: disable=broad-except  # whatever the config file raised
    if FLAGS['verbosity'].present:
      raise
    sys.exit(f'faujax: {_config_error(e)}')
  from faujax import train  # after jax.distributed.initialize, which must precede device use
  try:
    train.train_and_evaluate(config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)
  except (ValueError, FloatingPointError, OSError) as e:  # a config, input or disk problem, or
    if FLAGS['verbosity'].present:                       # a NaN stop
      raise
    sys.exit(f'faujax: {e}\n(run with --verbosity=1 for the traceback)')


def _config_path(argv: list[str]) -> str | None:
  path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if path is None and '--config' in argv[:-1]:
    path = argv[argv.index('--config') + 1]
  return path


def _config_error(error: BaseException) -> str:
  """One line naming the --config file and why it could not be loaded."""
  cause = error
  while cause.__cause__ is not None:
    cause = cause.__cause__
  lines = [l.strip() for l in str(cause).strip().splitlines() if l.strip()]
  detail = lines[-1] if lines else type(cause).__name__
  if not isinstance(cause, flags.Error):  # a flags.Error's last line names its exception
    detail = f'{type(cause).__name__}: {detail}'
  if 'No such file or directory' in detail:
    detail = ('no such file (expected a Python file defining get_config(), optionally followed '
              'by :ARGUMENT)')
  elif 'get_config() takes 0 positional arguments' in detail:
    detail = 'this config file takes no :ARGUMENT'
  return f'cannot load --config {_config_path(sys.argv)}: {detail}'


def _override_error(argv: list[str], error: Exception) -> str:
  """Names the first ``--config.KEY`` override whose key the config does not have."""
  from faujax import config_schema  # pylint: disable=g-import-not-at-top
  path = _config_path(argv)
  overrides = [a[len('--config.'):].split('=', 1)[0] for a in argv if a.startswith('--config.')]
  if path is None:
    return str(error)
  from faujax import config_base  # pylint: disable=g-import-not-at-top
  try:
    config = config_base.load_config_file(path)
  except Exception:  # pylint: disable=broad-except
    return str(error)
  for key in overrides:
    node, parts = config, key.split('.')
    for i, part in enumerate(parts):
      if not hasattr(node, 'keys') or part not in node.keys():
        where = '.'.join(parts[:i])
        known = list(node.keys()) if hasattr(node, 'keys') else []
        return str(config_schema.unknown_key_error(part, where, known)).replace('config..',
                                                                                'config.')
      node = node[part]
  return f'cannot apply the --config overrides: {error}'


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one line instead of a traceback for a config file that cannot be
  loaded and for an unknown ``--config.KEY`` override (one naming the nearest valid keys)."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    sys.exit(f'faujax: {_override_error(argv, e)}')
  except flags.Error as e:
    if '--config=' in str(e).splitlines()[0] and 'config file' in str(e):
      sys.exit(f'faujax: {_config_error(e)}')
    sys.exit(f'faujax: {str(e).splitlines()[0]}\nPass --helpshort to see the flags.')
  except Exception as e:  # pylint: disable=broad-except  # whatever the config file raised
    sys.exit(f'faujax: {_config_error(e)}')


def run() -> None:
  """``app.run(main)`` with ``_parse_flags``."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  runtime.configure()
  run()

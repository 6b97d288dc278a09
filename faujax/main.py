"""Command line: ``python -m faujax.main --config configs/<name>.py --workdir <dir>``.

Only parses flags and calls ``faujax.train.train_and_evaluate``. Config values can be overridden on
the command line, e.g. ``--config.train.batch_size=64 --config.parallelism=pmap``; unknown keys are
an error. Running the same command again resumes from the newest checkpoint in ``--workdir``.

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

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-process runs).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
flags.DEFINE_integer('process_id', None, 'Index of this process (multi-process runs).')
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
  from faujax import config_schema  # pylint: disable=g-import-not-at-top
  from faujax import train  # after jax.distributed.initialize, which must precede device use
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except config_schema.ConfigError as e:  # a config mistake: one line, no traceback
    sys.exit(f'faujax: {e}')


if __name__ == '__main__':
  app.run(main)

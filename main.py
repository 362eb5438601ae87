"""gen_jax entry point: `python main.py --config configs/vae_digits.py --workdir runs/vae_digits`."""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow is only imported by TFDS when it prepares data
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')  # silences its start-up banner; TF does no maths here

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, TensorBoard events and samples.')
flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'eval'],
                  'train: train (resuming from --workdir); sample: images from its latest checkpoint; eval: '
                  'FD / IS / KID / precision-recall (+ bits/dim, alignment) of it (eval.follow: of every new one).')
flags.DEFINE_multi_string('prompt', None, '--mode sample, text configs: a prompt (repeatable); default: the '
                          "dataset's fixed prompt per class.")
flags.DEFINE_multi_string('image', None, '--mode sample, unclip configs: an image file to make variations of '
                          '(repeatable).')
flags.DEFINE_string('negative_prompt', '', '--mode sample, text configs: replaces the null conditioning in guidance.')
flags.DEFINE_string('coordinator_address', '', 'Multi-process runs: host:port of process 0.')
flags.DEFINE_integer('num_processes', 0, 'Multi-process runs: number of processes.')
flags.DEFINE_integer('process_id', -1, 'Multi-process runs: this process index.')
flags.mark_flags_as_required(['config', 'workdir'])

MODES = {'train': 'gen_jax.train:train', 'sample': 'gen_jax.sample:sample', 'eval': 'gen_jax.evaluate:evaluate'}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # progress lines go to stdout; -v 0 shows library INFO logs
  from gen_jax import parallel
  from gen_jax.errors import UserError
  parallel.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  module_name, function_name = MODES[FLAGS.mode].split(':')
  run = getattr(__import__(module_name, fromlist=[function_name]), function_name)
  kwargs = {}
  if FLAGS.prompt or FLAGS.negative_prompt or FLAGS.image:
    if FLAGS.mode != 'sample':
      sys.exit('error: --prompt, --negative_prompt and --image are for --mode sample.')
    kwargs = {'prompts': FLAGS.prompt or [], 'negative_prompt': FLAGS.negative_prompt, 'image_files': FLAGS.image or []}
  if FLAGS.mode == 'eval':
    kwargs = {'config_file': config_flags.get_config_filename(FLAGS['config'])}
  try:
    result = run(FLAGS.config, FLAGS.workdir, **kwargs)
  except UserError as e:
    sys.exit(f'error: {e}')
  if getattr(result, 'preempted', False):
    from gen_jax.preemption import PREEMPTED_EXIT_CODE
    sys.exit(PREEMPTED_EXIT_CODE)  # saved, not finished: launchers rerun the same command


def parse_flags(argv):
  """absl's parser, but a bad `--config.x=y` (misspelt key, wrong type) is one clear line, not a traceback."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {e}\nPass --helpfull to see the flags.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # raised by ml_collections for --config.*
    message = str(e).replace('\\n', ' ').replace('\n', ' ').replace('\\', '').replace("'", '').strip('"')
    sys.exit(f'error: bad --config override: {message} (the config is locked: keys must exist in the config '
             f'file or configs/default.py).')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)

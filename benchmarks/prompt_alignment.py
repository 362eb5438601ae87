"""Alignment of free-form prompts whose intended class you state: does a text-to-image checkpoint generalise to
phrasings it never saw in training?

  python benchmarks/prompt_alignment.py --config configs/ddpm_text_digits.py --workdir runs/ddpm_text_digits \
      --prompt "the digit eight written by hand=8" --prompt "a scribbled 4=4"

Samples `sample.num_samples` images per prompt from the latest checkpoint (as `--mode sample` does) and prints
the fraction the dataset classifier assigns to the stated class. Prints lines, then one JSON line.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Workdir of a trained text-to-image run.')
flags.DEFINE_multi_string('prompt', None, '"PROMPT=LABEL" (LABEL: the class index the prompt means).')
flags.mark_flags_as_required(['config', 'workdir', 'prompt'])


def main(argv):
  del argv
  from gen_jax.evaluation import cache_dir
  from gen_jax.evaluation.classifier import alignment, get_classifier
  from gen_jax.sample import sample

  config = FLAGS.config
  pairs = [p.rsplit('=', 1) for p in FLAGS.prompt]
  prompts, labels = [p for p, _ in pairs], [int(label) for _, label in pairs]
  with np.load(sample(config, FLAGS.workdir, prompts=prompts)) as data:
    images = data['images']
  classifier = get_classifier(config.data, cache_dir(config.classifier.cache_dir, 'classifier'))
  n = config.sample.num_samples
  rows = {p: alignment(classifier, images[i * n:(i + 1) * n], np.full(n, label))[label]
          for i, (p, label) in enumerate(zip(prompts, labels))}
  for p, value in rows.items():
    print(f'{value:6.1%}  {p}')
  encoder = config.text.encoder if 'text' in config else f'{config.model.family} (its CLIP)'
  print(json.dumps({'workdir': FLAGS.workdir, 'encoder': encoder, 'guidance': config.sample.guidance,
                    'num_per_prompt': n, 'classifier_test_accuracy': classifier.test_accuracy, 'alignment': rows}))


if __name__ == '__main__':
  app.run(main)

"""The README's unCLIP figure: the two-stage pipeline drawn above what it makes from a trained checkpoint.

  python benchmarks/unclip_pipeline_figure.py --config configs/unclip_digits.py --workdir runs/unclip_digits \
      --out docs/unclip_digits.png

Top: text -> CLIP text embedding -> prior -> CLIP image embedding -> decoder -> image, and the variation path
(image -> CLIP image encoder -> decoder). Below: `--per_row` samples for each class prompt (guidance
sample.guidance), and variations of test digits (each row: the source, then its variations).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'An unclip config.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Workdir of a trained unclip run.')
flags.DEFINE_string('out', 'docs/unclip_digits.png', 'Where to write the figure.')
flags.DEFINE_integer('per_row', 8, 'Samples per prompt and variations per source image.')
flags.DEFINE_integer('num_sources', 4, 'Test images to make variations of.')
flags.mark_flags_as_required(['config', 'workdir'])


def _draw_pipeline(ax):
  boxes = [('"a handwritten\ndigit three"', 0.07), ('CLIP text\nencoder', 0.24), ('prior\n(diffusion)', 0.39),
           ('CLIP image\nembedding', 0.54), ('decoder\n(guided UNet)', 0.71), ('image', 0.88)]
  for text, x in boxes:
    ax.text(x, 0.7, text, ha='center', va='center', fontsize=8, bbox=dict(boxstyle='round', fc='#eef', ec='#446'))
  for (_, a), (_, b) in zip(boxes, boxes[1:]):
    ax.annotate('', xy=(b - 0.055, 0.7), xytext=(a + 0.065, 0.7), arrowprops=dict(arrowstyle='->'))
  ax.text(0.37, 0.15, 'an image', ha='center', va='center', fontsize=8,
          bbox=dict(boxstyle='round', fc='#efe', ec='#464'))
  ax.text(0.54, 0.15, 'CLIP image\nencoder', ha='center', va='center', fontsize=8,
          bbox=dict(boxstyle='round', fc='#efe', ec='#464'))
  ax.annotate('', xy=(0.48, 0.15), xytext=(0.42, 0.15), arrowprops=dict(arrowstyle='->'))
  ax.annotate('', xy=(0.54, 0.55), xytext=(0.54, 0.3), arrowprops=dict(arrowstyle='->'))
  ax.text(0.7, 0.15, 'variations: the prior is skipped', fontsize=8, va='center')
  ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.axis('off')


def main(argv):
  del argv
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  from gen_jax import images, parallel
  from gen_jax.data import load_split, make_source
  from gen_jax.families import get_family
  from gen_jax.sample import draw_samples, restore_latest

  config, n = FLAGS.config, FLAGS.per_row
  mesh = parallel.make_mesh()
  family = get_family(config)
  source = make_source(config.data)
  family.bind_data(source)
  state, step = restore_latest(config, FLAGS.workdir, family, tuple(source.image_shape), mesh)
  prompts = family.fixed_prompts()
  cond = family.prompt_conditioning(prompts, n, config.sample.guidance)
  from_text = draw_samples(family, state, mesh, config.sample.seed, len(cond.prompts), 64, cond.inputs)
  test, labels = load_split(config.data, config.data.eval_split)
  picks = [int(np.flatnonzero(labels == k)[0]) for k in range(FLAGS.num_sources)]
  sources = test[picks]
  cond = family.image_conditioning(sources, [str(p) for p in picks], n, config.sample.guidance)
  variations = draw_samples(family, state, mesh, config.sample.seed, len(cond.prompts), 64, cond.inputs)

  to_float = lambda a: a.astype(np.float32) / 127.5 - 1.0
  text_grid = images.make_grid(to_float(from_text), n)
  rows = np.concatenate([np.concatenate([sources[i:i + 1], variations[i * n:(i + 1) * n]]) for i in range(len(picks))])
  variation_grid = images.make_grid(to_float(rows), n + 1)
  fig = plt.figure(figsize=(10, 6.4))
  grid = fig.add_gridspec(2, 2, height_ratios=[1, 4], width_ratios=[n, n + 1])
  _draw_pipeline(fig.add_subplot(grid[0, :]))
  ax = fig.add_subplot(grid[1, 0])
  ax.imshow(text_grid.squeeze(), cmap='gray')
  ax.set_yticks([(i + 0.5) * text_grid.shape[0] / len(prompts) for i in range(len(prompts))], prompts, fontsize=7)
  ax.set_xticks([]), ax.set_title(f'prompt -> prior -> decoder (guidance {config.sample.guidance})', fontsize=9)
  ax = fig.add_subplot(grid[1, 1])
  ax.imshow(variation_grid.squeeze(), cmap='gray')
  ax.set_xticks([]), ax.set_yticks([]), ax.set_title('variations: source (left column), then decoder samples',
                                                    fontsize=9)
  fig.suptitle(f'unCLIP on the digits ({config.model.family}, step {step}; CLIP from {config.unclip.clip_workdir})',
               fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(FLAGS.out) or '.', exist_ok=True)
  fig.savefig(FLAGS.out, dpi=110)
  print(f'Wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)

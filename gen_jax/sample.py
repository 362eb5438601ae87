"""`--mode sample`: images from the latest checkpoint -> a PNG grid and an .npz of uint8 samples.

Sampling is sharded over all devices, so large sample sets (e.g. 50k for FID) use every accelerator. Sample i
comes from key fold_in(PRNGKey(sample.seed), i): reproducible, and the same on any number of devices.

Text-to-image families sample from prompts (`--prompt`, repeatable; without it the dataset's fixed prompt per
class), `sample.num_samples` per prompt, guided by `sample.guidance`: `prompts_<step>.npz` holds `images` and
`prompts`, with one captioned PNG grid per prompt. Prompts that name a class of the dataset are scored by the
dataset classifier (gen_jax/evaluation/classifier.py): alignment = fraction classified as the prompted class.
"""

from __future__ import annotations

import functools
import io
import os
import re

import jax
import numpy as np

from gen_jax import compiler, images, parallel
from gen_jax import workdir as workdir_lib
from gen_jax.checkpoint import Checkpointer, abstract_like
from gen_jax.data import make_source
from gen_jax.data.captions import caption_table
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.reporting import Progress


@functools.cache  # one compiled sampler per (family, mesh): follow-mode evaluations reuse it
def make_example_sampler(family, mesh):
  """jit(shard_map): one uint8 sample per key in `rows['key']` [b 2] (and per row of `rows['cond']`), split
  over the `data` axis and vmapped one at a time, so a sample depends on its key only, never on which device or
  batch drew it (`--mode eval` on 8 devices equals 1 device; as fast as one batched call on a CPU)."""
  def per_device(state, rows):
    def one(key, cond):
      cond = None if cond is None else jax.tree.map(lambda a: a[None], cond)
      return family.sample(state, key, 1, cond)[0]
    return images.quantize(jax.vmap(one)(rows['key'], rows.get('cond')))

  return parallel.make_row_fn(per_device, mesh)


def example_keys(seed: int, n: int) -> np.ndarray:
  """Key i = fold_in(PRNGKey(seed), i), as host raw keys [n 2]."""
  return np.asarray(jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(np.arange(n)))


def draw_samples(family, state, mesh, seed: int, num: int, batch: int, cond=None, progress=None) -> np.ndarray:
  """uint8 samples [num h w c], sample i from key i of `seed`, in sharded batches; cond arrays are [num ...]."""
  rows = {'key': example_keys(seed, num)}
  if cond is not None:
    rows['cond'] = cond
  return parallel.map_rows(make_example_sampler(family, mesh), mesh, rows, batch, state, progress=progress)


def _slug(text: str) -> str:
  return re.sub(r'[^a-z0-9]+', '_', text.lower()).strip('_')[:60]


def restore_latest(config, workdir: str, family, image_shape, mesh, step: int | None = None):
  """(state with its frozen inputs, step) from checkpoint `step` (default: the latest) in `workdir`."""
  if not workdir_lib.path(workdir, 'checkpoints').is_dir():
    raise UserError(f'No checkpoints in {workdir!r}: train first (--mode train) with the same --workdir.')
  replicated = parallel.replicated(mesh)
  init = functools.partial(family.init, image_shape=image_shape)
  abstract = abstract_like(jax.eval_shape(init, jax.random.PRNGKey(0)), replicated)
  checkpointer = Checkpointer(workdir, config.max_checkpoints_to_keep, async_save=False)
  try:
    if step is not None:
      state, _ = checkpointer.restore(abstract, step, family.checkpoint_metadata())
    else:  # the newest that restores; moving damaged ones aside is the training job's business
      found = checkpointer.restore_latest_good(abstract, family.checkpoint_metadata(), move_aside=False)
      if found is None:
        raise UserError(f'No checkpoints in {workdir!r}: train first (--mode train) with the same --workdir.')
      step, state, _ = found
  finally:
    checkpointer.close()
  return state.replace(frozen=jax.device_put(family.frozen(), replicated)), step


def load_image(path: str, image_shape) -> np.ndarray:
  """An image file -> uint8 [h w c] of the model's shape (grey or RGB as c says, resized bilinearly)."""
  from PIL import Image
  h, w, c = image_shape
  try:
    with Image.open(path) as image:
      image = image.convert('L' if c == 1 else 'RGB').resize((w, h), Image.BILINEAR)
  except (FileNotFoundError, IsADirectoryError):
    raise UserError(f'--image {path}: no such file.') from None
  except OSError as e:
    raise UserError(f'--image {path}: not an image PIL can read ({e}).') from None
  return np.asarray(image, np.uint8).reshape(h, w, c)


def sample(config, workdir: str, prompts=(), negative_prompt: str = '', image_files=()) -> str:
  """Writes <workdir>/samples/sample_<step>.{png,npz} (or prompts_<step>.npz + a PNG per prompt for text
  families, variations_<step>.npz + a PNG per image for `image_files`); returns the .npz path."""
  compiler.setup_compilation_cache(config, workdir)
  num, batch = config.sample.num_samples, config.sample.batch_size
  mesh = parallel.make_mesh()
  if batch % mesh.devices.size:
    raise UserError(f'sample.batch_size={batch} must be a multiple of the {mesh.devices.size} devices.')
  if num < 1:
    raise UserError(f'sample.num_samples={num} must be >= 1.')
  family = get_family(config)
  if not family.generative:
    raise UserError(f'model.family={config.model.family!r} does not generate images: use --mode eval for its '
                    f'metrics.')
  source = make_source(config.data)
  family.bind_data(source)
  cond = None
  if image_files:  # variations; checked before restoring: a bad file fails before any work
    if prompts or negative_prompt:
      raise UserError('Give --image (variations of an image) or --prompt / --negative_prompt, not both.')
    prompts = [f'variations of {os.path.basename(p)}' for p in image_files]
    if len(set(prompts)) < len(prompts):  # same file names from different folders: number them
      prompts = [f'{name} ({i})' for i, name in enumerate(prompts)]
    loaded = np.stack([load_image(p, tuple(source.image_shape)) for p in image_files])
    cond = family.image_conditioning(loaded, prompts, num, config.sample.guidance)
  prompts = list(prompts) or family.fixed_prompts()
  if cond is None and (prompts or negative_prompt):  # built before restoring: a bad prompt fails before any work
    cond = family.prompt_conditioning(prompts, num, config.sample.guidance, negative_prompt)
  clip = _scoring_clip(config, family, mesh) if cond is not None and not image_files else None  # fails early
  state, step = restore_latest(config, workdir, family, tuple(source.image_shape), mesh)

  if cond is None:
    samples = draw_samples(family, state, mesh, config.sample.seed, num, batch, progress=Progress('sampling'))
    stem = os.fspath(workdir_lib.path(workdir, 'samples', f'sample_{step:06d}'))
    if jax.process_index() == 0:
      _save_npz(stem + '.npz', images=samples)
      images.save_png(stem + '.png', images.make_grid(samples[:min(num, 256)].astype(np.float32) / 127.5 - 1.0))
      print(f'Wrote {num} samples from step {step} to {stem}.npz and a grid to {stem}.png', flush=True)
    return stem + '.npz'

  samples = draw_samples(family, state, mesh, config.sample.seed, len(cond.prompts), batch, cond.inputs,
                         Progress('sampling'))
  clip_scores = None
  if clip is not None:  # on every process: the CLIP's embeddings are sharded over the global mesh
    from gen_jax.evaluation.clip_score import per_prompt_scores
    clip_scores = per_prompt_scores(clip, samples, cond.prompts)[1]
  kind = 'variations' if image_files else 'prompts'
  stem = os.fspath(workdir_lib.path(workdir, 'samples', f'{kind}_{step:06d}'))
  if jax.process_index() == 0:
    _save_npz(stem + '.npz', images=samples, prompts=np.asarray(cond.prompts),
              **({'sources': loaded} if image_files else {}))
    for i, prompt in enumerate(prompts):
      grid = images.make_grid(samples[i * num:(i + 1) * num][:256].astype(np.float32) / 127.5 - 1.0)
      images.save_png(f'{stem}_{i:02d}_{_slug(prompt)}.png', images.captioned(grid, prompt))
    print(f'Wrote {num} samples for each of {len(prompts)} prompt(s) from step {step} (guidance '
          f'{config.sample.guidance}) to {stem}.npz and {stem}_*.png', flush=True)
    if image_files:
      report_variations(config, source, prompts, loaded, samples, num, stem)
    else:
      report_alignment(config, workdir, source, prompts, samples, num, stem, clip_scores)
  return stem + '.npz'


def _scoring_clip(config, family, mesh):
  """The CLIP of `eval.clip_workdir` (None when unset); an unCLIP's own frozen CLIP when it is that one."""
  if not config.eval.clip_workdir:
    return None
  own = getattr(family, 'clip', None)
  if own is not None and os.fspath(workdir_lib.path(own.workdir)) == os.fspath(
      workdir_lib.path(config.eval.clip_workdir)):
    return own
  from gen_jax.evaluation.clip_score import load_clip
  return load_clip(config.eval.clip_workdir, mesh)


def report_alignment(config, workdir, source, prompts, samples, num, stem, clip_scores=None) -> dict | None:
  """Prints and saves (<stem>_alignment.json) the classifier alignment of every prompt that names a class and,
  with `eval.clip_workdir`, the CLIP score of every prompt (free text too)."""
  table = caption_table(config.data.name, source.class_names)
  labels = [table.label_of(p) for p in prompts]
  known = [i for i, label in enumerate(labels) if label is not None]
  report = {'num_per_prompt': num, 'guidance': config.sample.guidance}
  if clip_scores is not None:
    print(f'CLIP score (100 x cosine; {num} samples each):')
    for prompt, value in clip_scores.items():
      print(f'  {value:6.2f}  {prompt}')
    report['clip_workdir'], report['clip_score'] = config.eval.clip_workdir, clip_scores
  if known and len(source.class_names) > 1:
    from gen_jax.evaluation import cache_dir
    from gen_jax.evaluation.classifier import alignment, get_classifier
    classifier = get_classifier(config.data, cache_dir(config.classifier.cache_dir, 'classifier'))
    rows = {prompts[i]: alignment(classifier, samples[i * num:(i + 1) * num], np.full(num, labels[i]))[labels[i]]
            for i in known}
    print(f'alignment (dataset classifier, test accuracy {classifier.test_accuracy:.3f}; {num} samples each):')
    for prompt, value in rows.items():
      print(f'  {value:6.1%}  {prompt}')
    report.update(classifier_test_accuracy=classifier.test_accuracy, alignment=rows)
  if 'alignment' not in report and 'clip_score' not in report:
    return None
  workdir_lib.write_json(stem + '_alignment.json', report)
  return report


def report_variations(config, source, names, sources, samples, num, stem) -> dict | None:
  """Prints and saves (<stem>_variations.json) how often the dataset classifier gives a variation the class it
  gives its source image (does a variation of a seven stay a seven?)."""
  if len(source.class_names) < 2:
    return None
  from gen_jax.evaluation import cache_dir
  from gen_jax.evaluation.classifier import get_classifier
  classifier = get_classifier(config.data, cache_dir(config.classifier.cache_dir, 'classifier'))
  source_class, sample_class = classifier.predict(sources), classifier.predict(samples).reshape(len(names), num)
  rows = {name: {'source_class': source.class_names[c], 'same_class': float(np.mean(row == c))}
          for name, c, row in zip(names, source_class, sample_class)}
  print(f'variations keeping their source\'s class (dataset classifier, test accuracy '
        f'{classifier.test_accuracy:.3f}; {num} each):')
  for name, row in rows.items():
    print(f'  {row["same_class"]:6.1%}  {name} (classified {row["source_class"]})')
  report = {'classifier_test_accuracy': classifier.test_accuracy, 'num_per_image': num,
            'guidance': config.sample.guidance, 'variations': rows}
  workdir_lib.write_json(stem + '_variations.json', report)
  return report


def _save_npz(path: str, **arrays) -> None:
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  workdir_lib.write_bytes(path, buffer.getvalue())

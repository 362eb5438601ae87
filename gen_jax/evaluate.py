"""`--mode eval`: the full evaluation of a checkpoint, written to stdout, TensorBoard and eval/step_XXXXXX.json.

Per checkpoint: `eval.num_samples` images from the EMA params where the family has them (text families: split
evenly over the dataset's class prompts, at `sample.guidance`), drawn sharded over every device with one key per
sample (sample i is the same on any device count), quantised to uint8 exactly as saved PNGs. Then, on the
features of each enabled extractor (dataset classifier: offline; FID Inception: pytorch-fid's weights) against
reference statistics of every example of `eval.reference_split`:
  FD, IS (10 splits), KID (unbiased, subsets), precision/recall (k-NN, k=3),
with the floor beside them: the same metrics for N real images of `data.eval_split` (FD(train, test) at the same
N, or all of the split when it is smaller). Text families add classifier alignment per class prompt; VAE and
DDPM add the likelihood bound in bits/dim over every example of `data.eval_split` (none dropped). With
`eval.clip_workdir` (a trained CLIP run), text families add CLIP score per prompt, beside real held-out images'
with their class prompts. Non-generative families (CLIP) report `Family.representation_metrics` on the
held-out split instead (zero-shot accuracy, retrieval).

`eval.follow=True` evaluates every checkpoint a running training job writes, once each (a rerun skips steps
whose JSON exists), and stops after evaluating `total_steps` or after `eval.follow_timeout_s` without news.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np

from gen_jax import compiler, parallel, provenance
from gen_jax import workdir as workdir_lib
from gen_jax.checkpoint import Checkpointer, error_summary
from gen_jax.data import dataset_name, load_split, make_source
from gen_jax.errors import UserError
from gen_jax.evaluation import cache_dir, metrics
from gen_jax.evaluation.features import FeatureExtractor, classifier_extractor, inception_extractor
from gen_jax.evaluation.reference import Reference, reference_statistics
from gen_jax.families import get_family
from gen_jax.reporting import Progress
from gen_jax.sample import draw_samples, example_keys, restore_latest


def make_bits_per_dim(family, mesh):
  def per_device(state, rows):
    return family.bits_per_dim(state, {'image': rows['image'].astype(np.float32) / 127.5 - 1.0}, rows['key'])
  return parallel.make_row_fn(per_device, mesh)


def feature_metrics(ev, prefix: str, reference: Reference, features: np.ndarray, logits: np.ndarray) -> dict:
  """FD / IS / KID / precision-recall of `features` [n d] (and `logits` [n k]) against `reference`."""
  out = {f'{prefix}_fd': metrics.frechet_distance(metrics.gaussian_stats(features), reference.stats)}
  out[f'{prefix}_is'], out[f'{prefix}_is_std'] = metrics.inception_score(  # splits of a random order, not of
      logits[random_subset(len(logits), len(logits))], min(ev.is_splits, len(logits)))  # one class each
  out[f'{prefix}_kid'], out[f'{prefix}_kid_std'] = metrics.kernel_inception_distance(
      reference.features, features, ev.kid_subsets, ev.kid_subset_size)
  m = min(len(reference.features), len(features))  # equal numbers per side, random ones (samples may be in
  out[f'{prefix}_precision'], out[f'{prefix}_recall'] = metrics.precision_recall(  # class order: text families)
      reference.features[random_subset(len(reference.features), m)], features[random_subset(len(features), m)],
      ev.pr_k)
  return out


def random_subset(n: int, m: int) -> np.ndarray:
  """A fixed random choice of m of n indices (the same for every checkpoint and run)."""
  return np.random.default_rng(0).permutation(n)[:m]


class Evaluator:
  """Everything that does not change between checkpoints (extractors, references, floors), built once."""

  def __init__(self, config, workdir: str, config_file: str = '', devices=None):
    self.config, self.workdir, self.config_file = config, workdir, config_file
    ev = config.eval
    self.mesh = parallel.make_mesh(devices)
    devices = self.mesh.devices.size
    if ev.batch_size % devices:
      raise UserError(f'eval.batch_size={ev.batch_size} must be a multiple of the {devices} devices.')
    self.family = get_family(config)
    self.source = make_source(config.data)
    self.family.bind_data(self.source)
    self.image_shape = tuple(self.source.image_shape)
    self.prompts, self.labels, self.cond = [], None, None
    self.extractors: list[FeatureExtractor] = []
    self._bpd = self.clip = None
    if not self.family.generative:  # a representation (CLIP): its own metrics on the held-out split
      self.held_out = load_split(config.data, config.data.eval_split)
      self.num_samples = len(self.held_out[1])
      self.floor = {'split': config.data.eval_split, 'n': self.num_samples}
      return
    if not (ev.classifier or ev.inception):
      raise UserError('Nothing to evaluate: set --config.eval.classifier=True and/or --config.eval.inception=True.')
    n = ev.num_samples
    if self.family.conditional:
      self.prompts = self.family.fixed_prompts()
      per_prompt = n // len(self.prompts)
      if per_prompt < 1:
        raise UserError(f'eval.num_samples={n} is fewer than the {len(self.prompts)} class prompts.')
      self.cond = self.family.prompt_conditioning(self.prompts, per_prompt, config.sample.guidance)
      self.labels = np.repeat(np.arange(len(self.prompts)), per_prompt)
      n = len(self.labels)
    if n < max(ev.is_splits, ev.pr_k + 1, 2):
      raise UserError(f'eval.num_samples={n} is too few for IS ({ev.is_splits} splits) and precision/recall.')
    self.num_samples = n
    self.classifier = None
    eval_cache = cache_dir(ev.cache_dir, 'eval')
    if ev.inception:  # first: a missing weight file fails before anything is computed
      self.extractors.append(inception_extractor(ev.inception_weights, eval_cache))
    if ev.classifier:
      from gen_jax.evaluation.classifier import get_classifier
      self.classifier = get_classifier(config.data, cache_dir(config.classifier.cache_dir, 'classifier'))
      self.extractors.append(classifier_extractor(self.classifier))
    self.references = {e.name: reference_statistics(config.data, ev.reference_split, e, self.mesh, eval_cache,
                                                    ev.max_reference_features, Progress(f'{e.name} reference'))
                       for e in self.extractors}
    self.clip = self._clip()
    self.floor = self._floor(eval_cache)
    self._bpd = make_bits_per_dim(self.family, self.mesh) if self._wants_bpd() else None
    self._held_out = load_split(config.data, config.data.eval_split)[0] if self._bpd else None  # read once

  def _clip(self):
    workdir = self.config.eval.clip_workdir
    if not workdir:
      return None
    if not self.prompts:
      raise UserError(f'eval.clip_workdir scores samples against their prompts; model.family='
                      f'{self.config.model.family!r} has none (use a text family, e.g. configs/ddpm_text_digits.py).')
    own = getattr(self.family, 'clip', None)  # an unCLIP's frozen CLIP, when it is the one asked for
    if own is not None and workdir_lib.path(own.workdir) == workdir_lib.path(workdir):
      return own
    from gen_jax.evaluation.clip_score import load_clip
    return load_clip(workdir, self.mesh)

  def _wants_bpd(self) -> bool:
    return bool(self.config.eval.bits_per_dim and self.family.reports_bits_per_dim)

  def _floor(self, eval_cache: str) -> dict:
    """The metrics of N real held-out images (all of the split when it has fewer) against the same reference:
    what a perfect model would score at this N (FD and KID are biased upwards at small N)."""
    ev, split = self.config.eval, self.config.data.eval_split
    floor = {}
    for e in self.extractors:
      held_out = reference_statistics(self.config.data, split, e, self.mesh, eval_cache, self.num_samples,
                                      Progress(f'{e.name} {split} split'))
      floor.update(feature_metrics(ev, e.name, self.references[e.name], held_out.features, held_out.logits))
      floor['n'] = len(held_out.features)
    floor['split'] = split
    if self.clip is not None:  # real held-out images with their class prompts: the reference CLIP score
      from gen_jax.evaluation.clip_score import per_prompt_scores
      images, labels = load_split(self.config.data, split)
      floor['clip_score'], floor['clip_score_per_prompt'] = per_prompt_scores(
          self.clip, images, [self.prompts[k] for k in labels])
      floor['clip_score_n'] = len(labels)  # every image of the split (the other floors: at most N)
    if self.classifier is not None:
      floor['classifier_test_accuracy'] = self.classifier.test_accuracy
    return floor

  def evaluate_step(self, step: int) -> dict:
    config, ev = self.config, self.config.eval
    start = time.time()
    try:
      state, step = restore_latest(config, self.workdir, self.family, self.image_shape, self.mesh, step)
    except UserError:
      raise  # a config mismatch
    except Exception as e:  # noqa: BLE001 (Orbax raises bare Exception around TensorStore's read errors)
      if step not in _checkpoint_steps(config, self.workdir):
        raise CheckpointGone(step) from None
      raise CheckpointDamaged(error_summary(e)) from e
    if not self.family.generative:
      if jax.process_index() == 0:
        print(f'Evaluating step {step} on {self.num_samples} {config.data.eval_split} images', flush=True)
      results = self.family.representation_metrics(state, *self.held_out, self.mesh)
      return self._report(step, start, start, results)
    if jax.process_index() == 0:
      print(f'Evaluating step {step}: {self.num_samples} samples'
            + (f' ({len(self.prompts)} class prompts, guidance {config.sample.guidance})' if self.prompts else ''),
            flush=True)
    samples = draw_samples(self.family, state, self.mesh, ev.seed, self.num_samples, ev.batch_size,
                           None if self.cond is None else self.cond.inputs, Progress('sampling'))
    sample_s = time.time() - start
    results = {}
    for e in self.extractors:
      out = e(samples, self.mesh, Progress(f'{e.name} features'))
      results.update(feature_metrics(ev, e.name, self.references[e.name], out['features'], out['logits']))
      if self.floor['n'] < self.num_samples:  # FD is biased by N: also at the floor's N, like for like
        results[f'{e.name}_fd_at_floor_n'] = metrics.frechet_distance(metrics.gaussian_stats(
            out['features'][random_subset(self.num_samples, self.floor['n'])]), self.references[e.name].stats)
      if e.name == 'classifier' and self.labels is not None:
        predicted = out['logits'].argmax(-1)
        per_class = {p: float(np.mean(predicted[self.labels == k] == k)) for k, p in enumerate(self.prompts)}
        results['alignment'] = float(np.mean(list(per_class.values())))
        results['alignment_per_prompt'] = per_class
    if self.clip is not None:
      from gen_jax.evaluation.clip_score import per_prompt_scores
      results['clip_score'], results['clip_score_per_prompt'] = per_prompt_scores(self.clip, samples,
                                                                                  self.cond.prompts)
    if self._bpd is not None:
      test = self._held_out
      if jax.process_index() == 0:
        print(f'  bits/dim over all {len(test)} {config.data.eval_split} images ...', flush=True)
      bpd = parallel.map_rows(self._bpd, self.mesh, {'image': test, 'key': example_keys(ev.seed + 1, len(test))},
                              ev.batch_size, state, progress=Progress(f'bits/dim ({config.data.eval_split})'))
      results['bits_per_dim'] = float(np.mean(bpd, dtype=np.float64))
      results['bits_per_dim_n'] = len(test)
    return self._report(step, start, start + sample_s, results)

  def _report(self, step: int, start: float, sampled: float, results: dict) -> dict:
    config, ev = self.config, self.config.eval
    report = {
        'step': step, 'workdir': os.fspath(workdir_lib.path(self.workdir)), 'config_file': self.config_file,
        'family': config.model.family, 'dataset': dataset_name(config.data), 'image_shape': list(self.image_shape),
        'num_samples': self.num_samples, 'seed': ev.seed, 'guidance': config.sample.guidance if self.prompts else None,
        'reference_split': ev.reference_split, 'extractors': {e.name: e.fingerprint for e in self.extractors},
        'hardware': provenance.hardware_description(), 'devices': int(self.mesh.devices.size),
        'train_hardware': provenance.read_train_time(self.workdir)['hardware'],
        'train_wall_s': provenance.train_seconds_at(self.workdir, step),
        'sample_wall_s': round(sampled - start, 1), 'eval_wall_s': round(time.time() - start, 1),
        'metrics': results, 'floor': self.floor,
        'clip': None if self.clip is None else {
            'workdir': os.fspath(workdir_lib.path(self.clip.workdir)), 'step': self.clip.step},
        'config': json.loads(config.to_json_best_effort()),
    }
    self._write(step, report)
    return report

  def _write(self, step: int, report: dict) -> None:
    if jax.process_index() != 0:
      return
    path = result_path(self.workdir, step)
    workdir_lib.write_json(path, report)
    scalars = {k: v for k, v in report['metrics'].items() if isinstance(v, float) and math.isfinite(v)}
    writer = workdir_lib.create_writer(path.parent)
    writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})
    writer.close()
    floor = report['floor']
    print(f'step {step} ({report["num_samples"]} samples, {report["eval_wall_s"]:.0f} s):', flush=True)
    for k, v in scalars.items():
      real = floor.get(k.replace('_at_floor_n', ''))
      n = floor.get(f'{k}_n', floor['n'])
      print(f'  {k:<28} {v:10.4g}' + (f'   real {floor["split"]} images (n={n}): {real:.4g}'
                                        if isinstance(real, float) else ''), flush=True)
    for name, rows in report['metrics'].items():
      if name.endswith('_per_prompt'):
        print(f'  {name}:', flush=True)
        for prompt, value in rows.items():  # fractions (alignment, accuracy) as percentages; scores as they are
          print(f'    {value:7.2f}  {prompt}' if 'score' in name else f'    {value:7.1%}  {prompt}', flush=True)
    print(f'Wrote {path}', flush=True)


def result_path(workdir: str, step: int):
  return workdir_lib.path(workdir, 'eval', f'step_{step:06d}.json')


def _checkpoint_steps(config, workdir: str) -> list[int]:
  if not parallel.from_process_0([workdir_lib.path(workdir, 'checkpoints').is_dir()])[0]:
    return []
  checkpointer = Checkpointer(workdir, config.max_checkpoints_to_keep, async_save=False)
  try:
    return parallel.from_process_0(checkpointer.all_steps())
  finally:
    checkpointer.close()


class CheckpointGone(Exception):
  """The checkpoint was deleted (a training job's max_checkpoints_to_keep) before it could be restored."""


class CheckpointDamaged(Exception):
  """The checkpoint is listed but does not restore (a truncated or missing file): the training job moves it
  aside when it restarts; evaluation skips it."""


def evaluate(config, workdir: str, config_file: str = '', devices=None) -> list[dict]:
  """Evaluates the latest checkpoint (or, with eval.follow, every new one); returns the reports written.

  `devices` (default: all) is for tests that compare 1-device with N-device evaluation in one process.
  """
  compiler.setup_compilation_cache(config, workdir)
  ev = config.eval
  if not ev.follow and not _checkpoint_steps(config, workdir):
    raise UserError(f'No checkpoints in {workdir!r}: train first (--mode train) with the same --workdir.')
  evaluator = Evaluator(config, workdir, config_file, devices)
  reports, last_news, damaged = [], time.time(), set()
  while True:
    steps = _checkpoint_steps(config, workdir)
    todo = steps[-1:] if not ev.follow else [s for s in steps if not result_path(workdir, s).exists()]
    queue = [s for s in parallel.from_process_0(todo) if s not in damaged]
    while queue:
      step = queue.pop(0)
      try:
        reports.append(evaluator.evaluate_step(step))
        last_news = time.time()
      except CheckpointGone:
        print(f'Checkpoint {step} was deleted before it was evaluated; skipped.', flush=True)
      except CheckpointDamaged as e:
        damaged.add(step)
        earlier = [s for s in steps if s < step and s not in damaged]
        previous = not ev.follow and earlier
        print(f'warning: checkpoint {step} does not restore ({e}); skipped'
              + (f', evaluating step {earlier[-1]} instead.' if previous else '.'), flush=True)
        if previous:
          queue.append(earlier[-1])
    if not ev.follow:
      return reports
    finished = bool(steps) and steps[-1] >= config.total_steps and result_path(workdir, steps[-1]).exists()
    timed_out = time.time() - last_news > ev.follow_timeout_s
    finished, timed_out = parallel.from_process_0([finished, timed_out])
    if finished:
      print(f'Evaluated the final step {steps[-1]}; done following.', flush=True)
      return reports
    if timed_out:
      print(f'No new checkpoint for {ev.follow_timeout_s} s; stopped following {workdir}.', flush=True)
      return reports
    if not todo and jax.process_index() == 0:
      print(f'Waiting for new checkpoints in {workdir} (every {ev.follow_poll_s} s) ...', flush=True)
    time.sleep(ev.follow_poll_s)

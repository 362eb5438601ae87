"""The one training loop for every model family.

It knows only the Family interface (init / train_step / sample) and TrainState.step/params; everything else
(data, devices, checkpoints, metrics, sample grids, preemption) is generic.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from absl import logging
from clu import parameter_overview

from gen_jax import compiler, images, parallel, provenance, step_cache
from gen_jax import workdir as workdir_lib
from gen_jax.checkpoint import Checkpointer, abstract_like
from gen_jax.data import make_source, make_train_iterator
from gen_jax.data.pipeline import make_train_dataset
from gen_jax.errors import UserError
from gen_jax.families import TrainState, get_family
from gen_jax.preemption import PreemptionGuard
from gen_jax.reporting import MetricsLog, ProgressLine, host_value

CONFIG_FILE = 'config.json'  # the run's whole config, written at every (re)start


@dataclasses.dataclass
class TrainResult:
  state: TrainState
  history: dict[int, dict[str, float]]  # step -> metrics of every step run in this invocation
  preempted: bool
  eval_history: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)  # step -> eval/ metrics


def validate_config(config) -> None:
  """Checks that would otherwise fail late (after compiling, or after writing into the workdir)."""
  k = config.steps_per_call
  if k < 1:
    raise UserError(f'steps_per_call={k} must be >= 1.')
  for name in ('total_steps', 'log_every', 'checkpoint_every'):
    value = config[name]
    if value < 1 or value % k:
      raise UserError(f'{name}={value} must be a positive multiple of steps_per_call={k}.')
  for name in ('sample_every', 'eval_every'):
    if config[name] < 0 or config[name] % k:
      raise UserError(f'{name}={config[name]} must be 0 (off) or a positive multiple of steps_per_call={k}.')


def wait_for(compiling: concurrent.futures.Future | None) -> Any:
  """The result of a compile started ahead (None if there was none); if it failed, None: the program's first call
  compiles again and raises there."""
  try:
    return None if compiling is None else compiling.result()
  except Exception:  # pylint: disable=broad-except
    logging.exception('Compiling ahead failed; compiling again at the first call.')
    return None


class Trainer:
  """Built from config; everything that can fail on user input is checked in __init__, before any write."""

  def __init__(self, config, workdir: str, devices=None):
    validate_config(config)
    self.config, self.workdir = config, workdir
    compiler.setup_compilation_cache(config, workdir)
    self.mesh = parallel.make_mesh(devices)
    parallel.check_batch_divisible(config.global_batch_size, self.mesh)
    self.source = make_source(config.data)
    self.family = get_family(config)
    self.data_options = self.family.bind_data(self.source)
    self.data = make_train_iterator(self.source, config, jax.process_index(), jax.process_count(),
                                    self.family.batches_per_step, **self.data_options)
    self.replicated = parallel.replicated(self.mesh)
    self.frozen = jax.device_put(self.family.frozen(), self.replicated)
    self._init = compiler.jit_once(functools.partial(self.family.init, image_shape=tuple(self.source.image_shape)),
                                   out_shardings=self.replicated)
    self._step = parallel.make_sharded_train_step(self.family.train_step, self.mesh, self.family.batches_per_step)
    self._sample = compiler.jit(self.family.sample, static_argnums=2, out_shardings=self.replicated)
    self.draws_grids = self.family.generative and config.sample_every > 0  # sample_every=0: no grids, no sampler
    self.eval_data = self._eval_dataset() if config.eval_every else None
    self._eval = parallel.make_sharded_eval_step(self.family.eval_step, self.mesh)
    self._sample_compiled: concurrent.futures.Future | None = None  # see compile_ahead

  def _eval_dataset(self):
    """The first `eval_batches` global batches of the shuffled eval split: the same examples at every eval."""
    data_config = self.config.data.copy_and_resolve_references()
    data_config.split = self.config.data.eval_split
    source = make_source(data_config)
    return make_train_dataset(source, seed=self.config.seed, global_batch_size=self.config.global_batch_size,
                              process_index=jax.process_index(), process_count=jax.process_count(),
                              **self.data_options)

  def evaluate(self, writer, state: TrainState, step: int) -> dict[str, float]:
    batches = [jax.tree.map(host_value, self._eval(state, parallel.to_global_batch(self.eval_data[i], self.mesh)))
               for i in range(self.config.eval_batches)]
    metrics = {f'eval/{k}': float(np.mean([b[k] for b in batches])) for k in batches[0]}
    writer.write_scalars(step, metrics)
    if jax.process_index() == 0:
      print(f'eval at step {step}: ' + '  '.join(f'{k} {v:.4g}' for k, v in metrics.items()), flush=True)
    return metrics

  def compile_ahead(self) -> concurrent.futures.Future:
    """Compiles the train step (then the sample grid's program) on another thread from the state's and a batch's
    shapes, overlapping parameter init (its compile and run) or a restore, and the first batch's read: a 1-step MLP
    GAN run on digits took 6.6 -> 6.2 s (2-core Sapphire Rapids). The first calls find the programs compiled
    (jit's cache is shared by threads). Peeking at a batch leaves the data position unchanged. Returns the step's
    compile (a step_cache.CompiledStep, loaded from that cache when it holds the step); wait for it before the first
    step (a call while it compiles would compile again)."""
    position = self.data.get_state()
    batch = parallel.to_global_batch(next(self.data), self.mesh)
    self.data.set_state(position)
    state = abstract_like(jax.eval_shape(self._init, jax.random.PRNGKey(self.config.seed)), self.replicated)
    state = state.replace(frozen=self.frozen)
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='compile_ahead')
    step = step_cache.compile_step(pool, self._step, (state, batch), self.config, self.family, self.mesh)
    if self.draws_grids:
      self._sample_compiled = pool.submit(self._sample.lower(state, *self._sample_args[0]).compile)
    pool.shutdown(wait=False)
    return step

  def initial_state(self, checkpointer: Checkpointer) -> TrainState:
    rng = jax.random.PRNGKey(self.config.seed)
    if checkpointer.latest_step() is None:
      return self._init(rng).replace(frozen=self.frozen)
    abstract = abstract_like(jax.eval_shape(self._init, rng), self.replicated)
    latest, state, data_state = checkpointer.restore_latest_good(abstract, self.family.checkpoint_metadata())
    self.data.set_state(data_state)
    if jax.process_index() == 0:
      print(f'Resuming from {checkpointer.directory} at step {latest}.', flush=True)
    return state.replace(frozen=self.frozen)

  @functools.cached_property
  def _sample_args(self) -> tuple:
    """(sample's args after the state, grid columns): the same z (and class prompts) at every grid, so grids are
    comparable."""
    key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 0x5A3)
    prompts, n = self.family.fixed_prompts(), self.config.num_samples
    if not prompts:
      return (key, n), None
    columns = -(-n // len(prompts))  # one row per class prompt
    cond = self.family.prompt_conditioning(prompts, columns, self.config.sample.guidance)
    return (key, len(cond.prompts), cond.inputs), columns

  def write_samples(self, writer, state: TrainState, step: int) -> None:
    wait_for(self._sample_compiled)
    args, columns = self._sample_args
    samples = host_value(self._sample(state, *args))
    if jax.process_index() == 0:
      grid = images.make_grid(samples, columns)
      images.save_png(workdir_lib.path(self.workdir, 'samples', f'step_{step:06d}.png'), grid)
      writer.write_images(step, {'samples': grid[None]})

  def run(self, hooks: Sequence[Callable[[int], None]] = ()) -> TrainResult:
    config, workdir = self.config, self.workdir
    if jax.process_index() == 0:  # what other runs read to rebuild this model (e.g. eval.clip_workdir)
      workdir_lib.write_json(workdir_lib.path(workdir, CONFIG_FILE), json.loads(config.to_json_best_effort()))
    checkpointer = Checkpointer(workdir, config.max_checkpoints_to_keep)
    writer = workdir_lib.create_writer(workdir_lib.path(workdir), just_logging=jax.process_index() > 0)
    try:
      return self._loop(checkpointer, writer, hooks)
    finally:
      checkpointer.close()
      writer.close()

  def _loop(self, checkpointer, writer, hooks) -> TrainResult:
    config = self.config
    unfinished = (checkpointer.latest_step() or 0) < config.total_steps
    compiling = self.compile_ahead() if unfinished else None
    state = self.initial_state(checkpointer)
    step = int(host_value(state.step))
    if step == 0:
      writer.write_hparams(config.to_dict())
    if jax.process_index() == 0:
      print(parameter_overview.get_parameter_overview(state.params), flush=True)
    log = MetricsLog()
    progress = ProgressLine(config.total_steps, config.global_batch_size, step)
    last_saved = checkpointer.latest_step()
    started = time.time()  # + the wall time recorded at the checkpoint this run resumed from
    earlier = (provenance.train_seconds_at(self.workdir, last_saved) or 0.0) if last_saved is not None else 0.0
    preempted = False
    eval_history = {}

    def save(step):
      nonlocal last_saved
      log.flush(last_saved)  # raises on NaN/Inf: broken params are never saved
      checkpointer.save(step, state, self.data.get_state(), self.family.checkpoint_metadata())
      provenance.record_train_time(self.workdir, step, earlier + time.time() - started)
      last_saved = step

    train_step = wait_for(compiling) or self._step
    with PreemptionGuard() as guard:
      while step < config.total_steps:
        batch = parallel.to_global_batch(next(self.data), self.mesh)
        state, metrics = train_step(state, batch)
        log.add(step, metrics)
        step += config.steps_per_call
        for hook in hooks:
          hook(step)
        if step % config.log_every == 0 or step == config.total_steps:
          log.flush(last_saved)
          averages = log.averages()
          line = progress.format(step, averages)
          writer.write_scalars(step, {**averages, 'steps_per_sec': progress.steps_per_s})
          if jax.process_index() == 0:
            print(line, flush=True)
        if self.draws_grids and (step % config.sample_every == 0 or step == config.total_steps):
          self.write_samples(writer, state, step)
        if config.eval_every and (step % config.eval_every == 0 or step == config.total_steps):
          eval_history[step] = self.evaluate(writer, state, step)
        if step % config.checkpoint_every == 0 or step == config.total_steps:
          save(step)
        if guard.should_stop():
          if last_saved != step:
            save(step)
          preempted = True
          logging.warning('SIGTERM: checkpoint written at step %d; run the same command again to resume.', step)
          print(f'Preempted (SIGTERM): checkpoint saved at step {step}; rerun the same command to resume.',
                flush=True)
          break
    log.flush(last_saved)
    checkpointer.wait()
    return TrainResult(state=state, history=log.history, preempted=preempted, eval_history=eval_history)


def train(config, workdir: str, hooks: Sequence[Callable[[int], None]] = (), devices=None) -> TrainResult:
  """Trains `config.model.family` until `config.total_steps`, resuming from `workdir` when it has checkpoints.

  `devices` (default: all) is for tests that compare a 1-device run with an N-device run in one process.
  """
  return Trainer(config, workdir, devices).run(hooks)

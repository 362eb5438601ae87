"""Orbax checkpoints of the whole train state plus the input iterator's position, saved asynchronously.

Layout: <workdir>/checkpoints/<step>/{state, data, meta}. `state` is the TrainState pytree without its `frozen`
inputs (rebuilt at start-up, never saved); `data` is the grain iterator state (JSON), so a resumed run reads
exactly the batches an uninterrupted one would; `meta` (JSON) names what made the checkpoint (family, text
encoder), so restoring it into a different model is a clear error instead of a tree mismatch.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from orbax.checkpoint._src.serialization import type_handler_registry

from gen_jax import parallel
from gen_jax import workdir as workdir_lib
from gen_jax.errors import UserError


def _save_replicated_arrays_whole_on_one_host() -> None:
  """Orbax's default replica-parallel save splits every replicated array across its replicas, which on one host
  buys nothing (all slices go to the same disk) and costs one compiled slice per array shape: 6 s of a tiny DDPM's
  first checkpoint on a 2-core CPU, minutes for a large net. Keep it where it pays: several processes."""
  if jax.process_count() == 1:
    handler = ocp.type_handlers.get_type_handler(jax.Array)
    if getattr(handler, '_use_replica_parallel', False):  # once per process, silently: an intended override
      type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(
          jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True, ignore_warnings=True)


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager`: every process calls every method (multi-host safe)."""

  def __init__(self, workdir: str, max_to_keep: int, async_save: bool = True):
    _save_replicated_arrays_whole_on_one_host()
    self.directory = workdir_lib.path(workdir, 'checkpoints')
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Finished checkpoints, re-read from disk (another process may be writing new ones)."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
    state = _without_frozen(state)
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     data=ocp.args.JsonSave(data_state),
                                                     meta=ocp.args.JsonSave(meta or {})))

  def restore(self, abstract_state: Any, step: int | None = None,
              meta: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores onto the shardings in `abstract_state` (a pytree of jax.ShapeDtypeStruct).

    `meta`: what the restoring run would save; any key the checkpoint recorded differently is a UserError.
    """
    step = self.latest_step() if step is None else step
    if meta and (self.directory / str(step) / 'meta').is_dir():
      saved = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
      for key, value in meta.items():
        if key in saved and saved[key] != value:
          raise UserError(f'The checkpoint at step {step} in {self.directory} was trained with {key}={saved[key]!r}, '
                          f'this config has {value!r}: pass the config it was trained with (e.g. '
                          f'--config.{_CONFIG_KEYS.get(key, key)}={saved[key]}) or use a new --workdir.')
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_without_frozen(abstract_state)), data=ocp.args.JsonRestore()))
    return restored['state'], restored['data']

  def restore_latest_good(self, abstract_state: Any, meta: dict[str, Any] | None = None,
                          move_aside: bool = True) -> tuple[int, Any, dict[str, Any]] | None:
    """(step, state, data_state) of the newest checkpoint that restores; None when there are none.

    Spot slices get preempted and hosts die mid-write, so a checkpoint can be damaged (a truncated or missing
    file) while older good ones sit beside it. A step that fails to restore is named with its error and tried
    no further; once an older one restores, the damaged newer ones are moved (never deleted) to
    <workdir>/checkpoints_corrupt/ (`move_aside`: the training job, not a reader such as --mode sample). When
    none restores nothing is moved and it is a UserError listing every step's error.
    """
    failures: list[tuple[int, str]] = []
    for step in reversed(parallel.from_process_0(self.all_steps())):  # one list: every process tries the same steps
      for _ in range(2):  # once more before calling it damaged: a read can fail transiently on GCS
        try:
          state, data_state = self.restore(abstract_state, step, meta)
          error = ''
          break
        except UserError:
          raise  # a config mismatch, not damage
        except Exception as e:  # noqa: BLE001 (TensorStore, Orbax and JSON errors of a damaged checkpoint)
          error = error_summary(e)
      # Damage a file shows to every process alike; a failure on some processes only could leave the others in
      # Orbax's restore barrier (a hang, not a wrong result).
      if _everywhere(not error):
        for bad_step, _ in failures:
          if move_aside:
            self._move_aside(bad_step)
        if failures:
          self._manager.reload()
        return step, state, data_state
      failures.append((step, error or 'failed on another process'))
      _warn(f'warning: checkpoint {step} in {self.directory} does not restore ({failures[-1][1]}); '
            'trying the previous one.')
    if failures:
      listing = '; '.join(f'step {s}: {e}' for s, e in failures)
      raise UserError(f'No checkpoint in {self.directory} restores ({listing}). Nothing was moved or deleted: '
                      f'repair or move them away to start over, or train into a new --workdir.')
    return None

  def _move_aside(self, step: int) -> None:
    """checkpoints/<step> -> checkpoints_corrupt/<step>[.N]: outside Orbax's directory, so it is never listed
    (or garbage-collected) again, and kept for a post-mortem. Process 0 moves; everyone waits for it."""
    if jax.process_index() == 0:
      source = self.directory / str(step)
      target = self.directory.parent / CORRUPT_DIR / str(step)
      suffix = 0
      while target.exists():
        suffix += 1
        target = self.directory.parent / CORRUPT_DIR / f'{step}.{suffix}'
      target.parent.mkdir(parents=True, exist_ok=True)
      if workdir_lib.is_remote(source):  # object stores have no directory rename: copy every object, then delete
        for path in _files_under(source):
          destination = target / path.relative_to(source)
          destination.parent.mkdir(parents=True, exist_ok=True)
          path.copy(destination)
        source.rmtree()
      else:
        source.rename(target)
      _warn(f'warning: moved the checkpoint of step {step} aside to {target} (it does not restore); resuming '
            'from the previous one.')
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'gen_jax moved checkpoint {step} aside')

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


CORRUPT_DIR = 'checkpoints_corrupt'  # beside checkpoints/: damaged steps moved out of Orbax's sight


def error_summary(error: BaseException) -> str:
  """The innermost cause's first line (Orbax wraps TensorStore's error, which names the damaged file)."""
  while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
    error = error.__cause__ or error.__context__
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: ' + (text[0] if text else '')[:300]


def _everywhere(ok: bool) -> bool:
  """True when `ok` on every process (they must all restore the same step)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.min(multihost_utils.process_allgather(np.int32(ok))))


def _files_under(directory):
  """Every file below `directory`, as paths of its own scheme (epath's rglob / walk do not keep gs://)."""
  for child in directory.iterdir():
    if child.is_dir():
      yield from _files_under(child)
    else:
      yield child


def _warn(message: str) -> None:
  """On stdout beside the progress lines (process 0), in the log of the others."""
  if jax.process_index() == 0:
    print(message, flush=True)
  else:
    logging.warning(message)


_CONFIG_KEYS = {'family': 'model.family', 'text_encoder': 'text.encoder', 'clip_step': 'unclip.clip_step',
                'prior': 'unclip.prior'}  # meta key -> its config key


def _without_frozen(state: Any) -> Any:
  return state.replace(frozen=None) if getattr(state, 'frozen', None) is not None else state


def abstract_like(tree: Any, sharding) -> Any:
  """ShapeDtypeStructs of `tree` (e.g. from jax.eval_shape) placed on `sharding`, as restore targets."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

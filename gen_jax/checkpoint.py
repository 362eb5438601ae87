"""Orbax checkpoints of the whole train state plus the input iterator's position, saved asynchronously.

Layout: <workdir>/checkpoints/<step>/{state, data, meta}. `state` is the TrainState pytree without its `frozen`
inputs (rebuilt at start-up, never saved); `data` is the grain iterator state (JSON), so a resumed run reads
exactly the batches an uninterrupted one would; `meta` (JSON) names what made the checkpoint (family, text
encoder), so restoring it into a different model is a clear error instead of a tree mismatch.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.serialization import type_handler_registry

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
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
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
    if meta and os.path.isdir(os.path.join(self.directory, str(step), 'meta')):
      saved = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
      for key, value in meta.items():
        if key in saved and saved[key] != value:
          raise UserError(f'The checkpoint at step {step} in {self.directory} was trained with {key}={saved[key]!r}, '
                          f'this config has {value!r}: pass the config it was trained with (e.g. '
                          f'--config.{_CONFIG_KEYS.get(key, key)}={saved[key]}) or use a new --workdir.')
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_without_frozen(abstract_state)), data=ocp.args.JsonRestore()))
    return restored['state'], restored['data']

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


_CONFIG_KEYS = {'family': 'model.family', 'text_encoder': 'text.encoder'}  # meta key -> its config key


def _without_frozen(state: Any) -> Any:
  return state.replace(frozen=None) if getattr(state, 'frozen', None) is not None else state


def abstract_like(tree: Any, sharding) -> Any:
  """ShapeDtypeStructs of `tree` (e.g. from jax.eval_shape) placed on `sharding`, as restore targets."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

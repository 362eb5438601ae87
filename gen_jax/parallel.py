"""Data parallelism: one `data` mesh axis over every device of every process, steps under `jax.shard_map`.

Inside a step (per-device code), the batch is this device's slice and params are replicated. With shard_map's
default `check_vma=True` the gradient of a replicated param is *already summed* over the `data` axis (the
transpose of the implicit `pvary` is a `psum`), so `pmean(grads)` would give N-times gradients.
`value_and_global_mean_grad` divides that sum by N instead; tests check N devices == 1 device.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax import compiler
from gen_jax.errors import UserError

DATA = 'data'


def maybe_initialize_distributed(coordinator_address: str = '', num_processes: int = 0, process_id: int = -1):
  """Starts `jax.distributed` for multi-process runs: from explicit flags, or from the environment.

  Cluster launchers (Cloud TPU pods, SLURM, Open MPI) are auto-detected by `jax.distributed.initialize()` when
  GEN_JAX_DISTRIBUTED=1; single-process runs call nothing.
  """
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
  elif os.environ.get('GEN_JAX_DISTRIBUTED') == '1':
    jax.distributed.initialize()


def from_process_0(values: list[int]) -> list[int]:
  """Process 0's list of ints on every process: decisions taken from file listings (which may differ between
  hosts for a moment) are process 0's, so all processes run the same collectives in the same order."""
  if jax.process_count() == 1:
    return list(values)
  n = int(multihost_utils.broadcast_one_to_all(np.int32(len(values))))
  padded = np.zeros(n, np.int32)
  if jax.process_index() == 0:
    padded[:] = values
  return [int(v) for v in multihost_utils.broadcast_one_to_all(padded)]


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: all), process-major so global batch rows follow process order."""
  devices = sorted(devices or jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.array(devices), (DATA,))


def check_batch_divisible(global_batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if global_batch_size % n:
    raise UserError(f'global_batch_size={global_batch_size} is not divisible by the {n} devices of this run '
                    f'({jax.process_count()} process(es) x {jax.local_device_count()} local devices). Set '
                    f'--config.global_batch_size to a multiple of {n}.')


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def to_global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Per-process numeric arrays [K b ...] -> global arrays [K B ...] sharded over `data` on axis 1.

  Strings (class names) stay on the host: devices only see numbers.
  """
  sharding = NamedSharding(mesh, P(None, DATA))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()
          if np.asarray(v).dtype.kind in 'biuf'}


def shard_host_array(a: np.ndarray, mesh: Mesh) -> jax.Array:
  """The same host array on every process -> one global array sharded over `data` on its first axis."""
  sharding = NamedSharding(mesh, P(DATA))
  return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def make_row_fn(per_device: Callable, mesh: Mesh) -> Callable:
  """jit(shard_map(per_device(replicated, rows))): `rows` (arrays [B ...]) and the outputs split over `data`; the
  compiled function `map_rows` calls."""
  return compiler.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA)), out_specs=P(DATA)))


def map_rows(fn: Callable, mesh: Mesh, rows: Any, batch_size: int, *args, progress: Callable | None = None) -> Any:
  """`fn(*args, rows_batch)` (compiled, sharded over `data`, args replicated) over host arrays [n ...] in batches
  of `batch_size` (the last one padded); outputs [n ...] gathered to every process as numpy.

  The same host `rows` on every process (e.g. all of a test split); per-row outputs must not depend on the
  other rows of a batch, so results are the same for any device count. `progress(done, n)` after each batch.
  """
  n = len(jax.tree.leaves(rows)[0])
  devices = mesh.devices.size
  batch_size = min(batch_size, -(-n // devices) * devices)  # a small set is not padded up to a whole batch
  outputs = []
  for start in range(0, n, batch_size):
    def pad(a):
      part = a[start:start + batch_size]
      return np.pad(part, [(0, batch_size - len(part))] + [(0, 0)] * (a.ndim - 1), mode='edge')
    batch = jax.tree.map(lambda a: shard_host_array(pad(np.asarray(a)), mesh), rows)
    outputs.append(jax.tree.map(np.asarray, multihost_utils.process_allgather(fn(*args, batch), tiled=True)))
    if progress is not None:
      progress(min(start + batch_size, n), n)
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outputs)


def make_sharded_train_step(step_fn: Callable, mesh: Mesh, batches_per_step: int = 1) -> Callable:
  """jit(shard_map(scan(step_fn))): K steps in one compiled call, state replicated and donated.

  `step_fn(state, batch) -> (state, metrics)` is per-device code; `batch` arrays are [b_device ...] (or
  [n b_device ...] when `batches_per_step` n > 1: the input then holds K*n global batches) and metrics must be
  device-invariant scalars (see `mean_over_devices`). Returns metrics stacked as [K].
  """

  def per_device(state, batches):
    if batches_per_step > 1:
      batches = jax.tree.map(lambda x: x.reshape(-1, batches_per_step, *x.shape[1:]), batches)
    if batches['image'].shape[0] == 1:
      # No loop for K=1: XLA:CPU (jaxlib 0.10.2) runs conv *gradients* inside a while loop ~60x slower
      # (measured: 3x3 64->64 conv fwd+bwd at 16x32x32: 26 ms plain vs ~1.5 s per scan iteration), so only scan
      # when K > 1.
      state, metrics = step_fn(state, jax.tree.map(lambda x: x[0], batches))
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(_keeping_carry_types(step_fn), state, batches)

  if mesh.size > 1:
    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(None, DATA)), out_specs=(P(), P()))
    return compiler.jit(sharded, donate_argnums=0)

  # One device: the state enters as device-varying (split over a mesh axis of size 1, i.e. whole), so autodiff
  # inserts no all-reduce for the gradients of replicated params. XLA:CPU keeps a one-device all-reduce as a copy:
  # 16 ms of an 85 ms MLP GAN D+G step (7.6M params). The values are the same; the output goes back to replicated.
  def one_device(state, batches):
    specs = jax.tree.map(lambda x: P(DATA) if jnp.ndim(x) else P(), state)
    return jax.shard_map(per_device, mesh=mesh, in_specs=(specs, P(None, DATA)), out_specs=(specs, P(DATA)))(
        state, batches)

  return compiler.jit(one_device, donate_argnums=0, out_shardings=replicated(mesh))


def _keeping_carry_types(step_fn: Callable) -> Callable:
  """step_fn whose output state varies over devices where its input did: scan's carry must keep its type. On one
  device the state enters device-varying (see `one_device` in make_sharded_train_step) and values averaged over
  devices come out invariant (BatchNorm's running statistics: the MLP GAN / DCGAN with steps_per_call > 1 failed to
  trace)."""
  def body(state, batch):
    new, metrics = step_fn(state, batch)
    new = jax.tree.map(lambda x, old: jax.lax.pcast(x, DATA, to='varying')
                       if DATA in varying_axes(old) and DATA not in varying_axes(x) else x, new, state)
    return new, metrics

  return body


def varying_axes(x: jax.Array) -> frozenset[str]:
  """The mesh axes x varies over inside shard_map (empty outside it)."""
  aval = jax.typeof(x)
  if hasattr(aval, 'manual_axis_type'):  # jax 0.10
    manual = aval.manual_axis_type
    return frozenset(manual.varying) if manual is not None else frozenset()
  if hasattr(aval, 'vma'):  # earlier jax
    return frozenset(aval.vma)
  raise NotImplementedError(f'This jax ({jax.__version__}) names the mesh axes a value varies over neither '
                            '`manual_axis_type.varying` nor `vma`: update parallel.varying_axes.')


def varying_like(a: jax.Array, *refs: jax.Array) -> jax.Array:
  """a, marked device-varying over the mesh axes the refs vary over (a no-op outside shard_map). E.g. a replicated
  kernel that meets per-device images before a custom_vjp, as lax's own conv does: the transpose of this cast then
  sums the kernel gradient over devices; or a result that a custom call (typed invariant) computed from per-device
  operands."""
  spread = tuple(sorted(frozenset().union(*map(varying_axes, refs)) - varying_axes(a)))
  return jax.lax.pcast(a, spread, to='varying') if spread else a


def make_sharded_eval_step(eval_fn: Callable, mesh: Mesh) -> Callable:
  """jit(shard_map(eval_fn)) for one batch [1 B ...] (the pipeline's K axis, K=1); nothing is donated."""

  def per_device(state, batches):
    return eval_fn(state, jax.tree.map(lambda x: x[0], batches))

  return compiler.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(None, DATA)), out_specs=P()))


def value_and_global_mean_grad(loss_fn: Callable, has_aux: bool = False) -> Callable:
  """Like `jax.value_and_grad` for per-device code whose `loss_fn` is a mean over the local batch.

  Returns the loss (and aux) averaged over devices and the gradient of the *global-batch* mean loss.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)

  def wrapped(params, *args, **kwargs):
    value, grads = grad_fn(params, *args, **kwargs)
    n = jax.lax.axis_size(DATA)
    grads = jax.tree.map(lambda g: g / n, grads)  # already psum-ed over `data` by shard_map's autodiff
    return mean_over_devices(value), grads

  return wrapped


def mean_over_devices(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.lax.pmean(x, DATA), tree)


def example_keys(key: jax.Array, local_batch: int) -> jax.Array:
  """One PRNG key per example, from its *global* batch position, so noise does not depend on device count."""
  start = jax.lax.axis_index(DATA) * local_batch
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(local_batch))

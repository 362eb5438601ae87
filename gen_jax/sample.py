"""`--mode sample`: images from the latest checkpoint -> a PNG grid and an .npz of uint8 samples.

Sampling is sharded over all devices (each draws `batch_size / devices` images per call from its own key), so
large sample sets (e.g. 50k for FID) use every accelerator. Samples are reproducible from `sample.seed`.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from gen_jax import compiler, images, parallel
from gen_jax.checkpoint import Checkpointer, abstract_like
from gen_jax.data import make_source
from gen_jax.errors import UserError
from gen_jax.families import get_family


def make_sharded_sampler(family, mesh, batch_size: int):
  """jit(shard_map(family.sample)): `batch_size` images per call, split evenly over the `data` axis."""
  per_device = batch_size // mesh.devices.size

  def draw(state, key):
    key = jax.random.fold_in(key, jax.lax.axis_index(parallel.DATA))
    return family.sample(state, key, per_device)

  return compiler.jit(jax.shard_map(draw, mesh=mesh, in_specs=(P(), P()), out_specs=P(parallel.DATA)))


def sample(config, workdir: str) -> str:
  """Writes <workdir>/samples/sample_<step>.{png,npz}; returns the .npz path."""
  num, batch = config.sample.num_samples, config.sample.batch_size
  mesh = parallel.make_mesh()
  if batch % mesh.devices.size:
    raise UserError(f'sample.batch_size={batch} must be a multiple of the {mesh.devices.size} devices.')
  if num < 1:
    raise UserError(f'sample.num_samples={num} must be >= 1.')
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise UserError(f'No checkpoints in {workdir!r}: train first (--mode train) with the same --workdir.')
  family = get_family(config)
  image_shape = tuple(make_source(config.data).image_shape)
  replicated = parallel.replicated(mesh)
  init = functools.partial(family.init, image_shape=image_shape)
  abstract = abstract_like(jax.eval_shape(init, jax.random.PRNGKey(0)), replicated)
  checkpointer = Checkpointer(workdir, config.max_checkpoints_to_keep, async_save=False)
  try:
    step = checkpointer.latest_step()
    if step is None:
      raise UserError(f'No checkpoints in {workdir!r}: train first (--mode train) with the same --workdir.')
    state, _ = checkpointer.restore(abstract, step)
  finally:
    checkpointer.close()

  draw = make_sharded_sampler(family, mesh, batch)
  key = jax.random.PRNGKey(config.sample.seed)
  chunks = []
  for i in range(-(-num // batch)):  # a Python loop over *batches* of samples; timesteps loop inside `draw`
    chunks.append(images.to_uint8(multihost_utils.process_allgather(
        draw(state, jax.random.fold_in(key, i)), tiled=True)))
  samples = np.concatenate(chunks)[:num]
  stem = os.path.join(workdir, 'samples', f'sample_{step:06d}')
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    np.savez_compressed(stem + '.npz', images=samples)
    images.save_png(stem + '.png', images.make_grid(samples[:min(num, 256)].astype(np.float32) / 127.5 - 1.0))
    print(f'Wrote {num} samples from step {step} to {stem}.npz and a grid to {stem}.png', flush=True)
  return stem + '.npz'

"""Synthetic inputs for the benchmark scripts: any family, no real data beyond a conditional family's captions."""

import numpy as np


def bind_and_freeze(family, config):
  """Conditional families need the dataset's caption table (bind_data) and their frozen inputs."""
  if not family.conditional:
    return None
  from gen_jax.data import make_source
  family.bind_data(make_source(config.data))
  return family.frozen()


def host_batch(family, rng, n, local, shape) -> dict:
  """[n local ...] images and labels, plus caption ids for a conditional family's caption table."""
  batch = {'image': rng.uniform(-1, 1, (n, local, *shape)).astype(np.float32),
           'label': rng.integers(0, 10, (n, local)).astype(np.int32)}
  if family.conditional:
    batch['caption'] = rng.integers(0, len(family.captions.captions), (n, local)).astype(np.int32)
  return batch


def image_shape(config, flag: str) -> tuple:
  """'h,w,c' from a benchmark's --image_shape flag, else the config's dataset shape."""
  if flag:
    return tuple(int(v) for v in flag.split(','))
  from gen_jax.data import make_source
  return tuple(make_source(config.data).image_shape)


def train_setup(family, config, mesh, shape):
  """(initialised state, device batch of k * batches_per_step host batches) for timing `family`'s train step."""
  import jax

  from gen_jax import compiler, parallel
  parallel.check_batch_divisible(config.global_batch_size, mesh)
  frozen = jax.device_put(bind_and_freeze(family, config), parallel.replicated(mesh))
  init = compiler.jit_once(lambda r: family.init(r, shape), out_shardings=parallel.replicated(mesh))
  state = init(jax.random.PRNGKey(0)).replace(frozen=frozen)
  local = config.global_batch_size // jax.process_count()
  n = config.steps_per_call * family.batches_per_step
  return state, parallel.to_global_batch(host_batch(family, np.random.default_rng(0), n, local, shape), mesh)


def sample_conditioning(family, batch: int, guidance: float):
  """Per-sample cond for `batch` images (the fixed class prompts, cycled), or None when unconditional."""
  prompts = family.fixed_prompts()
  if not prompts:
    return None
  return family.prompt_conditioning([prompts[i % len(prompts)] for i in range(batch)], 1, guidance).inputs

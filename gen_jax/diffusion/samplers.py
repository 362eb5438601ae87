"""Whole sampling loops compiled: ancestral DDPM (Ho et al. 2020) and DDIM (Song et al. 2021) with lax.scan.

`model_fn(x [b h w c], t [b] int) -> prediction` (of kind 'eps', 'x0' or 'v'). No Python loop over t: each
sampler is one `lax.scan`, so it jits into a single program and runs sharded like any other function.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.diffusion.gaussian import GaussianDiffusion

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


def classifier_free_guidance(joint_fn: ModelFn, guidance: jax.Array) -> ModelFn:
  """Ho & Salimans (2022): pred = pred_uncond + w (pred_cond - pred_uncond), from ONE batched network call.

  `joint_fn(x [2b ...], t [2b])` predicts the conditional half first, then the unconditional (null or negative
  prompt) half; `guidance` w is [b] (a runtime value: changing it does not recompile). w = 1 is the conditional
  model, w = 0 the unconditional one. Mixing raw 'eps', 'x0' or 'v' outputs is the same as mixing eps: each is
  affine in eps at fixed (x_t, t) and the weights (1 - w, w) sum to one.
  """
  def model_fn(x, t):
    cond, uncond = jnp.split(joint_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t])), 2)
    w = guidance.astype(cond.dtype).reshape(-1, *([1] * (cond.ndim - 1)))
    return uncond + w * (cond - uncond)
  return model_fn


def ddpm_sample(model_fn: ModelFn, diffusion: GaussianDiffusion, kind: str, shape, key: jax.Array,
                variance: str = 'fixed_small', clip_x0: bool = True, threshold: float = 0.0) -> jax.Array:
  """Ancestral sampling through all T steps: x_{t-1} = mean + sigma_t z (no noise at t = 0).

  `threshold` > 0: dynamic thresholding of x0 at that percentile instead of the static clip (see gaussian.py).
  """
  init_key, loop_key = jax.random.split(key)
  x = jax.random.normal(init_key, shape)
  steps = jnp.arange(diffusion.num_timesteps - 1, -1, -1, dtype=jnp.int32)

  def body(x, t):
    tb = jnp.full(shape[:1], t, jnp.int32)
    mean, _, log_var, _ = diffusion.p_mean_variance(kind, model_fn(x, tb), x, tb, variance, clip_x0, threshold)
    noise = jax.random.normal(jax.random.fold_in(loop_key, t), shape)
    return mean + (t > 0) * jnp.exp(0.5 * log_var) * noise, None

  x, _ = jax.lax.scan(body, x, steps)
  return x


def ddim_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
  """The respaced subset [S] (descending), evenly strided from 0 as in the DDIM paper ('uniform')."""
  if not 1 <= num_steps <= num_timesteps:
    raise ValueError(f'DDIM steps must be in [1, {num_timesteps}], got {num_steps}')
  return np.asarray(np.linspace(0, num_timesteps - 1, num_steps).round()[::-1], np.int32)


def ddim_sample(model_fn: ModelFn, diffusion: GaussianDiffusion, kind: str, shape, key: jax.Array,
                num_steps: int = 50, eta: float = 0.0, clip_x0: bool = True, threshold: float = 0.0) -> jax.Array:
  """DDIM over S respaced steps; eta=0 is deterministic given the initial noise, eta=1 with S=T is DDPM."""
  init_key, loop_key = jax.random.split(key)
  x = jax.random.normal(init_key, shape)
  ts = ddim_timesteps(diffusion.num_timesteps, num_steps)
  prev = np.append(ts[1:], -1).astype(np.int32)  # t_prev = -1 means "x_0": alpha_cumprod_prev = 1
  acp = diffusion.alphas_cumprod

  def body(x, t_pair):
    t, t_prev = t_pair
    tb = jnp.full(shape[:1], t, jnp.int32)
    x0 = diffusion.x0_from_prediction(kind, x, tb, model_fn(x, tb), clip=clip_x0, threshold=threshold)
    eps = diffusion.predict_eps_from_x0(x, tb, x0)
    a, a_prev = acp[t], jnp.where(t_prev >= 0, acp[jnp.maximum(t_prev, 0)], 1.0)
    sigma = eta * jnp.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    noise = jax.random.normal(jax.random.fold_in(loop_key, t), shape)
    x = jnp.sqrt(a_prev) * x0 + jnp.sqrt(jnp.maximum(1 - a_prev - sigma**2, 0.0)) * eps + sigma * noise
    return x, None

  x, _ = jax.lax.scan(body, x, (jnp.asarray(ts), jnp.asarray(prev)))
  return x

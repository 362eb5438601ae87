"""Noise schedules beta_1..beta_T for Gaussian diffusion, in float64 numpy.

They are computed in float64 because alphas_cumprod is a product of up to ~1000 factors close to one: float32
would lose the small values near t = T that the prior term and the x0 <- eps conversion divide by.
"""

from __future__ import annotations

import math

import numpy as np

MAX_BETA = 0.999  # cosine schedule: keeps beta_T < 1 so alpha_T = 1 - beta_T stays invertible (Nichol & Dhariwal)
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal (2021): stops beta_1 from being vanishingly small


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
  """Ho et al. (2020): betas linear in t from 1e-4 to 0.02 (their values for T = 1000; not rescaled for other T)."""
  return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def cosine_alpha_bar(u: np.ndarray, s: float = COSINE_OFFSET) -> np.ndarray:
  """f(u) = cos^2((u + s) / (1 + s) * pi/2) for u = t/T in [0, 1]; alphas_cumprod is f(t/T) / f(0)."""
  return np.cos((np.asarray(u, np.float64) + s) / (1.0 + s) * math.pi / 2) ** 2


def cosine_betas(num_timesteps: int, s: float = COSINE_OFFSET, max_beta: float = MAX_BETA) -> np.ndarray:
  """Nichol & Dhariwal (2021): beta_t = 1 - f(t/T) / f((t-1)/T), clipped at `max_beta` (only bites near t = T)."""
  u = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
  f = cosine_alpha_bar(u, s)
  return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def beta_schedule(name: str, num_timesteps: int) -> np.ndarray:
  """betas [T] (float64) for schedule `name` in {'linear', 'cosine'}; index i is the paper's beta_{i+1}."""
  if num_timesteps < 2:
    raise ValueError(f'num_timesteps must be >= 2, got {num_timesteps}')
  if name == 'linear':
    return linear_betas(num_timesteps)
  if name == 'cosine':
    return cosine_betas(num_timesteps)
  raise ValueError(f"unknown beta schedule {name!r}; expected 'linear' or 'cosine'")

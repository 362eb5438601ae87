"""Samplers against a known answer: for Gaussian data the optimal eps-predictor is closed-form, so a correct
sampler driven by it must reproduce the data distribution's mean and standard deviation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import GaussianDiffusion
from gen_jax.diffusion.samplers import ddim_sample, ddim_timesteps, ddpm_sample

MU, SIGMA = 0.3, 0.5  # data: every pixel i.i.d. N(MU, SIGMA^2)
SHAPE = (4000, 1, 1, 1)  # 4000 samples: std error of the mean 0.008, of the std ~0.006


def optimal_eps(diffusion):
  """E[eps | x_t] for Gaussian data: sqrt(1-a) (x_t - sqrt(a) MU) / (a SIGMA^2 + 1 - a)."""
  def model_fn(x, t):
    a = diffusion.alphas_cumprod[t][:, None, None, None]
    return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * MU) / (a * SIGMA**2 + 1 - a)
  return model_fn


@pytest.fixture(scope='module')
def diffusion():
  return GaussianDiffusion.create('linear', 1000)


@pytest.mark.parametrize('sampler', ['ddpm_small', 'ddpm_large', 'ddim_eta0_50', 'ddim_eta1_T'])
def test_sampler_recovers_gaussian_data(diffusion, sampler):
  model_fn, key = optimal_eps(diffusion), jax.random.PRNGKey(0)
  run = {
      'ddpm_small': lambda: ddpm_sample(model_fn, diffusion, 'eps', SHAPE, key, 'fixed_small', clip_x0=False),
      'ddpm_large': lambda: ddpm_sample(model_fn, diffusion, 'eps', SHAPE, key, 'fixed_large', clip_x0=False),
      'ddim_eta0_50': lambda: ddim_sample(model_fn, diffusion, 'eps', SHAPE, key, 50, 0.0, clip_x0=False),
      'ddim_eta1_T': lambda: ddim_sample(model_fn, diffusion, 'eps', SHAPE, key, 1000, 1.0, clip_x0=False),
  }[sampler]
  x = np.asarray(jax.jit(run)())
  assert abs(x.mean() - MU) < 0.03, x.mean()
  # fixed-variance reverse steps are approximations (Ho et al.): std within 6% of the data's.
  assert abs(x.std() - SIGMA) < 0.06 * SIGMA, x.std()


def test_ddim_eta1_with_all_steps_matches_ancestral_statistics(diffusion):
  model_fn, shape = optimal_eps(diffusion), (4000, 1, 1, 1)
  a = np.asarray(jax.jit(lambda k: ddim_sample(model_fn, diffusion, 'eps', shape, k, 1000, 1.0, False))(
      jax.random.PRNGKey(1)))
  b = np.asarray(jax.jit(lambda k: ddpm_sample(model_fn, diffusion, 'eps', shape, k, 'fixed_small', False))(
      jax.random.PRNGKey(2)))
  assert abs(a.mean() - b.mean()) < 0.04 and abs(a.std() - b.std()) < 0.03


def test_ddim_eta0_is_deterministic_and_keyed(diffusion):
  model_fn, shape = optimal_eps(diffusion), (8, 4, 4, 1)
  sample = jax.jit(lambda k: ddim_sample(model_fn, diffusion, 'eps', shape, k, 20, 0.0))
  x1, x2 = sample(jax.random.PRNGKey(5)), sample(jax.random.PRNGKey(5))
  np.testing.assert_array_equal(x1, x2)
  assert not np.allclose(x1, sample(jax.random.PRNGKey(6)))


def test_ddim_timesteps_are_a_descending_respaced_subset():
  ts = ddim_timesteps(1000, 50)
  assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and np.all(np.diff(ts) < 0)
  np.testing.assert_array_equal(ddim_timesteps(10, 10), np.arange(9, -1, -1))
  with pytest.raises(ValueError):
    ddim_timesteps(10, 11)

"""Classifier-free guidance and dynamic thresholding against closed forms.

For Gaussian data N(mu, s^2) the optimal eps-predictor is affine in mu, so guiding the N(mu_c, s^2) predictor
against the N(mu_u, s^2) one with scale w is exactly the predictor for N(mu_u + w (mu_c - mu_u), s^2): a
correct guided sampler must produce that mean (and keep the std s).
"""

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.diffusion import GaussianDiffusion
from gen_jax.diffusion.gaussian import dynamic_threshold
from gen_jax.diffusion.samplers import classifier_free_guidance, ddim_sample

MU_C, MU_U, SIGMA = 0.4, -0.1, 0.3


def test_guidance_arithmetic_from_one_batched_call():
  calls = []

  def joint(x, t):
    calls.append(x.shape)
    half = x.shape[0] // 2
    return jnp.concatenate([jnp.full_like(x[:half], 2.0), jnp.full_like(x[half:], 0.5)])  # cond 2, uncond 0.5

  w = jnp.array([0.0, 1.0, 3.0, -1.0])
  out = classifier_free_guidance(joint, w)(jnp.zeros((4, 2, 2, 1)), jnp.zeros((4,), jnp.int32))
  np.testing.assert_allclose(out[:, 0, 0, 0], 0.5 + np.asarray(w) * 1.5)  # uncond + w (cond - uncond)
  assert calls == [(8, 2, 2, 1)]  # one network call on the doubled batch


def test_guided_ddim_samples_the_guided_gaussian():
  diffusion = GaussianDiffusion.create('linear', 1000)

  def joint(x, t):
    a = diffusion.alphas_cumprod[t][:, None, None, None]
    half = x.shape[0] // 2
    mu = jnp.concatenate([jnp.full((half, 1, 1, 1), MU_C), jnp.full((half, 1, 1, 1), MU_U)])
    return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mu) / (a * SIGMA**2 + 1 - a)

  n = 3000
  w = jnp.concatenate([jnp.zeros(n), jnp.ones(n), jnp.full((n,), 2.5)])
  x = jax.jit(lambda key: ddim_sample(classifier_free_guidance(joint, w), diffusion, 'eps', (3 * n, 1, 1, 1), key,
                                      num_steps=100, clip_x0=False))(jax.random.PRNGKey(0))
  x = np.asarray(x).reshape(3, n)
  for row, scale in zip(x, (0.0, 1.0, 2.5)):
    assert abs(row.mean() - (MU_U + scale * (MU_C - MU_U))) < 0.03, (scale, row.mean())
    assert abs(row.std() - SIGMA) < 0.03, (scale, row.std())


def test_dynamic_threshold():
  x0 = np.zeros((2, 100), np.float32)
  x0[0, :] = np.linspace(-0.5, 0.5, 100)  # inside [-1, 1]: s = 1, unchanged
  x0[1, :] = np.linspace(-3.0, 3.0, 100)
  out = np.asarray(dynamic_threshold(jnp.asarray(x0), 0.9))
  np.testing.assert_allclose(out[0], x0[0], atol=1e-7)
  s = np.quantile(np.abs(x0[1]), 0.9)
  np.testing.assert_allclose(out[1], np.clip(x0[1], -s, s) / s, atol=1e-6)
  assert np.abs(out[1]).max() == 1.0 and s > 1.0

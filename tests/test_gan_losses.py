"""GAN losses and the WGAN-GP penalty against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import gan_losses


def test_nonsaturating_losses_match_hand_computed_bce():
  r, f = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  sig = lambda v: 1 / (1 + np.exp(-np.asarray(v, np.float64)))
  expected_d = -np.mean(np.log(sig(r))) - np.mean(np.log(1 - sig(f)))
  np.testing.assert_allclose(gan_losses.nonsaturating_d_loss(r, f), expected_d, rtol=1e-6)
  np.testing.assert_allclose(gan_losses.nonsaturating_g_loss(f), -np.mean(np.log(sig(f))), rtol=1e-6)
  # Stable for confident logits where a naive log(sigmoid) underflows.
  assert np.isfinite(gan_losses.nonsaturating_d_loss(jnp.array([-200.0]), jnp.array([200.0])))
  np.testing.assert_allclose(gan_losses.nonsaturating_g_loss(jnp.array([-200.0])), 200.0, rtol=1e-6)


def test_wasserstein_losses():
  np.testing.assert_allclose(gan_losses.wasserstein_d_loss(jnp.array([3.0, 1.0]), jnp.array([0.0, 1.0])), -1.5)
  np.testing.assert_allclose(gan_losses.wasserstein_g_loss(jnp.array([0.0, 1.0])), -0.5)


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
  """f(x) = w.x + b has gradient w everywhere: the penalty is (||w|| - 1)^2 for every interpolate."""
  key = jax.random.PRNGKey(0)
  w = jax.random.normal(key, (4, 4, 3))
  critic = lambda x: jnp.einsum('bhwc,hwc->b', x, w) + 0.7
  real, fake = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 4, 4, 3))
  x_hat = gan_losses.interpolate(real, fake, jax.random.uniform(jax.random.PRNGKey(2), (5,)))
  expected = (np.linalg.norm(np.asarray(w, np.float64)) - 1.0) ** 2
  np.testing.assert_allclose(gan_losses.gradient_penalty(critic, x_hat), expected, rtol=1e-5)


def test_gradient_penalty_of_a_nonlinear_critic_matches_finite_differences():
  w1 = jax.random.normal(jax.random.PRNGKey(3), (12, 8)) * 0.5
  w2 = jax.random.normal(jax.random.PRNGKey(4), (8,))
  critic = lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2
  x_hat = jax.random.normal(jax.random.PRNGKey(5), (3, 2, 2, 3))
  x64 = np.asarray(x_hat, np.float64)
  W1, W2 = np.asarray(w1, np.float64), np.asarray(w2, np.float64)
  f = lambda x: np.tanh(x.reshape(-1) @ W1) @ W2
  norms = []
  for example in x64:
    grad = np.zeros_like(example)
    for idx in np.ndindex(example.shape):  # central differences in float64
      e = np.zeros_like(example)
      e[idx] = 1e-6
      grad[idx] = (f(example + e) - f(example - e)) / 2e-6
    norms.append(np.linalg.norm(grad))
  expected = np.mean((np.array(norms) - 1.0) ** 2)
  np.testing.assert_allclose(gan_losses.gradient_penalty(critic, x_hat), expected, rtol=1e-4)


def test_interpolate_endpoints():
  real, fake = jnp.ones((2, 2, 2, 1)), jnp.zeros((2, 2, 2, 1))
  out = gan_losses.interpolate(real, fake, jnp.array([1.0, 0.25]))
  np.testing.assert_allclose(out[0], 1.0)
  np.testing.assert_allclose(out[1], 0.25)


def test_least_squares_losses_match_hand_computation():
  """Mao et al. 2017 with a=0, b=1, c=1: real scores (2, 0), fake scores (1, -1)."""
  r, f = jnp.array([2.0, 0.0]), jnp.array([1.0, -1.0])
  # D: 1/2 mean((r-1)^2) + 1/2 mean(f^2) = 1/2 (1 + 1)/2 + 1/2 (1 + 1)/2 = 1.0
  np.testing.assert_allclose(gan_losses.least_squares_d_loss(r, f), 1.0)
  # G: 1/2 mean((f-1)^2) = 1/2 (0 + 4)/2 = 1.0
  np.testing.assert_allclose(gan_losses.least_squares_g_loss(f), 1.0)
  # The optimum: D scores reals 1 and fakes 0; G wins when fakes score 1 (no saturation at wrong confident D).
  assert float(gan_losses.least_squares_d_loss(jnp.ones(3), jnp.zeros(3))) == 0.0
  assert float(gan_losses.least_squares_g_loss(jnp.ones(3))) == 0.0
  np.testing.assert_allclose(jax.grad(gan_losses.least_squares_g_loss)(jnp.array([-10.0])), [-11.0])

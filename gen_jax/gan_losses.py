"""GAN objectives on critic/discriminator logits, and the WGAN-GP gradient penalty.

Shapes: logits [b]; images [b h w c]. Every function returns a scalar mean over the (local) batch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def nonsaturating_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """BCE of D on real (label 1) and fake (label 0), from logits: -log sigmoid(r) - log(1 - sigmoid(f))."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def nonsaturating_g_loss(fake_logits: jax.Array) -> jax.Array:
  """Goodfellow et al.'s non-saturating generator loss: -log sigmoid(D(G(z)))."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def wasserstein_d_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """The critic minimises E[f(fake)] - E[f(real)] (the negated Wasserstein-1 estimate)."""
  return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wasserstein_g_loss(fake_scores: jax.Array) -> jax.Array:
  return -jnp.mean(fake_scores)


def least_squares_d_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """LSGAN (Mao et al. 2017, the 0-1 coding a=0, b=1): 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2] on raw scores.

  Penalising distance to the decision boundary keeps giving gradient to fakes that are already classified
  correctly (where the sigmoid cross-entropy saturates); minimising it minimises a Pearson chi^2 divergence.
  """
  return 0.5 * jnp.mean(jnp.square(real_scores - 1.0)) + 0.5 * jnp.mean(jnp.square(fake_scores))


def least_squares_g_loss(fake_scores: jax.Array) -> jax.Array:
  """LSGAN generator: 1/2 E[(D(G(z)) - 1)^2] (c = 1: fakes pushed to where D scores reals)."""
  return 0.5 * jnp.mean(jnp.square(fake_scores - 1.0))


# gan.loss -> (discriminator loss, generator loss)
LOSSES = {
    'nonsaturating': (nonsaturating_d_loss, nonsaturating_g_loss),
    'wasserstein': (wasserstein_d_loss, wasserstein_g_loss),
    'least_squares': (least_squares_d_loss, least_squares_g_loss),
}


def interpolate(real: jax.Array, fake: jax.Array, eps: jax.Array) -> jax.Array:
  """x_hat = eps x + (1 - eps) x_fake with one eps ~ U[0, 1] per example (eps [b])."""
  eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic_fn: Callable[[jax.Array], jax.Array], x_hat: jax.Array) -> jax.Array:
  """Gulrajani et al. 2017: mean over examples of (||grad_x f(x_hat)||_2 - 1)^2 (without the lambda).

  The gradient of sum_i f(x_hat_i) w.r.t. x_hat gives every example's own input gradient because the critic
  treats examples independently (no BatchNorm in a WGAN-GP critic).
  """
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))

"""Log-likelihoods and divergences for likelihood-based models (VAE now, diffusion bits/dim later).

Conventions: images x live in [-1, 1]; 8-bit data has `num_bins=256` bins of width 2/255 centred on the
values k/127.5 - 1. All log-probabilities are natural logs per element (sum them for per-image values).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr


def gaussian_kl_to_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """KL(N(mean, exp(log_var)) || N(0, 1)) per element, in closed form: (mean^2 + var - 1 - log_var) / 2."""
  return 0.5 * (jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var)


def gaussian_kl(mean1: jax.Array, log_var1: jax.Array, mean2: jax.Array, log_var2: jax.Array) -> jax.Array:
  """KL(N(mean1, exp(log_var1)) || N(mean2, exp(log_var2))) per element, in closed form.

  Uses d = log_var1 - log_var2 as 0.5 * (expm1(d) - d + (mean1 - mean2)^2 / var2): no 1 - 1 cancellation when
  the variances nearly agree (diffusion prior: var = 1 - acp_T with acp_T ~ 1e-5), and no tiny variance is
  exponentiated on its own before being divided (posteriors near t = 0).
  """
  d = log_var1 - log_var2
  return 0.5 * (jnp.expm1(d) - d + jnp.square(mean1 - mean2) * jnp.exp(-log_var2))


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """z = mean + std * eps with eps ~ N(0, I): a sample whose gradient flows to mean and log_var."""
  return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def bernoulli_log_prob(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log Bernoulli(targets | sigmoid(logits)), stable for large |logits|; targets in {0, 1}."""
  return targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits)


def binarize(x: jax.Array) -> jax.Array:
  """[-1, 1] images -> {0, 1} by thresholding at mid-grey (deterministic binarisation)."""
  return (x > 0.0).astype(x.dtype)


def _log_diff_exp(a: jax.Array, b: jax.Array) -> jax.Array:
  """log(exp(a) - exp(b)) for a >= b, stable."""
  return a + jnp.log(-jnp.expm1(jnp.minimum(b - a, -1e-12)))


def _discretized_log_prob(x, mean, log_cdf, log_sf, num_bins: int):
  """log P(bin of x) for a continuous distribution given its log-CDF and log-survival functions.

  The lowest bin takes all mass below its upper edge and the highest all mass above its lower edge, so the
  probabilities of the `num_bins` bins sum to exactly one.
  """
  half_width = 1.0 / (num_bins - 1)
  upper, lower = x + half_width, x - half_width
  # P(lower < X < upper) = CDF(upper) - CDF(lower) = SF(lower) - SF(upper): use whichever side is far from 1,
  # i.e. the CDF below the (symmetric) distribution's mean and the SF above it.
  mid_from_cdf = _log_diff_exp(log_cdf(upper), log_cdf(lower))
  mid_from_sf = _log_diff_exp(log_sf(lower), log_sf(upper))
  mid = jnp.where(x < mean, mid_from_cdf, mid_from_sf)
  edge = 1.0 - half_width  # x above this is the top bin (x == 1), below -edge the bottom bin (x == -1)
  return jnp.where(x < -edge, log_cdf(upper), jnp.where(x > edge, log_sf(lower), mid))


def discretized_gaussian_log_prob(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                                  num_bins: int = 256) -> jax.Array:
  """log P(x) under N(mean, exp(log_scale)^2) discretised to `num_bins` bins on [-1, 1] (Ho et al. 2020)."""
  inv_scale = jnp.exp(-log_scale)
  return _discretized_log_prob(x, mean, lambda v: log_ndtr((v - mean) * inv_scale),
                               lambda v: log_ndtr((mean - v) * inv_scale), num_bins)


def discretized_logistic_log_prob(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                                  num_bins: int = 256) -> jax.Array:
  """log P(x) under Logistic(mean, exp(log_scale)) discretised to `num_bins` bins on [-1, 1] (PixelCNN++)."""
  inv_scale = jnp.exp(-log_scale)
  return _discretized_log_prob(x, mean, lambda v: jax.nn.log_sigmoid((v - mean) * inv_scale),
                               lambda v: jax.nn.log_sigmoid((mean - v) * inv_scale), num_bins)


def bits_per_dim(nats_per_example: jax.Array, num_dims: int) -> jax.Array:
  """Negative log-likelihood in nats per example -> bits per dimension."""
  return nats_per_example / (num_dims * math.log(2.0))

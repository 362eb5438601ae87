"""Convolutional VAE (Kingma & Welling 2014): Gaussian q(z|x), decoder emitting likelihood parameters.

Shapes use einops names: b batch, h w c image, z latent. Each encoder stage halves h and w (stride-2 conv), so
h and w must be divisible by 2**len(channels); the decoder mirrors it with stride-2 transposed convs.
"""

from __future__ import annotations

from typing import Any, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax import distributions
from gen_jax.models.layers import Conv, ConvTranspose
from gen_jax.models.norms import silu

# Output channels per image channel that each likelihood needs from the decoder.
LIKELIHOOD_PARAMS = {'bernoulli': 1, 'logistic': 2, 'gaussian': 2}
MIN_LOG_SCALE = -7.0  # floor on the per-pixel log-scale: keeps the density finite when a pixel is constant


class Encoder(nn.Module):
  channels: Sequence[int]
  latent_dim: int
  dtype: Any = jnp.float32  # computation dtype; params and the returned statistics are float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:  # [b h w c] -> ([b z], [b z])
    h = x.astype(self.dtype)
    for ch in self.channels:
      h = silu(Conv(ch, (3, 3), strides=(2, 2), dtype=self.dtype)(h))
      h = silu(Conv(ch, (3, 3), dtype=self.dtype)(h))
    h = einops.rearrange(h, 'b h w c -> b (h w c)')
    stats = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h).astype(jnp.float32)
    mean, log_var = jnp.split(stats, 2, axis=-1)
    return mean, log_var


class Decoder(nn.Module):
  channels: Sequence[int]
  image_shape: tuple[int, int, int]
  out_channels: int
  dtype: Any = jnp.float32  # computation dtype; params and the output are float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:  # [b z] -> [b h w out_channels]
    height, width, _ = self.image_shape
    factor = 2 ** len(self.channels)
    h = nn.Dense((height // factor) * (width // factor) * self.channels[-1], dtype=self.dtype)(z.astype(self.dtype))
    h = einops.rearrange(silu(h), 'b (h w c) -> b h w c', h=height // factor, w=width // factor)
    for ch in reversed(self.channels):
      h = silu(ConvTranspose(ch, (3, 3), strides=(2, 2), dtype=self.dtype)(h))
      h = silu(Conv(ch, (3, 3), dtype=self.dtype)(h))
    return Conv(self.out_channels, (3, 3), dtype=self.dtype)(h).astype(jnp.float32)


class VAE(nn.Module):
  """`__call__` returns (decoder output, posterior mean, posterior log-variance) for images in [-1, 1]."""
  image_shape: tuple[int, int, int]
  channels: Sequence[int] = (32, 64)
  latent_dim: int = 16
  likelihood: str = 'bernoulli'
  dtype: Any = jnp.float32  # computation dtype (gen_jax.precision); the likelihood is computed in float32

  def setup(self):
    height, width, image_channels = self.image_shape
    factor = 2 ** len(self.channels)
    if height % factor or width % factor:
      raise ValueError(f'image size {height}x{width} must be divisible by 2**len(channels)={factor}')
    self.encoder = Encoder(self.channels, self.latent_dim, self.dtype)
    self.decoder = Decoder(self.channels, self.image_shape,
                           LIKELIHOOD_PARAMS[self.likelihood] * image_channels, self.dtype)

  def __call__(self, x: jax.Array, key: jax.Array):
    mean, log_var = self.encoder(x)
    z = distributions.reparameterize(key, mean, log_var)
    return self.decoder(z), mean, log_var

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)


def log_likelihood(likelihood: str, decoder_out: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) per example [b], summed over pixels; x in [-1, 1] (binarised first for 'bernoulli')."""
  if likelihood == 'bernoulli':
    per_pixel = distributions.bernoulli_log_prob(decoder_out, distributions.binarize(x))
  else:
    mean, log_scale = jnp.split(decoder_out, 2, axis=-1)
    log_scale = jnp.maximum(log_scale, MIN_LOG_SCALE)
    log_prob = {'logistic': distributions.discretized_logistic_log_prob,
                'gaussian': distributions.discretized_gaussian_log_prob}[likelihood]
    per_pixel = log_prob(x, mean, log_scale)
  return einops.reduce(per_pixel, 'b h w c -> b', 'sum')


def mean_image(likelihood: str, decoder_out: jax.Array) -> jax.Array:
  """The decoder's expected image in [-1, 1]: what sample grids show (pixel noise hides structure)."""
  if likelihood == 'bernoulli':
    return 2.0 * jax.nn.sigmoid(decoder_out) - 1.0
  mean, _ = jnp.split(decoder_out, 2, axis=-1)
  return jnp.clip(mean, -1.0, 1.0)

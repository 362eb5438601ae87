"""Fully connected GAN (Goodfellow et al. 2014, arXiv:1406.2661), in the widths of the common MNIST baseline.

Shapes use einops names: b batch, h w c image, z latent. The generator is latent -> 256 -> 512 -> 1024 -> h*w*c with
BatchNorm + ReLU after each hidden layer and a tanh output; the discriminator is h*w*c -> 1024 -> 512 -> 256 -> 1 with
LeakyReLU(0.2) + Dropout after each hidden layer (dropout keeps it from memorising the training set early).

BatchNorm with `bn_axis_name` set averages its batch statistics over that mapped axis (e.g. 'data' under
`jax.shard_map`), so a data-parallel step normalises with the global batch, as one device would.
"""

from __future__ import annotations

from typing import Any, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPGenerator(nn.Module):
  """z [b z] -> images [b h w c] in [-1, 1]."""
  image_shape: tuple[int, int, int]
  latent_dim: int = 100
  widths: Sequence[int] = (256, 512, 1024)
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32  # computation dtype; params and BatchNorm statistics stay float32

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    height, width, channels = self.image_shape
    h = z.astype(self.dtype)
    for i, features in enumerate(self.widths):
      h = nn.Dense(features, dtype=self.dtype, name=f'dense_{i}')(h)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=self.bn_axis_name,
                       dtype=self.dtype, name=f'bn_{i}')(h)
      h = nn.relu(h)
    h = jnp.tanh(nn.Dense(height * width * channels, dtype=self.dtype, name='out')(h))
    return einops.rearrange(h, 'b (h w c) -> b h w c', h=height, w=width).astype(jnp.float32)


class MLPDiscriminator(nn.Module):
  """Images [b h w c] -> logits [b] (no sigmoid). Dropout needs a 'dropout' rng when train=True."""
  widths: Sequence[int] = (1024, 512, 256)
  dropout: float = 0.3
  dtype: Any = jnp.float32  # computation dtype; params stay float32, logits are float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    h = einops.rearrange(x, 'b h w c -> b (h w c)').astype(self.dtype)
    for i, features in enumerate(self.widths):
      h = nn.leaky_relu(nn.Dense(features, dtype=self.dtype, name=f'dense_{i}')(h), 0.2)
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    logits = nn.Dense(1, dtype=self.dtype, name='out')(h)
    return einops.rearrange(logits, 'b 1 -> b').astype(jnp.float32)

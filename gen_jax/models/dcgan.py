"""DCGAN generator and discriminator (Radford et al. 2016, arXiv:1511.06434), laid out as the PyTorch DCGAN example.

Shapes use einops names: b batch, h w c image, z latent. The generator projects z to a base map (4x4, or 7x7 for
28x28 images) and doubles h and w with stride-2 4x4 transposed convs; the discriminator mirrors it with stride-2 4x4
convs. Layers followed by BatchNorm have no bias (BatchNorm's own bias replaces it), so with BatchNorm the parameter
counts equal the PyTorch example's (64x64x3, nz=100, ngf=ndf=64: 3,576,704 and 2,765,568). Weights start as the
paper's N(0, 0.02), BatchNorm scales as N(1, 0.02).

BatchNorm with `bn_axis_name` set averages its batch statistics over that mapped axis (e.g. 'data' under
`jax.shard_map`), so a data-parallel step normalises with the global batch's mean and variance, as one device would.
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models.layers import DownConv4x4, UpConv4x4

weight_init = nn.initializers.normal(0.02)


def scale_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def batch_norm(train: bool, axis_name: str | None, name: str | None = None, dtype: Any = None) -> nn.BatchNorm:
  """PyTorch's BatchNorm defaults (its momentum 0.1 is Flax's 0.9); stats over `axis_name` too when it is set.
  Statistics are computed in float32 whatever `dtype` (flax's force_float32_reductions)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                      scale_init=scale_init, dtype=dtype, name=name)


# Base map size per supported image size: each further layer doubles it.
BASE_SIZE = {28: 7, 32: 4, 64: 4}


def num_doublings(image_size: tuple[int, int]) -> int:
  height, width = image_size
  if height != width or height not in BASE_SIZE:
    raise ValueError(f'DCGAN supports square images of size {sorted(BASE_SIZE)}; got {height}x{width}')
  return (height // BASE_SIZE[height]).bit_length() - 1


# Explicit padding k - 1 - p = 2 makes flax's 4x4 stride-2 transposed conv PyTorch's (kernel 4, stride 2, padding 1);
# layers.UpConv4x4 computes the same map faster.
UP_PADDING = ((2, 2), (2, 2))


class DCGANGenerator(nn.Module):
  """z [b z] -> images [b h w c] in [-1, 1]; h = w in {28, 32, 64}. Channels ngf * 2**k shrink towards the output."""
  image_shape: tuple[int, int, int]
  latent_dim: int = 100
  ngf: int = 64
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32  # computation dtype; params and BatchNorm statistics stay float32

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    height, _, channels = self.image_shape
    doublings = num_doublings(self.image_shape[:2])
    base = BASE_SIZE[height]
    features = self.ngf * 2 ** (doublings - 1)
    dtype = self.dtype
    # A bias-free Dense to a base map is the paper's 4x4 transposed conv from a 1x1 map (same weights, same count).
    h = nn.Dense(base * base * features, use_bias=False, kernel_init=weight_init, dtype=dtype, name='project')(
        z.astype(dtype))
    h = einops.rearrange(h, 'b (h w c) -> b h w c', h=base, w=base)
    h = nn.relu(batch_norm(train, self.bn_axis_name, 'project_bn', dtype)(h))
    for i in range(doublings - 1):
      features //= 2
      h = UpConv4x4(features, kernel_init=weight_init, dtype=dtype, name=f'up_{i}')(h)
      h = nn.relu(batch_norm(train, self.bn_axis_name, f'up_{i}_bn', dtype)(h))
    h = UpConv4x4(channels, kernel_init=weight_init, dtype=dtype, name='out')(h)
    return jnp.tanh(h).astype(jnp.float32)


class DCGANDiscriminator(nn.Module):
  """Images [b h w c] -> logits [b] (no sigmoid); h = w in {28, 32, 64}.

  `norm` follows every conv but the first: 'batch' (the paper), 'layer' (statistics over h w c per example, affine
  per channel, as improved_wgan_training's critic: WGAN-GP's per-example gradient penalty rules out BatchNorm), or
  'none'. Without BatchNorm the convs and the output layer have biases.
  """
  ndf: int = 64
  norm: str = 'batch'
  bn_axis_name: str | None = None
  double_backward: bool = False  # True when a loss differentiates D's input gradient (WGAN-GP): see DownConv4x4
  dtype: Any = jnp.float32  # computation dtype; params and norm statistics stay float32, logits are float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.norm not in ('batch', 'layer', 'none'):
      raise ValueError(f"norm must be 'batch', 'layer' or 'none'; got {self.norm!r}")
    # 64x64 takes a fourth conv (8ndf); 28x28 and 32x32 stop at 4ndf.
    layers = 4 if num_doublings(x.shape[1:3]) == 4 else 3
    use_bias = self.norm != 'batch'
    dtype = self.dtype
    h = x.astype(dtype)
    for i in range(layers):
      h = DownConv4x4(self.ndf * 2 ** i, use_bias, weight_init, self.double_backward, dtype, name=f'down_{i}')(h)
      if i > 0 and self.norm == 'batch':
        h = batch_norm(train, self.bn_axis_name, f'down_{i}_bn', dtype)(h)
      elif i > 0 and self.norm == 'layer':
        h = nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1), feature_axes=-1, dtype=dtype,
                         name=f'down_{i}_ln')(h)
      h = nn.leaky_relu(h, 0.2)
    # A Dense over the whole remaining map is the paper's final conv whose kernel covers it (4x4, or 3x3 for 28x28).
    h = einops.rearrange(h, 'b h w c -> b (h w c)')
    logits = nn.Dense(1, use_bias=use_bias, kernel_init=weight_init, dtype=dtype, name='out')(h)
    return einops.rearrange(logits, 'b 1 -> b').astype(jnp.float32)

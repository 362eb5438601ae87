"""WGAN-GP ResNet generator and critic for 32x32 images (Gulrajani et al. 2017, arXiv:1704.00028).

Follows the CIFAR-10 networks of improved_wgan_training (gan_cifar_resnet.py): the generator upsamples a 4x4 map
through three residual up-blocks to 32x32; the critic has an optimised first block (its input has only c channels,
so there is no ReLU before its first conv), one down-block to 8x8, two plain blocks and a global mean-pool. At
ch=128 they hold 1,204,483 and 1,053,825 parameters.

The critic has no BatchNorm: WGAN-GP penalises each example's gradient norm, which BatchNorm would couple across the
batch. Initialisation as in the TF code: the blocks' 3x3 convs He-uniform over fan_avg, shortcuts and the
input/output layers Glorot-uniform, biases zero.

Shapes use einops names: b batch, h w c image, z latent.
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models.layers import Conv
from gen_jax.models.resample import UpsampleConv

he_init = nn.initializers.variance_scaling(2.0, 'fan_avg', 'uniform')
glorot_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')


def _conv(features: int, name: str, kernel: int = 3, init=he_init, dtype: Any = None) -> Conv:
  # layers.Conv, not nn.Conv: XLA:CPU's kernel-gradient conv runs at ~4 GFLOP/s on AVX2 hosts (4.5 s for one
  # 3x3 128->128 conv at 64x32x32), and WGAN-GP takes it 5 times per critic step, twice over (penalty).
  return Conv(features, (kernel, kernel), padding='SAME', kernel_init=init, dtype=dtype, name=name)


def _upsample_conv(features: int, name: str, kernel: int = 3, init=he_init, dtype: Any = None) -> UpsampleConv:
  # conv(upsample(x)) with the same params as _conv's; computed at the low resolution (gen_jax/models/resample.py)
  return UpsampleConv(features, (kernel, kernel), padding='SAME', kernel_init=init, dtype=dtype, name=name)


def mean_pool(x: jax.Array) -> jax.Array:  # 2x2 average, stride 2
  return einops.reduce(x, 'b (h 2) (w 2) c -> b h w c', 'mean')


class UpBlock(nn.Module):
  """[b h w c] -> [b 2h 2w ch]: BN ReLU upsample conv BN ReLU conv, plus upsample + 1x1 conv shortcut."""
  ch: int
  bn_axis_name: str | None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                   axis_name=self.bn_axis_name, dtype=self.dtype, name=name)
    h = nn.relu(bn('bn1')(x))
    h = _upsample_conv(self.ch, 'conv1', dtype=self.dtype)(h)
    h = nn.relu(bn('bn2')(h))
    h = _conv(self.ch, 'conv2', dtype=self.dtype)(h)
    return _upsample_conv(self.ch, 'shortcut', kernel=1, init=glorot_init, dtype=self.dtype)(x) + h


class CriticBlock(nn.Module):
  """ReLU conv ReLU conv [mean-pool], residual. A down-block's shortcut is 1x1 conv + mean-pool (the pool after the
  conv as in the TF code); a plain block with equal channels keeps the identity."""
  ch: int
  down: bool
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = _conv(self.ch, 'conv1', dtype=self.dtype)(nn.relu(x))
    h = _conv(self.ch, 'conv2', dtype=self.dtype)(nn.relu(h))
    shortcut = x
    if self.down or x.shape[-1] != self.ch:
      shortcut = _conv(self.ch, 'shortcut', kernel=1, init=glorot_init, dtype=self.dtype)(x)
    if self.down:
      h, shortcut = mean_pool(h), mean_pool(shortcut)
    return shortcut + h


class ResNetGenerator(nn.Module):
  """z [b z] -> images [b 32 32 c] in [-1, 1]."""
  image_shape: tuple[int, int, int] = (32, 32, 3)
  latent_dim: int = 128
  ch: int = 128
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32  # computation dtype; params and BatchNorm statistics stay float32

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    height, width, channels = self.image_shape
    if (height, width) != (32, 32):
      raise ValueError(f'ResNetGenerator supports 32x32 images only; got {height}x{width}')
    h = nn.Dense(4 * 4 * self.ch, kernel_init=glorot_init, dtype=self.dtype, name='project')(z.astype(self.dtype))
    h = einops.rearrange(h, 'b (h w c) -> b h w c', h=4, w=4)
    for i in range(3):  # 4 -> 8 -> 16 -> 32
      h = UpBlock(self.ch, self.bn_axis_name, self.dtype, name=f'up_{i}')(h, train)
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=self.bn_axis_name,
                     dtype=self.dtype, name='out_bn')(h)
    h = _conv(channels, 'out', init=glorot_init, dtype=self.dtype)(nn.relu(h))
    return jnp.tanh(h).astype(jnp.float32)


class ResNetCritic(nn.Module):
  """Images [b h w c] (32x32; any h, w divisible by 4) -> scores [b].

  `train` is unused (no BatchNorm, no dropout): it keeps the interface of the other discriminators.
  """
  ch: int = 128
  dtype: Any = jnp.float32  # computation dtype; params stay float32, scores are float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    del train
    dtype = self.dtype
    x = x.astype(dtype)
    # Optimised first block: conv ReLU conv mean-pool; shortcut mean-pool then 1x1 conv (cheaper on c channels).
    h = _conv(self.ch, 'block_0_conv1', dtype=dtype)(x)
    h = mean_pool(_conv(self.ch, 'block_0_conv2', dtype=dtype)(nn.relu(h)))
    h = h + _conv(self.ch, 'block_0_shortcut', kernel=1, init=glorot_init, dtype=dtype)(mean_pool(x))  # 16x16
    h = CriticBlock(self.ch, down=True, dtype=dtype, name='block_1')(h)  # 8x8
    h = CriticBlock(self.ch, down=False, dtype=dtype, name='block_2')(h)
    h = CriticBlock(self.ch, down=False, dtype=dtype, name='block_3')(h)
    h = einops.reduce(nn.relu(h), 'b h w c -> b c', 'mean')
    out = nn.Dense(1, kernel_init=glorot_init, dtype=dtype, name='out')(h)
    return einops.rearrange(out, 'b 1 -> b').astype(jnp.float32)

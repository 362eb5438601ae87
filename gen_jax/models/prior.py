"""unCLIP's prior networks (Ramesh et al. 2022, scaled down): CLIP text embedding -> CLIP image embedding.

`DiffusionPrior` denoises an image embedding z_t [b d] given the text embedding [b d] and timestep t [b],
predicting the clean embedding directly (as DALL-E 2's prior does); `RegressionPrior` is the ablation baseline
that predicts the mean of a fixed-variance Gaussian over the image embedding. Both are residual MLPs: an
embedding is one vector, so there are no tokens to attend over.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models.unet import timestep_embedding


class _ResidualMLP(nn.Module):
  """[b e] -> [b d]: input projection, `layers` pre-LayerNorm GELU blocks of width `hidden`, output projection
  (zero-initialised: the net starts at 0)."""
  out_dim: int
  hidden: int
  layers: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.Dense(self.hidden, name='input')(x)
    for i in range(self.layers):
      y = nn.gelu(nn.Dense(2 * self.hidden, name=f'block_{i}_in')(nn.LayerNorm(name=f'block_{i}_norm')(h)))
      h = h + nn.Dense(self.hidden, name=f'block_{i}_out')(y)
    h = nn.LayerNorm(name='final_norm')(h)
    return nn.Dense(self.out_dim, kernel_init=nn.initializers.zeros, name='output')(h)


class DiffusionPrior(nn.Module):
  """(z_t [b d], t [b], text [b d]) -> predicted clean image embedding [b d]."""
  hidden: int = 256
  layers: int = 4

  @nn.compact
  def __call__(self, zt: jax.Array, t: jax.Array, text: jax.Array) -> jax.Array:
    temb = timestep_embedding(t, self.hidden)
    return _ResidualMLP(zt.shape[-1], self.hidden, self.layers, name='mlp')(jnp.concatenate([zt, text, temb], -1))


class RegressionPrior(nn.Module):
  """text [b d] -> the mean image embedding [b d] (trained by mean squared error)."""
  hidden: int = 256
  layers: int = 4

  @nn.compact
  def __call__(self, text: jax.Array) -> jax.Array:
    return _ResidualMLP(text.shape[-1], self.hidden, self.layers, name='mlp')(text)

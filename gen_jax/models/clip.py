"""CLIP's two towers for small images (Radford et al. 2021, scaled down): a CNN image encoder and an MLP
projection head for a text encoder's pooled embedding. Both end in `embed_dim` unnormalised features; the
family normalises them onto the unit sphere (gen_jax/contrastive.py).

Shapes: b batch, h w c image, e text features, d = embed_dim.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ImageEncoder(nn.Module):
  """[b h w c] in [-1, 1] -> [b d]: conv stages of width, 2x width, 4x width (each but the first halves h and w),
  GroupNorm + GELU, global average pool, linear projection. No batch statistics: an image's embedding depends on
  that image only (so evaluation gives the same numbers on any device count)."""
  embed_dim: int
  width: int = 32
  blocks_per_stage: int = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for stage, mult in enumerate((1, 2, 4)):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        x = nn.Conv(self.width * mult, (3, 3), strides=(stride, stride), use_bias=False,  # GroupNorm's shift
                    name=f'stage_{stage}_conv_{block}')(x)
        x = nn.gelu(nn.GroupNorm(num_groups=8, name=f'stage_{stage}_norm_{block}')(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.embed_dim, name='projection')(nn.LayerNorm(name='final_norm')(x))


class ProjectionHead(nn.Module):
  """Text features [b e] -> [b d]: LayerNorm, one GELU hidden layer, linear."""
  embed_dim: int
  hidden: int = 256

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.LayerNorm(name='norm')(x)
    x = nn.gelu(nn.Dense(self.hidden, name='hidden')(x))
    return nn.Dense(self.embed_dim, name='projection')(x)

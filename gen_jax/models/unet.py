"""DDPM noise-prediction UNet (Ho et al. 2020), following the original TF code (diffusion_tf/models/unet.py).

Shapes use einops names: b batch, h w c image, n context tokens, d context features. Each level but the last halves
h and w (3x3 stride-2 conv, TF 'SAME' padding), so h and w must be divisible by 2**(len(ch_mult) - 1).

Submodule names are the TF variable scopes flattened (down_0_block_1, mid_attn_1, up_2_upsample, ...), so the
paper's checkpoints map over by name. Layers the paper initialises with scale 1e-10 (each ResBlock's second conv,
attention output projections, conv_out) are zero here, so every residual branch starts as the identity and the
network's initial output is 0.

Text conditioning (gen_jax/families/text_ddpm.py): a multi-head `CrossAttnBlock` to the text tokens (`context`
[b n d]) after every self-attention block, and a pooled text embedding added to the timestep embedding. Both are
created only when given, so unconditional checkpoints and parameter counts are unchanged; the cross-attention's
zero-initialised output projection makes a freshly added block the identity.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models.attention import attention
from gen_jax.models.dense import Dense
from gen_jax.models.layers import Conv
from gen_jax.models.norms import GroupNorm, silu
from gen_jax.models.resample import UpsampleConv

# TF `default_init`: variance scaling over fan_avg, uniform; biases zero.
default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')
zero_init = nn.initializers.zeros


def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal embedding [b] -> [b dim] (float32), as in the TF code (sin half then cos half, zero pad if odd)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) / (half - 1) * jnp.arange(half, dtype=jnp.float32))
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def _conv(features: int, name: str, dtype: Any, kernel: int = 3, stride: int = 1, init=default_init) -> Conv:
  return Conv(features, (kernel, kernel), strides=(stride, stride), padding='SAME', dtype=dtype,
              kernel_init=init, name=name)


def _dense(features: int, name: str, dtype: Any, init=default_init) -> Dense:
  return Dense(features, dtype=dtype, kernel_init=init, name=name)


class ResBlock(nn.Module):
  """x [b h w c], temb [b e] -> [b h w out_ch]; the timestep enters as a per-channel bias after the first conv."""
  out_ch: int
  dropout: float
  num_groups: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, train: bool) -> jax.Array:
    h = silu(GroupNorm(self.num_groups, dtype=self.dtype, name='norm1')(x))
    h = _conv(self.out_ch, 'conv1', self.dtype)(h)
    h = h + einops.rearrange(_dense(self.out_ch, 'temb_proj', self.dtype)(silu(temb)), 'b c -> b 1 1 c')
    h = silu(GroupNorm(self.num_groups, dtype=self.dtype, name='norm2')(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = _conv(self.out_ch, 'conv2', self.dtype, init=zero_init)(h)
    if x.shape[-1] != self.out_ch:
      x = _conv(self.out_ch, 'nin_shortcut', self.dtype, kernel=1)(x)
    return x + h


class AttnBlock(nn.Module):
  """Self-attention over all h*w positions, residual: [b h w c] -> [b h w c]."""
  num_groups: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, height, _, c = x.shape
    h = GroupNorm(self.num_groups, dtype=self.dtype, name='norm')(x)
    h = einops.rearrange(h, 'b h w c -> b (h w) c')
    q, k, v = (_dense(c, name, self.dtype)(h) for name in ('q', 'k', 'v'))
    h = _dense(c, 'proj_out', self.dtype, init=zero_init)(attention(q, k, v))
    return x + einops.rearrange(h, 'b (h w) c -> b h w c', h=height)


class CrossAttnBlock(nn.Module):
  """Attention from image positions to context tokens, residual: [b h w c], [b n d], mask [b n] -> [b h w c]."""
  num_groups: int
  dtype: Any
  heads: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array, context_mask: jax.Array | None = None) -> jax.Array:
    _, height, _, c = x.shape
    h = GroupNorm(self.num_groups, dtype=self.dtype, name='norm')(x)
    q = _dense(c, 'q', self.dtype)(einops.rearrange(h, 'b h w c -> b (h w) c'))
    k, v = (_dense(c, name, self.dtype)(context) for name in ('k', 'v'))
    h = _dense(c, 'proj_out', self.dtype, init=zero_init)(attention(q, k, v, context_mask, self.heads))
    return x + einops.rearrange(h, 'b (h w) c -> b h w c', h=height)


class UNet(nn.Module):
  """Predicts the noise eps: x [b h w c], t [b] -> [b h w out_channels] (float32).

  `dtype` is the computation dtype (e.g. bfloat16); parameters and the timestep sinusoids stay float32. `remat`
  recomputes every res / attention block in the backward pass (the same values and gradients, less memory).
  Dropout (inside ResBlocks) needs a 'dropout' rng when train=True.

  Conditioning (text-to-image): `context` [b n d] token states with `context_mask` [b n] feed the cross-attention
  blocks (`cross_attn_heads` heads; projected to `context_dim` first when set), and `pooled` [b e] (a sentence
  embedding) is projected and added to the timestep embedding. Without them the net is the unconditional one.
  """
  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  out_channels: int | None = None
  num_groups: int = 32
  dtype: Any = jnp.float32
  cross_attn_heads: int = 1
  context_dim: int | None = None
  remat: bool = False  # recompute each block's activations in the backward pass (nn.remat): ~1/5 more FLOPs

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, *, train: bool, context: jax.Array | None = None,
               context_mask: jax.Array | None = None, pooled: jax.Array | None = None) -> jax.Array:
    _, height, width, in_ch = x.shape
    factor = 2 ** (len(self.ch_mult) - 1)
    if height % factor or width % factor:
      raise ValueError(f'image size {height}x{width} must be divisible by 2**(len(ch_mult) - 1)={factor}')
    dtype, groups = self.dtype, self.num_groups
    # Rematerialised blocks keep their names, so params (and checkpoints) are the same with and without remat.
    res_block, attn_block, cross_attn_block = ((nn.remat(ResBlock, static_argnums=(3,)), nn.remat(AttnBlock),
                                                nn.remat(CrossAttnBlock)) if self.remat
                                               else (ResBlock, AttnBlock, CrossAttnBlock))
    res = lambda name, out_ch: res_block(out_ch, self.dropout, groups, dtype, name=name)

    def attention(h, name):  # self-attention, then cross-attention when conditioning on a context
      h = attn_block(groups, dtype, name=name)(h)
      if context is not None:
        h = cross_attn_block(groups, dtype, self.cross_attn_heads, name=f'cross_{name}')(h, context, context_mask)
      return h

    if context is not None:
      context = context.astype(dtype)
      if self.context_dim:
        context = _dense(self.context_dim, 'context_proj', dtype)(context)

    temb = timestep_embedding(t, self.ch)
    temb = _dense(4 * self.ch, 'temb_dense0', dtype)(temb)
    temb = _dense(4 * self.ch, 'temb_dense1', dtype)(silu(temb))
    if pooled is not None:
      temb = temb + _dense(4 * self.ch, 'pooled_proj', dtype)(pooled.astype(dtype))

    hs = [_conv(self.ch, 'conv_in', dtype)(x.astype(dtype))]
    for level, mult in enumerate(self.ch_mult):
      for block in range(self.num_res_blocks):
        h = res(f'down_{level}_block_{block}', self.ch * mult)(hs[-1], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attention(h, f'down_{level}_attn_{block}')
        hs.append(h)
      if level != len(self.ch_mult) - 1:
        hs.append(_conv(hs[-1].shape[-1], f'down_{level}_downsample', dtype, stride=2)(hs[-1]))

    h = hs[-1]
    mid_ch = h.shape[-1]
    h = res('mid_block_1', mid_ch)(h, temb, train)
    h = attention(h, 'mid_attn_1')
    h = res('mid_block_2', mid_ch)(h, temb, train)

    for level, mult in reversed(list(enumerate(self.ch_mult))):
      for block in range(self.num_res_blocks + 1):
        h = res(f'up_{level}_block_{block}', self.ch * mult)(jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attention(h, f'up_{level}_attn_{block}')
      if level != 0:
        h = UpsampleConv(h.shape[-1], (3, 3), padding='SAME', dtype=dtype, kernel_init=default_init,
                         name=f'up_{level}_upsample')(h)  # nearest-neighbour x2, then a 3x3 conv
    assert not hs

    h = silu(GroupNorm(groups, dtype=dtype, name='norm_out')(h))
    out_ch = in_ch if self.out_channels is None else self.out_channels
    return _conv(out_ch, 'conv_out', dtype, init=zero_init)(h).astype(jnp.float32)

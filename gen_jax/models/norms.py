"""GroupNorm and SiLU in the forms XLA:CPU runs faster, each with a plain twin of the same values (`forms()`).

Split from `gen_jax.models.layers` (which re-exports them): the convolutions live there, the normalisation and the
activation here; tests/models/test_layers.py tests both.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gen_jax import parallel
from gen_jax.models.forms import forms


def silu(x: jax.Array) -> jax.Array:
  """x * sigmoid(x) with sigmoid(x) = (1 + tanh(x / 2)) / 2: XLA:CPU computes jax's sigmoid as 1 / (1 + exp(-x)),
  a divide per element, and the tanh form has none (DDPM UNet step ~5% faster, A/B on an EPYC Zen 4). Within 2.5e-6
  of jax.nn.silu (values and gradients); relative precision is lost only in the tail below x = -3, where silu is
  under 0.15 in size and its error stays below 2.5e-6 (tested)."""
  if not forms().tanh_silu:
    return jax.nn.silu(x)
  return x * (0.5 * jnp.tanh(0.5 * x) + 0.5)


def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, num_groups: int, epsilon: float = 1e-6) -> jax.Array:
  """GroupNorm of x [b ... c] (statistics per example and group, float32), then scale and bias [c].

  Statistics in two stages (a mean over the positions per channel, then over each group's channels) and a hand-written
  backward of the same shape: on XLA:CPU flax's GroupNorm, whose single reduction mixes positions and channels, took
  11 ms forward for a 16x32x32x64 map; this takes 0.7 ms. Same values as flax (its fast variance E[x^2] - E[x]^2).
  """
  if not forms().custom_group_norm:
    return _group_norm_fwd(x, scale, bias, num_groups, epsilon)[0]  # the same maths, differentiated by jax
  return _group_norm_traced_once(x, scale, bias, num_groups, epsilon)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _group_norm_traced_once(x, scale, bias, num_groups, epsilon):
  """Traced once per shape, like `_conv2d_traced_once`."""
  return _group_norm(x, parallel.varying_like(scale, x), parallel.varying_like(bias, x), num_groups, epsilon)


def _group_stats(x, num_groups, epsilon):
  """x [b n c] -> mean and 1/std per channel, each [b c] (float32)."""
  b, c = x.shape[0], x.shape[-1]
  per_group = lambda v: v.reshape(b, num_groups, c // num_groups).mean(-1)
  x = x.astype(jnp.float32)
  mean, mean_sq = per_group(x.mean(1)), per_group(jnp.square(x).mean(1))
  inv_std = lax.rsqrt(jnp.maximum(mean_sq - jnp.square(mean), 0.0) + epsilon)
  per_channel = lambda v: jnp.repeat(v, c // num_groups, axis=-1)
  return per_channel(mean), per_channel(inv_std)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _group_norm(x, scale, bias, num_groups, epsilon):
  return _group_norm_fwd(x, scale, bias, num_groups, epsilon)[0]


def _group_norm_fwd(x, scale, bias, num_groups, epsilon):
  flat = x.reshape(x.shape[0], -1, x.shape[-1])
  mean, inv_std = _group_stats(flat, num_groups, epsilon)
  y = (flat - mean[:, None]) * (inv_std[:, None] * scale) + bias
  return y.reshape(x.shape).astype(x.dtype), (x, scale, mean, inv_std)


def _group_norm_bwd(num_groups, epsilon, residuals, g):
  del epsilon
  x, scale, mean, inv_std = residuals
  b, c = x.shape[0], x.shape[-1]
  g = g.reshape(b, -1, c).astype(jnp.float32)
  x_hat = (x.reshape(b, -1, c) - mean[:, None]) * inv_std[:, None]
  sum_g, sum_g_x_hat = g.sum(1), (g * x_hat).sum(1)  # [b c]
  count = g.shape[1] * (c // num_groups)
  group_mean = lambda v: jnp.repeat(v.reshape(b, num_groups, -1).sum(-1) / count, c // num_groups, axis=-1)
  # dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)), means over each group, dx_hat = g * scale
  mean_dx_hat, mean_dx_hat_x_hat = group_mean(sum_g * scale), group_mean(sum_g_x_hat * scale)
  dx = inv_std[:, None] * (g * scale - mean_dx_hat[:, None] - x_hat * mean_dx_hat_x_hat[:, None])
  return (dx.reshape(x.shape).astype(x.dtype), sum_g_x_hat.sum(0).astype(scale.dtype),
          sum_g.sum(0).astype(scale.dtype))


_group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


class GroupNorm(nn.Module):
  """Drop-in for `nn.GroupNorm(num_groups)` on channels-last inputs: same 'scale'/'bias' params, epsilon and values,
  computed by `group_norm`. dtype: the output's (None: the input's)."""
  num_groups: int = 32
  epsilon: float = 1e-6
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    if channels % self.num_groups:
      raise ValueError(f'GroupNorm: {channels} channels do not split into {self.num_groups} groups; '
                       'choose channel counts divisible by the number of groups')
    scale = self.param('scale', nn.initializers.ones, (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    y = group_norm(x, scale, bias, self.num_groups, self.epsilon)
    return y.astype(self.dtype or x.dtype)

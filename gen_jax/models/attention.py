"""Softmax attention for the UNet's self- and cross-attention blocks, with two equal forms of its backward pass.

`forms().custom_attention_vjp` differentiates softmax(q k^T) v by hand from the saved weights and output (dlogits =
w * (dw - sum_c g out)), else jax differentiates `jax.nn.softmax`: the same values within float32 rounding (tested);
the DDPM UNet ch 64 step at batch 16 ran 0.96x the time with it (A/B, 2-core Sapphire Rapids). Its six batched
matmuls (two forward, four backward) go through oneDNN where `forms().onednn_matmuls` and it can (float32 on the CPU:
`gen_jax.onednn.matmul`, ~1.5-2.7x faster than XLA's dots alone, operands read transposed in place).
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp

from gen_jax import onednn
from gen_jax.models.forms import forms


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
              heads: int = 1) -> jax.Array:
  """Softmax attention with `heads` heads: q [b i (h c)], k v [b j (h c)], mask [b j] (True = attend) -> [b i (h c)].

  Logits and softmax run in float32 so bfloat16 computation doesn't saturate them.
  """
  q, k, v = (einops.rearrange(y, 'b i (h c) -> b h i c', h=heads) for y in (q, k, v))
  attend = _attend if forms().custom_attention_vjp else _attend_autodiff
  return einops.rearrange(attend(q, k, v, mask), 'b h i c -> b i (h c)')


def _matmul(a: jax.Array, b: jax.Array, trans_a: bool = False, trans_b: bool = False, **einsum_options) -> jax.Array:
  """[b h m n] = op(a) op(b) per (b, h), op(a) = a [b h m k] or, with trans_a, a [b h k m] transposed (likewise b):
  oneDNN's matmul where `forms().onednn_matmuls` and it can, else XLA's dot."""
  if forms().onednn_matmuls:
    flat_a, flat_b = (einops.rearrange(y, 'b h x y -> (b h) x y') for y in (a, b))
    if onednn.usable_matmul(flat_a, flat_b):
      product = onednn.matmul(flat_a, flat_b, trans_a, trans_b)  # [(b h) m n]
      return product.reshape(*a.shape[:2], *product.shape[1:])
  spec = ('bhkm' if trans_a else 'bhmk') + ',' + ('bhnk' if trans_b else 'bhkn') + '->bhmn'
  return jnp.einsum(spec, a, b, **einsum_options)


def _weights(q, k, mask):
  """Attention weights [b h i j] in float32; masked keys get weight 0 (a row with none left is uniform)."""
  logits = _matmul(q, k, trans_b=True, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
  if mask is not None:
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
  if not forms().custom_attention_vjp:
    return jax.nn.softmax(logits, axis=-1)
  # softmax written out: its gradient is _attend_bwd's, not jax.nn.softmax's custom JVP
  exp = jnp.exp(logits - jnp.max(logits, -1, keepdims=True))
  return exp / jnp.sum(exp, -1, keepdims=True)


def _attend_autodiff(q, k, v, mask):
  return _matmul(_weights(q, k, mask).astype(v.dtype), v)


@jax.custom_vjp
def _attend(q, k, v, mask):
  return _attend_autodiff(q, k, v, mask)


def _attend_fwd(q, k, v, mask):
  weights = _weights(q, k, mask)
  out = _matmul(weights.astype(v.dtype), v)
  return out, (q, k, v, weights, out)


def _attend_bwd(residuals, g):
  q, k, v, weights, out = residuals
  dv = _matmul(weights.astype(g.dtype), g, trans_a=True)
  dweights = _matmul(g, v, trans_b=True, preferred_element_type=jnp.float32)
  # softmax's backward, dlogits = w * (dw - sum_j dw w), with sum_j dw_ij w_ij = sum_c g_ic out_ic (out = w v; as
  # FlashAttention): a sum over c, not over the [b h i j] map; masked keys have weight 0, so their logits get no
  # gradient. UNet ch 64 b16 step B/A 0.991 (6 rounds, all under 1; 2-core Sapphire Rapids).
  rows = jnp.einsum('bhic,bhic->bhi', g, out, preferred_element_type=jnp.float32)[..., None]
  dlogits = weights * (dweights - rows) * q.shape[-1] ** -0.5
  dq = _matmul(dlogits.astype(k.dtype), k)
  dk = _matmul(dlogits.astype(q.dtype), q, trans_a=True)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_attend.defvjp(_attend_fwd, _attend_bwd)

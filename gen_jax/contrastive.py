"""CLIP's objective (Radford et al. 2021): symmetric InfoNCE over image-text pairs with a learned temperature,
negatives from the whole global batch.

Shapes: image_emb, text_emb [b d] (any norm: normalised here); logits [b B] (this device's rows against all B
examples of the global batch). Under `shard_map` the embeddings are all-gathered over the `data` axis, so each
device scores its own examples against every device's: the per-device mean loss, averaged over devices, is the
full-batch loss and gradients equal a 1-device run (tests check 8 devices == 1 device).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from gen_jax.parallel import DATA

INIT_LOG_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature 0.07
MAX_LOG_SCALE = math.log(100.0)  # CLIP clips the logit scale at 100 to keep training stable


def normalise(x: jax.Array) -> jax.Array:
  return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-12)


def logit_scale(log_scale: jax.Array) -> jax.Array:
  """exp of the learned log-scale, clipped at 100 (the gradient stops at the clip, as CLIP's clamp does)."""
  return jnp.exp(jnp.minimum(log_scale, MAX_LOG_SCALE))


def infonce(image_emb: jax.Array, text_emb: jax.Array, log_scale: jax.Array) -> jax.Array:
  """Symmetric InfoNCE of one batch on one device: (CE(image -> text) + CE(text -> image)) / 2, mean over b."""
  i, t = normalise(image_emb), normalise(text_emb)
  logits = logit_scale(log_scale) * i @ t.T  # [b b]: row k's positive is column k
  labels = jnp.arange(i.shape[0])
  image_to_text = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  text_to_image = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
  return 0.5 * (jnp.mean(image_to_text) + jnp.mean(text_to_image))


def global_infonce(image_emb: jax.Array, text_emb: jax.Array, log_scale: jax.Array,
                   axis_name: str = DATA) -> jax.Array:
  """Per-device code: this device's b pairs against the B = b x devices pairs of the global batch.

  Returns the mean over this device's rows (both directions); its mean over devices is `infonce` of the whole
  batch. Gradients flow back through the all-gather to the devices that computed each embedding.
  """
  i, t = normalise(image_emb), normalise(text_emb)
  all_i = jax.lax.all_gather(i, axis_name, tiled=True)  # [B d], device-major like the global batch
  all_t = jax.lax.all_gather(t, axis_name, tiled=True)
  scale = logit_scale(log_scale)
  labels = jax.lax.axis_index(axis_name) * i.shape[0] + jnp.arange(i.shape[0])
  image_to_text = optax.softmax_cross_entropy_with_integer_labels(scale * i @ all_t.T, labels)  # [b]
  text_to_image = optax.softmax_cross_entropy_with_integer_labels(scale * t @ all_i.T, labels)
  return 0.5 * (jnp.mean(image_to_text) + jnp.mean(text_to_image))


def retrieval_accuracy(image_emb: jax.Array, text_emb: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(image -> text, text -> image) recall@1 of one set of pairs [n d]: the fraction whose own partner is the
  nearest by cosine."""
  sims = normalise(image_emb) @ normalise(text_emb).T
  labels = jnp.arange(sims.shape[0])
  return jnp.mean(jnp.argmax(sims, axis=1) == labels), jnp.mean(jnp.argmax(sims, axis=0) == labels)

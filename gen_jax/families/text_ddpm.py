"""Text-to-image DDPM: the UNet conditioned on a text encoder's token states (cross-attention) and pooled
embedding (added to the timestep embedding), trained with classifier-free guidance's null conditioning.

Captions and text encoders: gen_jax/families/captioned.py. Config: text.{encoder, max_length, width, layers,
heads, p_uncond}, model.{cross_attn_heads, context_dim} on top of the DDPM family's keys; sample.guidance for
every sample grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import parallel
from gen_jax.diffusion.samplers import classifier_free_guidance
from gen_jax.errors import UserError
from gen_jax.families import register
from gen_jax.families.base import Conditioning, TrainState
from gen_jax.families.captioned import Captioned
from gen_jax.families.ddpm import DDPMFamily
from gen_jax.models.unet import UNet
from gen_jax.text.encoders import TextEmbedding


def _concat(a, b):
  return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


@register('text_ddpm')
class TextDDPMFamily(Captioned, DDPMFamily):
  conditional = True
  reports_bits_per_dim = False  # a conditional bound needs captions: not reported (VAE / DDPM only)

  def __init__(self, config):
    super().__init__(config)
    self.check_text_config()
    self.p_uncond = config.text.p_uncond
    self.model = self._cross_attention_unet(config.model)

  # --- data and frozen inputs ------------------------------------------------------------------------------------
  def bind_data(self, source):
    return self.bind_captions(source)

  def frozen(self):
    return self.caption_frozen()

  def _cross_attention_unet(self, m) -> UNet:
    """The DDPM UNet with cross-attention to `model.context_dim`-projected context tokens."""
    widths = sorted({m.ch * mult for mult in m.ch_mult})
    if m.cross_attn_heads < 1 or any(w % m.cross_attn_heads for w in widths):
      raise UserError(f'model.cross_attn_heads={m.cross_attn_heads} must divide every UNet width {widths}.')
    return UNet(**self._unet_kwargs(m), cross_attn_heads=m.cross_attn_heads, context_dim=m.context_dim or None,
                remat=bool(self.config.remat))

  def checkpoint_metadata(self):
    return {**super().checkpoint_metadata(), 'text_encoder': self.config.text.encoder}

  # --- network ---------------------------------------------------------------------------------------------------
  def _init_params(self, key, x):
    unet_key, text_key, null_key = jax.random.split(key, 3)
    n, d = self._context_shape()
    params = {'unet': self.model.init(unet_key, x, jnp.zeros((1,), jnp.int32), train=False,
                                      context=jnp.zeros((1, n, d)), context_mask=jnp.ones((1, n), bool),
                                      pooled=jnp.zeros((1, d)))['params'],
              'null': {'states': 0.02 * jax.random.normal(null_key, (d,)), 'pooled': jnp.zeros((d,))}}
    if self.encoder.trainable:
      params['text_encoder'] = self.encoder.init(text_key)
    return params

  def _context_shape(self) -> tuple[int, int]:
    n = 1 if self.encoder.name == 'class' else self.config.text.max_length
    return n, self.encoder.width

  def _conditioned(self, params, emb: TextEmbedding, drop: jax.Array):
    """The UNet with the embedding, or the learned null (one token) where `drop` [b] is True."""
    n = emb.states.shape[1]
    first = jnp.arange(n) == 0
    null_states = jnp.where(first[:, None], params['null']['states'], 0.0)
    states = jnp.where(drop[:, None, None], null_states, emb.states)
    mask = jnp.where(drop[:, None], first, emb.mask)
    pooled = jnp.where(drop[:, None], params['null']['pooled'], emb.pooled)

    def net(xt, t, train=False, rngs=None):
      return self.model.apply({'params': params['unet']}, xt, t, train=train, rngs=rngs, context=states,
                              context_mask=mask, pooled=pooled).astype(jnp.float32)
    return net

  def _network(self, params, frozen, batch, drop_key=None):
    emb = self.batch_text_embedding(params, frozen, batch)
    b = emb.pooled.shape[0]
    drop = jnp.zeros((b,), bool) if drop_key is None else self.null_mask(drop_key, b)
    return self._conditioned(params, emb, drop)

  def null_mask(self, key, local_batch: int) -> jax.Array:
    """[b] True where an example trains with the null conditioning (probability `p_uncond`), keyed by its
    global position: the same examples on any number of devices. Per-device code (under shard_map)."""
    keys = parallel.example_keys(key, local_batch)
    return jax.vmap(lambda k: jax.random.bernoulli(k, self.p_uncond))(keys)

  # --- sampling --------------------------------------------------------------------------------------------------
  def sample(self, state: TrainState, rng, num_samples: int, cond=None):
    """Guided sampling; `cond` from `prompt_conditioning`: every entry is per sample, so prompts, negative
    prompts and the guidance scale are runtime values (no recompilation when they change)."""
    if cond is None:
      raise UserError('text_ddpm samples need prompts (Family.prompt_conditioning).')
    params = state.ema_params if self.config.sampler.use_ema else state.params
    emb = _concat(self.embed_text(params, state.frozen, cond['prompt']),
                  self.embed_text(params, state.frozen, cond['negative']))
    drop = jnp.concatenate([jnp.zeros((num_samples,), bool), ~cond['use_negative']])
    joint = self._conditioned(params, emb, drop)
    model_fn = classifier_free_guidance(lambda x, t: joint(x, t), cond['guidance'])
    return self._run_sampler(model_fn, num_samples, rng)

  def prompt_conditioning(self, prompts, num_per_prompt, guidance, negative_prompt=''):
    prompts = self.check_prompts(prompts)
    each = [p for p in prompts for _ in range(num_per_prompt)]
    inputs = self.encoded(each)  # a frozen encoder's embeddings: encoded here, not in every sampling call
    use_negative = bool(negative_prompt.strip())
    negative = self.encoded([negative_prompt] * len(each)) if use_negative else inputs
    return Conditioning(inputs={'prompt': inputs, 'negative': negative,
                                'use_negative': np.full((len(each),), use_negative),
                                'guidance': np.full((len(each),), guidance, np.float32)}, prompts=each)


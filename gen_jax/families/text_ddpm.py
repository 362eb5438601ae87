"""Text-to-image DDPM: the UNet conditioned on a text encoder's token states (cross-attention) and pooled
embedding (added to the timestep embedding), trained with classifier-free guidance's null conditioning.

Captions: templated ones arrive as ids into the dataset's caption table (gen_jax/data/captions.py), whose encoder
inputs, or for the frozen MiniLM its embeddings, are built once in `frozen()`; free text (`data.caption_key`)
arrives as tokens. Config: text.{encoder, max_length, width, layers, heads, p_uncond}, model.{cross_attn_heads,
context_dim} on top of the DDPM family's keys; sample.guidance for every sample grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import compiler, parallel
from gen_jax.data.captions import caption_table
from gen_jax.diffusion.samplers import classifier_free_guidance
from gen_jax.errors import UserError
from gen_jax.families import register
from gen_jax.families.base import Conditioning, TrainState
from gen_jax.families.ddpm import DDPMFamily
from gen_jax.models.unet import UNet
from gen_jax.text.encoders import ENCODERS, TextEmbedding, make_text_encoder


def _concat(a, b):
  return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


@register('text_ddpm')
class TextDDPMFamily(DDPMFamily):
  conditional = True
  reports_bits_per_dim = False  # a conditional bound needs captions: not reported (VAE / DDPM only)

  def __init__(self, config):
    super().__init__(config)
    m, text = config.model, config.text
    if not 0.0 <= text.p_uncond < 1.0:
      raise UserError(f'text.p_uncond={text.p_uncond} must be in [0, 1).')
    if text.encoder not in ENCODERS:
      raise UserError(f'Unknown text.encoder {text.encoder!r}; use one of {ENCODERS}.')
    widths = sorted({m.ch * mult for mult in m.ch_mult})
    if m.cross_attn_heads < 1 or any(w % m.cross_attn_heads for w in widths):
      raise UserError(f'model.cross_attn_heads={m.cross_attn_heads} must divide every UNet width {widths}.')
    self.model = UNet(**self._unet_kwargs(m), cross_attn_heads=m.cross_attn_heads, context_dim=m.context_dim or None)
    self.captions = self.encoder = None  # set by bind_data, from the training source's class names

  # --- data and frozen inputs ------------------------------------------------------------------------------------
  def bind_data(self, source):
    self.captions = caption_table(self.config.data.name, source.class_names)
    self.encoder = make_text_encoder(self.config.text, self.captions)
    if self.config.data.get('caption_key'):
      if self.encoder.name == 'class':
        raise UserError('data.caption_key gives free-text captions, which text.encoder=class cannot read; use '
                        'text.encoder=minilm or transformer.')
      return {'tokenize': self.encoder.tokenizer.one}
    return {'caption_templates': self.captions.num_templates}

  def frozen(self):
    """The frozen encoder's weights and the caption table: embedded once here when the encoder is frozen, as
    encoder inputs (re-encoded each step, with gradients) when it is trained."""
    return {'encoder': self.encoder.frozen(), 'captions': self._encoded(list(self.captions.captions))}

  def _encoded(self, texts):
    """Per-text encoder inputs [n ...]; for a frozen encoder its TextEmbedding instead, computed once per
    distinct text (padded to a multiple of 16 texts, so few encoder compiles) and gathered on the host."""
    if self.encoder.trainable:
      return self.encoder.inputs(texts)
    position = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    unique = list(position)
    padded = unique + unique[-1:] * (-len(unique) % 16)
    if not hasattr(self, '_frozen_encode'):
      self._frozen_encode = compiler.jit(self.encoder.__call__)
    emb = self._frozen_encode(None, self.encoder.frozen(), self.encoder.inputs(padded))
    index = np.asarray([position[t] for t in texts])
    return jax.tree.map(lambda a: np.asarray(a)[index], emb)

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

  def _embed(self, params, frozen, inputs) -> TextEmbedding:
    return self.encoder(params.get('text_encoder'), frozen['encoder'], inputs)

  def _batch_embedding(self, params, frozen, batch) -> TextEmbedding:
    if 'tokens' in batch:  # free text
      return self._embed(params, frozen, {'tokens': batch['tokens'], 'token_mask': batch['token_mask']})
    table = frozen['captions']
    picked = jax.tree.map(lambda a: a[batch['caption']], table)
    return picked if isinstance(table, TextEmbedding) else self._embed(params, frozen, picked)

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
    emb = self._batch_embedding(params, frozen, batch)
    b = emb.pooled.shape[0]
    drop = jnp.zeros((b,), bool) if drop_key is None else self.null_mask(drop_key, b)
    return self._conditioned(params, emb, drop)

  def null_mask(self, key, local_batch: int) -> jax.Array:
    """[b] True where an example trains with the null conditioning (probability text.p_uncond), keyed by its
    global position: the same examples on any number of devices. Per-device code (under shard_map)."""
    keys = parallel.example_keys(key, local_batch)
    return jax.vmap(lambda k: jax.random.bernoulli(k, self.config.text.p_uncond))(keys)

  # --- sampling --------------------------------------------------------------------------------------------------
  def sample(self, state: TrainState, rng, num_samples: int, cond=None):
    """Guided sampling; `cond` from `prompt_conditioning`: every entry is per sample, so prompts, negative
    prompts and the guidance scale are runtime values (no recompilation when they change)."""
    if cond is None:
      raise UserError('text_ddpm samples need prompts (Family.prompt_conditioning).')
    params = state.ema_params if self.config.sampler.use_ema else state.params
    embed = lambda x: x if isinstance(x, TextEmbedding) else self._embed(params, state.frozen, x)
    emb = _concat(embed(cond['prompt']), embed(cond['negative']))
    drop = jnp.concatenate([jnp.zeros((num_samples,), bool), ~cond['use_negative']])
    joint = self._conditioned(params, emb, drop)
    model_fn = classifier_free_guidance(lambda x, t: joint(x, t), cond['guidance'])
    return self._run_sampler(model_fn, num_samples, rng)

  def prompt_conditioning(self, prompts, num_per_prompt, guidance, negative_prompt=''):
    prompts = list(prompts)
    if not prompts:
      raise UserError('No prompts given.')
    for p in prompts:
      if not p.strip():
        raise UserError('An empty --prompt: give each --prompt some text, e.g. '
                        f'--prompt "{self.captions.prompts[0]}".')
    each = [p for p in prompts for _ in range(num_per_prompt)]
    inputs = self._encoded(each)  # a frozen encoder's embeddings: encoded here, not in every sampling call
    use_negative = bool(negative_prompt.strip())
    negative = self._encoded([negative_prompt] * len(each)) if use_negative else inputs
    return Conditioning(inputs={'prompt': inputs, 'negative': negative,
                                'use_negative': np.full((len(each),), use_negative),
                                'guidance': np.full((len(each),), guidance, np.float32)}, prompts=each)

  def fixed_prompts(self):
    return list(self.captions.prompts)

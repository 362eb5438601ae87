"""Captions for families that read text (text_ddpm, clip, unclip): the training source's caption table, the
text encoder behind `config.text`, and the per-batch text embedding.

Templated captions arrive as ids into the dataset's caption table (gen_jax/data/captions.py), whose encoder
inputs, or for a frozen encoder (MiniLM) its embeddings, are built once in `caption_frozen()`; free text
(`data.caption_key`) arrives as tokens.
"""

from __future__ import annotations

import jax
import numpy as np

from gen_jax import compiler
from gen_jax.data.captions import caption_table
from gen_jax.errors import UserError
from gen_jax.text.encoders import ENCODERS, TextEmbedding, make_text_encoder


class Captioned:
  """Mixin for a Family with `config.text`: call `bind_captions` from `bind_data`."""
  captions = encoder = None  # set by bind_captions, from the training source's class names

  def check_text_config(self) -> None:
    text = self.config.text
    if not 0.0 <= text.p_uncond < 1.0:
      raise UserError(f'text.p_uncond={text.p_uncond} must be in [0, 1).')
    if text.encoder not in ENCODERS:
      raise UserError(f'Unknown text.encoder {text.encoder!r}; use one of {ENCODERS}.')

  def bind_captions(self, source) -> dict:
    self.captions = caption_table(self.config.data.name, source.class_names)
    self.encoder = make_text_encoder(self.config.text, self.captions)
    if self.config.data.get('caption_key'):
      if self.encoder.name == 'class':
        raise UserError('data.caption_key gives free-text captions, which text.encoder=class cannot read; use '
                        'text.encoder=minilm or transformer.')
      return {'tokenize': self.encoder.tokenizer.one}
    return {'caption_templates': self.captions.num_templates}

  def caption_frozen(self) -> dict:
    """The frozen encoder's weights and the caption table: embedded once here when the encoder is frozen, as
    encoder inputs (re-encoded each step, with gradients) when it is trained."""
    return {'encoder': self.encoder.frozen(), 'captions': self.encoded(list(self.captions.captions))}

  def encoded(self, texts):
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

  def embed_text(self, params, frozen, inputs) -> TextEmbedding:
    """`inputs` from `encoded` (or already a TextEmbedding) -> TextEmbedding; `params['text_encoder']` when trained."""
    if isinstance(inputs, TextEmbedding):
      return inputs
    return self.encoder(params.get('text_encoder'), frozen['encoder'], inputs)

  def batch_text_embedding(self, params, frozen, batch) -> TextEmbedding:
    if 'tokens' in batch:  # free text
      return self.embed_text(params, frozen, {'tokens': batch['tokens'], 'token_mask': batch['token_mask']})
    table = frozen['captions']
    return self.embed_text(params, frozen, jax.tree.map(lambda a: a[batch['caption']], table))

  def check_prompts(self, prompts) -> list[str]:
    prompts = list(prompts)
    if not prompts:
      raise UserError('No prompts given.')
    for p in prompts:
      if not p.strip():
        raise UserError('An empty --prompt: give each --prompt some text, e.g. '
                        f'--prompt "{self.captions.prompts[0]}".')
    return prompts

  def fixed_prompts(self):
    return list(self.captions.prompts)

"""The text encoders behind `config.text.encoder`, one interface: prompts -> encoder inputs -> TextEmbedding.

* `minilm`: frozen pretrained all-MiniLM-L6-v2 (384-d token states + its pooled sentence embedding). Frozen:
  its weights live in `TrainState.frozen` (no gradients, no optimizer state, not checkpointed).
* `transformer`: a small pre-LayerNorm Transformer over the same tokenizer, trained with the UNet.
* `class`: one learned embedding per class label (one context token): the ablation baseline. Prompts must name a
  class (one of the dataset's captions or class prompts).

Shapes: b batch, n tokens, d features.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.data.captions import CaptionTable
from gen_jax.errors import UserError

ENCODERS = ('minilm', 'transformer', 'class')


@flax.struct.dataclass
class TextEmbedding:
  """states [b n d] per token, mask [b n] (True = a real token), pooled [b d] one vector per prompt."""
  states: jax.Array
  mask: jax.Array
  pooled: jax.Array


def masked_mean(states: jax.Array, mask: jax.Array) -> jax.Array:
  m = mask.astype(states.dtype)[..., None]
  return (states * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


class _Transformer(nn.Module):
  """tokens [b n], mask [b n] -> states [b n d]: token + learned position embeddings, pre-LN blocks, final LN."""
  vocab_size: int
  max_length: int
  width: int
  layers: int
  heads: int

  @nn.compact
  def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    init = nn.initializers.normal(0.02)
    x = nn.Embed(self.vocab_size, self.width, embedding_init=init, name='token_embedding')(tokens)
    x = x + self.param('position_embedding', init, (self.max_length, self.width))[None, :tokens.shape[1]]
    attention_mask = nn.make_attention_mask(mask, mask)
    for i in range(self.layers):
      h = nn.LayerNorm(name=f'block_{i}_norm1')(x)
      x = x + nn.MultiHeadDotProductAttention(self.heads, name=f'block_{i}_attn')(h, h, mask=attention_mask)
      h = nn.LayerNorm(name=f'block_{i}_norm2')(x)
      h = nn.gelu(nn.Dense(4 * self.width, name=f'block_{i}_mlp_in')(h))
      x = x + nn.Dense(self.width, name=f'block_{i}_mlp_out')(h)
    return nn.LayerNorm(name='final_norm')(x)


class TextEncoder:
  """Base: `inputs(prompts)` (host, numpy [n ...]), `init` (trainable params or None), `frozen` (fixed weights or
  None), `__call__(params, frozen, inputs) -> TextEmbedding` (on device, under jit)."""
  name: str
  trainable: bool
  width: int  # d of the token states

  def inputs(self, prompts) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def init(self, rng: jax.Array) -> Any:
    return None

  def frozen(self) -> Any:
    return None

  def __call__(self, params, frozen, inputs) -> TextEmbedding:
    raise NotImplementedError


class _TokenEncoder(TextEncoder):
  def __init__(self, max_length: int):
    from gen_jax.text.tokenizer import get_tokenizer
    self.tokenizer = get_tokenizer(max_length)
    self.max_length = max_length

  def inputs(self, prompts):
    return self.tokenizer(prompts)


class MiniLMEncoder(_TokenEncoder):
  name, trainable = 'minilm', False

  def __init__(self, max_length: int):
    super().__init__(max_length)
    from gen_jax.text import minilm
    self.model, self._params = minilm.load()
    self.width = self.model.hidden
    self._mean_pool = minilm.mean_pool

  def frozen(self):
    return self._params

  def __call__(self, params, frozen, inputs):
    del params
    tokens, mask = inputs['tokens'], inputs['token_mask']
    states = jax.lax.stop_gradient(self.model.apply({'params': frozen}, tokens, mask))
    return TextEmbedding(states, mask, self._mean_pool(states, mask))


class TransformerEncoder(_TokenEncoder):
  name, trainable = 'transformer', True

  def __init__(self, max_length: int, width: int, layers: int, heads: int):
    super().__init__(max_length)
    self.width = width
    self.model = _Transformer(self.tokenizer.vocab_size, max_length, width, layers, heads)

  def init(self, rng):
    tokens = jnp.zeros((1, self.max_length), jnp.int32)
    return self.model.init(rng, tokens, jnp.ones_like(tokens, bool))['params']

  def __call__(self, params, frozen, inputs):
    del frozen
    mask = inputs['token_mask']
    states = self.model.apply({'params': params}, inputs['tokens'], mask)
    return TextEmbedding(states, mask, masked_mean(states, mask))


class ClassEncoder(TextEncoder):
  name, trainable = 'class', True

  def __init__(self, captions: CaptionTable, width: int):
    self.captions, self.width = captions, width
    self.model = nn.Embed(len(captions.class_names), width, embedding_init=nn.initializers.normal(1.0))

  def inputs(self, prompts):
    labels = [self.captions.label_of(p) for p in prompts]
    unknown = [p for p, label in zip(prompts, labels) if label is None]
    if unknown:
      raise UserError(f'text.encoder=class only knows the dataset\'s classes; {unknown[0]!r} names none. Use a '
                      f'class prompt such as {self.captions.prompts[0]!r}, or a checkpoint trained with '
                      f'text.encoder=minilm or transformer for free text.')
    return {'label': np.asarray(labels, np.int32)}

  def init(self, rng):
    return self.model.init(rng, jnp.zeros((1,), jnp.int32))['params']

  def __call__(self, params, frozen, inputs):
    del frozen
    pooled = self.model.apply({'params': params}, inputs['label'])  # [b d]
    return TextEmbedding(pooled[:, None, :], jnp.ones(pooled.shape[:1] + (1,), bool), pooled)


def make_text_encoder(text_config, captions: CaptionTable) -> TextEncoder:
  name = text_config.encoder
  if name == 'minilm':
    return MiniLMEncoder(text_config.max_length)
  if name == 'transformer':
    return TransformerEncoder(text_config.max_length, text_config.width, text_config.layers, text_config.heads)
  if name == 'class':
    return ClassEncoder(captions, text_config.width)
  raise UserError(f'Unknown text.encoder {name!r}; use one of {ENCODERS}.')

"""all-MiniLM-L6-v2 (a 6-layer, 384-d BERT) in Flax, with its pretrained weights read from safetensors.

Shapes: b batch, n tokens, d = 384 features. Post-LayerNorm BERT blocks (12 heads of 32, exact-erf GELU,
LayerNorm eps 1e-12), absolute position embeddings, token type 0 throughout, no dropout (inference only: the
encoder is frozen). Sentence embedding = attention-mask mean of the last hidden states, L2-normalised, as
sentence-transformers computes it.
"""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.text.encoders import masked_mean
from gen_jax.text.tokenizer import minilm_files


class _Layer(nn.Module):
  heads: int
  intermediate: int
  eps: float

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    b, n, d = x.shape
    split = lambda y: y.reshape(b, n, self.heads, d // self.heads)
    q, k, v = (split(nn.Dense(d, name=name)(x)) for name in ('query', 'key', 'value'))
    logits = jnp.einsum('bihc,bjhc->bhij', q, k) / np.sqrt(d // self.heads)
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    attended = jnp.einsum('bhij,bjhc->bihc', jax.nn.softmax(logits, axis=-1), v).reshape(b, n, d)
    x = nn.LayerNorm(self.eps, name='attention_norm')(x + nn.Dense(d, name='attention_out')(attended))
    h = jax.nn.gelu(nn.Dense(self.intermediate, name='intermediate')(x), approximate=False)
    return nn.LayerNorm(self.eps, name='output_norm')(x + nn.Dense(d, name='output')(h))


class MiniLM(nn.Module):
  """tokens int [b n], mask bool [b n] -> hidden states [b n d] (float32)."""
  vocab_size: int = 30522
  hidden: int = 384
  layers: int = 6
  heads: int = 12
  intermediate: int = 1536
  max_positions: int = 512
  eps: float = 1e-12

  @nn.compact
  def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    n = tokens.shape[1]
    x = (nn.Embed(self.vocab_size, self.hidden, name='word_embeddings')(tokens)
         + nn.Embed(self.max_positions, self.hidden, name='position_embeddings')(jnp.arange(n))[None]
         + nn.Embed(2, self.hidden, name='token_type_embeddings')(jnp.zeros_like(tokens)))
    x = nn.LayerNorm(self.eps, name='embeddings_norm')(x)
    for i in range(self.layers):
      x = _Layer(self.heads, self.intermediate, self.eps, name=f'layer_{i}')(x, mask)
    return x


def mean_pool(states: jax.Array, mask: jax.Array) -> jax.Array:
  """Attention-mask mean over tokens, then L2 normalisation: [b n d], [b n] -> [b d]."""
  pooled = masked_mean(states, mask)
  return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def _dense(w, prefix):
  return {'kernel': w[f'{prefix}.weight'].T, 'bias': w[f'{prefix}.bias']}  # torch Linear is [out in]


def _norm(w, prefix):
  return {'scale': w[f'{prefix}.weight'], 'bias': w[f'{prefix}.bias']}


@functools.cache
def load() -> tuple[MiniLM, dict]:
  """The module (from config.json) and its pretrained params (numpy, from model.safetensors)."""
  from safetensors.numpy import load_file

  path = minilm_files()
  cfg = json.loads((path / 'config.json').read_text())
  model = MiniLM(cfg['vocab_size'], cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads'],
                 cfg['intermediate_size'], cfg['max_position_embeddings'], cfg['layer_norm_eps'])
  w = load_file(str(path / 'model.safetensors'))
  params = {name: {'embedding': w[f'embeddings.{name}.weight']}
            for name in ('word_embeddings', 'position_embeddings', 'token_type_embeddings')}
  params['embeddings_norm'] = _norm(w, 'embeddings.LayerNorm')
  for i in range(model.layers):
    p = f'encoder.layer.{i}'
    params[f'layer_{i}'] = {
        'query': _dense(w, f'{p}.attention.self.query'), 'key': _dense(w, f'{p}.attention.self.key'),
        'value': _dense(w, f'{p}.attention.self.value'), 'attention_out': _dense(w, f'{p}.attention.output.dense'),
        'attention_norm': _norm(w, f'{p}.attention.output.LayerNorm'),
        'intermediate': _dense(w, f'{p}.intermediate.dense'), 'output': _dense(w, f'{p}.output.dense'),
        'output_norm': _norm(w, f'{p}.output.LayerNorm')}
  return model, params


def embed_sentences(sentences, batch_size: int = 64) -> np.ndarray:
  """MiniLM sentence embeddings [n 384] (float32 numpy, unit norm) of a list of strings.

  For retrieval, CLIP-score-like baselines and notebooks. Each sentence is tokenised to at most 256 tokens (the
  model's `max_seq_length`), batches padded to their longest sentence.
  """
  import tokenizers

  model, params = load()
  tokenizer = tokenizers.Tokenizer.from_file(str(minilm_files() / 'tokenizer.json'))
  tokenizer.enable_truncation(256)
  tokenizer.no_padding()
  encode = jax.jit(lambda p, t, m: mean_pool(model.apply({'params': p}, t, m), m))
  out = []
  sentences = list(sentences)
  for start in range(0, len(sentences), batch_size):
    encodings = tokenizer.encode_batch(sentences[start:start + batch_size])
    n = max(len(e.ids) for e in encodings)
    tokens = np.zeros((len(encodings), n), np.int32)
    mask = np.zeros((len(encodings), n), bool)
    for i, e in enumerate(encodings):
      tokens[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, True
    out.append(np.asarray(encode(params, tokens, mask)))
  return np.concatenate(out) if out else np.zeros((0, model.hidden), np.float32)

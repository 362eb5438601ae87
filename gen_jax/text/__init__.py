"""Text encoders for text-to-image models: frozen MiniLM, a small trained Transformer, a class embedding."""


def embed_sentences(sentences, batch_size: int = 64):
  """MiniLM (all-MiniLM-L6-v2) pooled, L2-normalised sentence embeddings [n 384] as numpy."""
  from gen_jax.text.minilm import embed_sentences as _embed
  return _embed(sentences, batch_size)


__all__ = ['embed_sentences']

"""Softmax attention (gen_jax/models/attention.py): the hand-written backward equals jax's autodiff, with and
without a key mask, and agrees with the attention weights written out in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.models import attention, layers


def _numpy_attention(q, k, v, mask):
  logits = np.einsum('bic,bjc->bij', q, k) / np.sqrt(q.shape[-1])
  logits = np.where(mask[:, None, :], logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  return np.einsum('bij,bjc->bic', weights / weights.sum(-1, keepdims=True), v)


@pytest.mark.parametrize('masked', [False, True])
def test_both_forms_give_the_same_values_and_gradients(masked):
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  q, k, v = (jax.random.normal(key, (2, n, 8)) for key, n in zip(keys, (5, 7, 7)))
  mask = jnp.array([[True] * 4 + [False] * 3, [True] + [False] * 6]) if masked else None
  results = {}
  for custom in (True, False):
    with layers.use_forms(layers.Forms(custom_attention_vjp=custom)):
      f = lambda q, k, v: attention.attention(q, k, v, mask, heads=2)  # fresh: traced under these forms
      results[custom] = jax.jit(lambda *a: (f(*a), jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), (0, 1, 2))(*a)))(
          q, k, v)
  for got, want in zip(jax.tree.leaves(results[True]), jax.tree.leaves(results[False])):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  want = _numpy_attention(*(np.asarray(a[..., :4], np.float64) for a in (q, k, v)),
                          np.ones((2, 7), bool) if mask is None else np.asarray(mask))
  np.testing.assert_allclose(results[True][0][..., :4], want, rtol=1e-5, atol=1e-6)
  if masked:  # masked keys get no gradient
    assert float(jnp.abs(results[True][1][1][~mask]).max()) == 0.0


def test_multi_head_attention_is_single_heads_on_channel_groups():
  rng = np.random.default_rng(0)
  q, k, v = (rng.standard_normal((2, n, 8), dtype=np.float32) for n in (5, 3, 3))
  mask = np.array([[True, True, False], [True, False, False]])
  groups = [attention.attention(q[..., i:i + 4], k[..., i:i + 4], v[..., i:i + 4], mask) for i in (0, 4)]
  np.testing.assert_allclose(attention.attention(q, k, v, mask, heads=2), np.concatenate(groups, -1), atol=1e-6)
  # a masked-out token has no influence on any head
  k2, v2 = k.copy(), v.copy()
  k2[0, 2] += 5.0
  v2[1, 1:] -= 3.0
  np.testing.assert_allclose(attention.attention(q, k2, v2, mask, heads=2),
                             attention.attention(q, k, v, mask, heads=2), atol=1e-6)

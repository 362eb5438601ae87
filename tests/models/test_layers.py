"""Faster conv forms must equal XLA's plain ones, including the second derivatives a gradient penalty takes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gen_jax.models.layers import DIMS, DownConv4x4, conv_4x4_s2, conv_transpose_4x4_s2, transposed_4x4_s2


def reference_conv(x, k):
  return lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)


def reference_transpose(x, k):
  return lax.conv_transpose(x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=DIMS)


@pytest.mark.parametrize('cin,cout', [(3, 8), (20, 24)])
def test_strided_conv_values_gradients_and_penalty_gradients_match_xla(cin, cout):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, cin))
  k = jax.random.normal(jax.random.PRNGKey(1), (4, 4, cin, cout)) * 0.3
  np.testing.assert_allclose(conv_4x4_s2(x, k), reference_conv(x, k), atol=1e-4)
  loss = lambda conv, x, k: jnp.sum(jnp.sin(conv(x, k)))
  for argnum in (0, 1):
    np.testing.assert_allclose(jax.grad(loss, argnum + 1)(conv_4x4_s2, x, k),
                               jax.grad(loss, argnum + 1)(reference_conv, x, k), rtol=1e-4, atol=1e-4)

  def penalty(conv, k):  # what WGAN-GP differentiates w.r.t. the critic's params
    grad_x = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, k))))(x)
    return jnp.sum(jnp.square(grad_x))

  np.testing.assert_allclose(jax.grad(penalty, 1)(conv_4x4_s2, k), jax.grad(penalty, 1)(reference_conv, k),
                             rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('cout', [3, 24])
def test_phase_transposed_conv_equals_xla(cout):
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 5, 6))
  k = jax.random.normal(jax.random.PRNGKey(3), (4, 4, 6, cout))
  np.testing.assert_allclose(conv_transpose_4x4_s2(x, k), reference_transpose(x, k), atol=1e-4)
  np.testing.assert_allclose(transposed_4x4_s2(x, k), reference_transpose(x, k), atol=1e-4)


@pytest.mark.parametrize('size', [7, 8])  # odd sizes fall back to XLA's conv (floor(7/2) = 3 outputs)
def test_down_conv_module_matches_flax_conv_with_the_same_params(size):
  x = jax.random.normal(jax.random.PRNGKey(4), (2, size, size, 4))
  ref = nn.Conv(6, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
  params = ref.init(jax.random.PRNGKey(5), x)
  for double_backward in (False, True):
    got = DownConv4x4(6, double_backward=double_backward).apply(params, x)
    np.testing.assert_allclose(got, ref.apply(params, x), atol=1e-5)
    assert got.shape == (2, size // 2, size // 2, 6)

"""Upsample-then-conv (gen_jax/models/resample.py): the sub-pixel form equals conv(upsample(x)) in values and
gradients (first and second order), and the layer keeps the params of the Conv it replaces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.models import layers, resample


def _conv_of_upsampled(x, kernel):  # the definition: nearest x2, then a SAME stride-1 conv
  k = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(resample.upsample_nearest(x), kernel, (1, 1), ((k, k), (k, k)),
                                      dimension_numbers=layers.DIMS)


@pytest.mark.parametrize('subpixel', [False, True])
@pytest.mark.parametrize('size', [1, 3, 5])
def test_upsample_conv_values_gradients_and_penalty_gradients_match_the_definition(subpixel, size):
  keys = jax.random.split(jax.random.PRNGKey(size), 2)
  x = jax.random.normal(keys[0], (2, 5, 6, 8))
  kernel = jax.random.normal(keys[1], (size, size, 8, 4)) * 0.2
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
  penalty = lambda f: lambda x, k: jnp.sum(jnp.square(jax.grad(loss(f))(x, k)))  # WGAN-GP style
  with layers.use_forms(layers.Forms(subpixel_upsample_convs=subpixel)):
    got = jax.jit(lambda x, k: (resample.upsample_conv(x, k), jax.grad(loss(resample.upsample_conv), (0, 1))(x, k),
                                jax.grad(penalty(resample.upsample_conv), 1)(x, k)))(x, kernel)
  want = (_conv_of_upsampled(x, kernel), jax.grad(loss(_conv_of_upsampled), (0, 1))(x, kernel),
          jax.grad(penalty(_conv_of_upsampled), 1)(x, kernel))
  assert got[0].shape == (2, 10, 12, 4)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-5 * float(jnp.max(jnp.abs(w))))  # float32 sums of taps


def test_upsample_conv_has_the_params_of_the_conv_it_replaces_and_rejects_what_it_cannot_do():
  x = jnp.ones((1, 4, 4, 3))
  conv = layers.Conv(5, (3, 3), padding='SAME').init(jax.random.PRNGKey(0), resample.upsample_nearest(x))
  upconv = resample.UpsampleConv(5, (3, 3), padding='SAME')
  params = upconv.init(jax.random.PRNGKey(0), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, conv)
  np.testing.assert_allclose(upconv.apply(conv, x), layers.Conv(5, (3, 3), padding='SAME').apply(
      conv, resample.upsample_nearest(x)), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='odd kernel sizes'):
    resample.upsample_conv(x, jnp.ones((2, 2, 3, 5)))
  with pytest.raises(ValueError, match='stride 1 only'):
    resample.UpsampleConv(5, strides=(2, 2)).init(jax.random.PRNGKey(0), x)

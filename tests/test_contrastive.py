"""CLIP's contrastive loss against a hand computation, and 8 devices (all-gathered negatives) == 1 device."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from gen_jax import contrastive, parallel


def test_infonce_matches_hand_computation():
  """Two pairs, unit embeddings at 90 degrees, scale 3: every row is log(1 + e^-3) (positive cosine 1, negative
  0), in both directions."""
  image = jnp.array([[2.0, 0.0], [0.0, 3.0]])  # normalised inside
  text = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  loss = contrastive.infonce(image, text, jnp.log(3.0))
  np.testing.assert_allclose(loss, math.log(1 + math.exp(-3.0)), rtol=1e-5)
  # A 60-degree negative: cosines 1 and 0.5; row loss = -log(e^s / (e^s + e^{s/2})) at s = 2.
  text = jnp.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
  image = text
  s = 2.0
  row = -math.log(math.exp(s) / (math.exp(s) + math.exp(s / 2)))
  np.testing.assert_allclose(contrastive.infonce(image, text, jnp.log(s)), row, rtol=1e-5)
  # Swapped partners are maximally wrong: loss above log(2) (chance for 2 pairs).
  assert contrastive.infonce(image, text[::-1], jnp.log(s)) > math.log(2)


def test_logit_scale_is_clipped_at_100():
  np.testing.assert_allclose(contrastive.logit_scale(jnp.log(1e4)), 100.0, rtol=1e-6)
  assert jax.grad(lambda s: contrastive.logit_scale(s))(jnp.log(1e4)) == 0.0
  np.testing.assert_allclose(contrastive.logit_scale(contrastive.INIT_LOG_SCALE), 1 / 0.07, rtol=1e-6)


def test_eight_devices_equal_one_device():
  """Loss and gradients (encoders and temperature) of the global batch, whatever the device count."""
  k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
  x, y = jax.random.normal(k1, (16, 5)), jax.random.normal(k2, (16, 3))  # 16 image / text "features"
  params = {'w_image': jax.random.normal(k3, (5, 4)), 'w_text': jax.random.normal(k4, (3, 4)),
            'log_scale': jnp.asarray(contrastive.INIT_LOG_SCALE)}

  def full(p):
    return contrastive.infonce(x @ p['w_image'], y @ p['w_text'], p['log_scale'])

  expected_loss, expected_grads = jax.value_and_grad(full)(params)

  def per_device(p, x, y):
    return parallel.value_and_global_mean_grad(
        lambda p: contrastive.global_infonce(x @ p['w_image'], y @ p['w_text'], p['log_scale']))(p)

  for n in (1, 2, 8):
    mesh = parallel.make_mesh(jax.devices()[:n])
    loss, grads = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(parallel.DATA), P(parallel.DATA)),
                                        out_specs=(P(), P())))(params, x, y)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, err_msg=f'{n} devices')
    for name in params:
      np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-4, atol=1e-6, err_msg=f'{n}: {name}')
  assert float(jnp.abs(expected_grads['log_scale'])) > 0  # the temperature is learned


def test_retrieval_accuracy():
  e = jnp.eye(3)
  assert [float(a) for a in contrastive.retrieval_accuracy(e, e)] == [1.0, 1.0]
  acc = contrastive.retrieval_accuracy(e, e[jnp.array([1, 0, 2])])  # two partners swapped
  np.testing.assert_allclose([float(a) for a in acc], [1 / 3, 1 / 3], rtol=1e-6)

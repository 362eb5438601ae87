"""The mixed-precision policy on the GAN and VAE nets: bfloat16 computation, float32 params, statistics and outputs,
and gradients equal to float32's within bfloat16 rounding (stated tolerance, per parameter tensor: RMS error at most
10% of its RMS plus 1% of the largest tensor's; bf16 keeps 8 significant bits)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import precision
from gen_jax.errors import UserError
from gen_jax.models import dcgan, mlp_gan, resnet_gan, vae

NETS = {  # name -> (module factory taking dtype, input shape, is it a generator (input z), has BatchNorm)
    'mlp_generator': (lambda d: mlp_gan.MLPGenerator((8, 8, 1), 16, (32, 64), dtype=d), (4, 16), True),
    'mlp_discriminator': (lambda d: mlp_gan.MLPDiscriminator((64, 32), 0.0, dtype=d), (4, 8, 8, 1), False),
    'dcgan_generator': (lambda d: dcgan.DCGANGenerator((28, 28, 1), 16, 8, dtype=d), (4, 16), True),
    'dcgan_discriminator': (lambda d: dcgan.DCGANDiscriminator(8, 'batch', dtype=d), (4, 28, 28, 1), True),
    'dcgan_critic_layernorm': (lambda d: dcgan.DCGANDiscriminator(8, 'layer', double_backward=True, dtype=d),
                               (4, 28, 28, 1), False),
    'resnet_generator': (lambda d: resnet_gan.ResNetGenerator((32, 32, 3), 16, 8, dtype=d), (4, 16), True),
    'resnet_critic': (lambda d: resnet_gan.ResNetCritic(8, dtype=d), (4, 32, 32, 3), False),
}


def relative_error(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def assert_gradients_close(g16, g32, name):
  """Per tensor: RMS error <= 10% of its RMS + 1% of the largest tensor RMS (tensors whose exact gradient is ~0, e.g.
  biases before a BatchNorm, carry only rounding noise on the scale of the others)."""
  rms = lambda t: float(np.sqrt(np.mean(np.square(np.asarray(t, np.float64)))))
  scale = max(rms(b) for b in jax.tree.leaves(g32))
  for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32), strict=True):
    assert a.dtype == jnp.float32
    assert rms(np.asarray(a) - np.asarray(b)) <= 0.1 * rms(b) + 0.01 * scale, name


@pytest.mark.parametrize('name', sorted(NETS))
def test_gan_nets_bfloat16_policy(name):
  make, shape, has_batch_norm = NETS[name]
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  f32, bf16 = make(jnp.float32), make(jnp.bfloat16)
  variables = jax.jit(lambda k: f32.init(k, x, train=False))(jax.random.key(0))
  assert jax.tree.structure(jax.eval_shape(lambda: bf16.init(jax.random.key(0), x, train=False))) == \
      jax.tree.structure(variables)

  @functools.partial(jax.jit, static_argnums=0)
  def grads(net, params):
    def loss(p):
      out, updates = net.apply({**variables, 'params': p}, x, train=True, mutable=['batch_stats'])
      return jnp.mean(jnp.sin(out)), (out, updates)
    return jax.value_and_grad(loss, has_aux=True)(params)

  (loss32, (out32, stats32)), g32 = grads(f32, variables['params'])
  (loss16, (out16, stats16)), g16 = grads(bf16, variables['params'])
  assert out16.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
  assert relative_error(out16, out32) < 0.05
  assert_gradients_close(g16, g32, name)
  assert not np.array_equal(np.asarray(out16), np.asarray(out32))  # it really computed in bf16
  if has_batch_norm:  # running statistics stay float32 and match
    for a, b in zip(jax.tree.leaves(stats16), jax.tree.leaves(stats32), strict=True):
      assert a.dtype == jnp.float32 and relative_error(a, b) < 0.02
  jaxpr = str(jax.make_jaxpr(lambda p: bf16.apply({**variables, 'params': p}, x, train=False))(variables['params']))
  assert 'bf16' in jaxpr


def test_vae_bfloat16_policy():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)), jnp.float32)
  nets = {d: vae.VAE((16, 16, 1), (8, 16), 4, 'logistic', dtype=d) for d in (jnp.float32, jnp.bfloat16)}
  params = jax.jit(lambda k: nets[jnp.float32].init(k, x, k))(jax.random.key(0))['params']

  @functools.partial(jax.jit, static_argnums=0)
  def grads(net, params):
    def loss(p):
      out, mean, log_var = net.apply({'params': p}, x, jax.random.key(1))
      return -jnp.mean(vae.log_likelihood('logistic', out, x)) + jnp.mean(mean ** 2 + jnp.exp(log_var)), out
    return jax.value_and_grad(loss, has_aux=True)(params)

  (loss32, out32), g32 = grads(nets[jnp.float32], params)
  (loss16, out16), g16 = grads(nets[jnp.bfloat16], params)
  assert out16.dtype == jnp.float32 and loss16.dtype == jnp.float32
  assert relative_error(loss16, loss32) < 0.01
  assert_gradients_close(g16, g32, 'vae')


def test_unknown_dtype_is_a_user_error():
  from ml_collections import ConfigDict
  assert precision.compute_dtype(ConfigDict({})) == jnp.float32
  with pytest.raises(UserError, match='bfloat16'):
    precision.compute_dtype(ConfigDict({'dtype': 'float16'}))

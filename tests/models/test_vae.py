"""VAE model (gen_jax.models.vae) and family (gen_jax.families.vae): shapes, likelihoods, a real overfit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vae_digits
from gen_jax import distributions, parallel
from gen_jax.data import sources
from gen_jax.families import TrainState, get_family
from gen_jax.models import vae

CHANNELS = (8, 16)  # small, so every shape test compiles quickly


def abstract_model(image_shape, likelihood, channels=CHANNELS, latent_dim=4):
  """Model and parameter shapes only (jax.eval_shape: no compilation, no FLOPs)."""
  model = vae.VAE(image_shape=image_shape, channels=channels, latent_dim=latent_dim, likelihood=likelihood)
  key = jax.random.PRNGKey(0)
  params = jax.eval_shape(model.init, key, jnp.zeros((1, *image_shape)), key)['params']
  return model, params


# --- model --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('image_shape', [(16, 16, 1), (28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize('likelihood,params_per_channel', [('bernoulli', 1), ('logistic', 2), ('gaussian', 2)])
def test_output_shapes(image_shape, likelihood, params_per_channel):
  h, w, c = image_shape
  model, params = abstract_model(image_shape, likelihood)
  key = jax.random.PRNGKey(3)
  x = jax.ShapeDtypeStruct((3, h, w, c), jnp.float32)
  out, mean, log_var = jax.eval_shape(lambda p, x: model.apply({'params': p}, x, key), params, x)
  assert out.shape == (3, h, w, params_per_channel * c) and out.dtype == jnp.float32
  assert mean.shape == log_var.shape == (3, 4)
  decoded = jax.eval_shape(lambda p: model.apply({'params': p}, jnp.zeros((5, 4)), method=vae.VAE.decode), params)
  assert decoded.shape == (5, *out.shape[1:])
  assert jax.eval_shape(lambda o, x: vae.log_likelihood(likelihood, o, x), out, x).shape == (3,)
  assert jax.eval_shape(lambda o: vae.mean_image(likelihood, o), out).shape == (3, h, w, c)


def test_image_size_not_divisible_is_a_value_error():
  with pytest.raises(ValueError, match='divisible by 2\\*\\*len\\(channels\\)=4'):
    abstract_model((18, 18, 1), 'bernoulli')
  with pytest.raises(ValueError, match='divisible'):
    abstract_model((16, 12, 1), 'bernoulli', channels=(8, 16, 32))  # 12 is not a multiple of 8
  abstract_model((12, 12, 1), 'bernoulli')  # 12 is a multiple of 4: fine


def test_posterior_noise_comes_from_the_key():
  model, shapes = abstract_model((16, 16, 1), 'bernoulli')
  # Random parameters from numpy (Flax's initialisers compile slowly on XLA:CPU; the family test covers init).
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.1, s.shape), jnp.float32), shapes)
  x = jnp.asarray(rng.uniform(-1.0, 1.0, (2, 16, 16, 1)), jnp.float32)
  apply = jax.jit(lambda key: model.apply({'params': params}, x, key))
  out_a, mean_a, _ = apply(jax.random.PRNGKey(5))
  out_b, mean_b, _ = apply(jax.random.PRNGKey(6))
  np.testing.assert_array_equal(mean_a, mean_b)  # the encoder is deterministic
  assert not np.allclose(out_a, out_b)  # the sampled z differs
  ll = vae.log_likelihood('bernoulli', out_a, x)
  assert ll.shape == (2,) and np.all(np.isfinite(ll)) and np.all(np.asarray(ll) < 0)


def test_bernoulli_log_likelihood_matches_float64_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(0.0, 4.0, size=(3, 4, 4, 2)).astype(np.float32)
  logits[0, 0, 0, 0], logits[1, 0, 0, 0] = 90.0, -90.0
  x = rng.uniform(-1.0, 1.0, size=(3, 4, 4, 2)).astype(np.float32)
  x[0, 0, 0, 0], x[1, 0, 0, 0] = -1.0, 1.0  # confidently wrong pixels: ~90 nats each
  l64, t = logits.astype(np.float64), (x > 0).astype(np.float64)
  per_pixel = t * -np.logaddexp(0.0, -l64) + (1.0 - t) * -np.logaddexp(0.0, l64)
  expected = per_pixel.reshape(3, -1).sum(1)
  got = vae.log_likelihood('bernoulli', jnp.asarray(logits), jnp.asarray(x))
  assert got.shape == (3,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert expected[0] < -90 and expected[1] < -90


@pytest.mark.parametrize('likelihood,log_prob', [('gaussian', distributions.discretized_gaussian_log_prob),
                                                  ('logistic', distributions.discretized_logistic_log_prob)])
def test_continuous_log_likelihood_splits_mean_then_log_scale_and_floors_scale(likelihood, log_prob):
  rng = np.random.default_rng(1)
  x = (rng.integers(0, 256, size=(2, 4, 4, 3)) / 127.5 - 1.0).astype(np.float32)
  mean = rng.uniform(-1.0, 1.0, size=x.shape).astype(np.float32)
  log_scale = rng.uniform(-3.0, 0.0, size=x.shape).astype(np.float32)
  log_scale[0, 0, 0, 0] = -30.0  # below the floor: evaluated at MIN_LOG_SCALE, so still finite
  out = jnp.concatenate([mean, log_scale], axis=-1)  # decoder output: [means | log-scales] on channels
  got = vae.log_likelihood(likelihood, out, jnp.asarray(x))
  floored = np.maximum(log_scale, vae.MIN_LOG_SCALE)
  expected = np.asarray(log_prob(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(floored)), np.float64)
  assert got.shape == (2,) and np.all(np.isfinite(got))
  np.testing.assert_allclose(got, expected.reshape(2, -1).sum(1), rtol=1e-5)


@pytest.mark.parametrize('likelihood', ['bernoulli', 'logistic', 'gaussian'])
def test_mean_image_in_range(likelihood):
  c = vae.LIKELIHOOD_PARAMS[likelihood]
  out = jnp.asarray(np.random.default_rng(2).normal(0.0, 30.0, size=(2, 4, 4, c)), jnp.float32)
  image = np.asarray(vae.mean_image(likelihood, out))
  assert image.shape == (2, 4, 4, 1)
  assert image.min() >= -1.0 and image.max() <= 1.0
  assert image.min() < -0.99 and image.max() > 0.99  # large outputs saturate rather than being rescaled
  if likelihood == 'bernoulli':  # E[2 * Bernoulli(sigmoid(l)) - 1] = 2 sigmoid(l) - 1, and 0 at l = 0
    np.testing.assert_allclose(vae.mean_image('bernoulli', jnp.array([0.0, math.log(3.0)])), [0.0, 0.5],
                               atol=1e-6)
  else:  # the mean channels (first half), clipped
    small = jnp.array([[0.25, 5.0], [-0.5, -5.0]])  # [mean, log_scale] per row
    np.testing.assert_allclose(vae.mean_image(likelihood, small), [[0.25], [-0.5]])


# --- family -----------------------------------------------------------------------------------------------------
def digits_config():
  config = vae_digits.get_config()
  config.data.image_size = 16
  config.optim.schedule = 'constant'
  config.optim.warmup_steps = 0
  config.optim.learning_rate = 2e-3
  config.total_steps = 150
  return config


def test_family_overfits_one_batch_of_digits():
  config = digits_config()
  family = get_family(config)
  state = family.init(jax.random.PRNGKey(0), (16, 16, 1))
  assert isinstance(state, TrainState) and int(state.step) == 0 and state.ema_params is None
  assert set(state.params) == {'encoder', 'decoder'}

  source = sources.make_source(config.data)
  assert source.image_shape == (16, 16, 1)
  records = [source[i] for i in range(16)]
  images = np.stack([r['image'] for r in records]).astype(np.float32) / 127.5 - 1.0
  labels = np.array([r['label'] for r in records], np.int32)
  assert len(set(labels.tolist())) >= 5  # real, varied digits
  mesh = parallel.make_mesh(jax.devices()[:1])
  batch = parallel.to_global_batch({'image': images[None], 'label': labels[None]}, mesh)
  assert batch['image'].shape == (1, 16, 16, 16, 1) and batch['label'].dtype == jnp.int32
  step = parallel.make_sharded_train_step(family.train_step, mesh)

  history = []
  for _ in range(150):
    state, metrics = step(state, batch)
    history.append({k: float(v[0]) for k, v in metrics.items()})
  assert int(state.step) == 150

  first, last = history[0], history[-1]
  assert {'loss', 'nelbo', 'recon', 'kl', 'bits_per_dim', 'grad_norm'} <= set(first)
  for m in (first, last):
    assert all(math.isfinite(v) for v in m.values())
    assert m['nelbo'] == pytest.approx(m['recon'] + m['kl'], rel=1e-5)
    assert m['loss'] == pytest.approx(m['nelbo'], rel=1e-5)  # kl_weight = 1
    assert m['bits_per_dim'] == pytest.approx(m['nelbo'] / (256 * math.log(2.0)), rel=1e-5)
    assert m['kl'] >= 0.0 and m['recon'] > 0.0
  # At init the decoder's logits are ~0 (p = 1/2 per pixel): 256 ln 2 = 177 nats, i.e. ~1 bit/dim.
  assert first['bits_per_dim'] == pytest.approx(1.0, abs=0.05), first
  # Overfitting one batch: measured 177 -> 18..24 nats (7.3x-10x over init seeds 0-2) after 150 steps; the
  # last 10 steps are averaged because each step draws fresh posterior noise. Asserted with margin: > 4x.
  final_loss = np.mean([m['loss'] for m in history[-10:]])
  assert final_loss < first['loss'] / 4.0, (first['loss'], final_loss)

  samples = jax.jit(family.sample, static_argnums=2)(state, jax.random.PRNGKey(7), 6)
  samples = np.asarray(samples)
  assert samples.shape == (6, 16, 16, 1) and samples.dtype == np.float32
  assert samples.min() >= -1.0 and samples.max() <= 1.0 and samples.std() > 0.05

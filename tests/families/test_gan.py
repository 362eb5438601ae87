"""GAN family: the same loop trains DCGAN / WGAN-GP / MLP GAN; 8 devices == 1 device (BatchNorm across devices)."""

import jax
import numpy as np
import pytest

from configs import dcgan_digits, gan_mlp_digits, lsgan_digits, wgan_gp_digits
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.train import train
from tests.helpers import apply_overrides, host_tree


def tiny(module, **overrides):
  config = module.get_config()
  config.data.num_threads = 1
  config.model.ngf = config.model.ndf = 8
  config.global_batch_size = 16
  config.total_steps = 2
  config.log_every = config.checkpoint_every = config.sample_every = 2
  config.num_samples = 4
  return apply_overrides(config, overrides)


@pytest.mark.parametrize('module,overrides', [
    (dcgan_digits, {}),  # BatchNorm in G and D: statistics over the global batch
    (wgan_gp_digits, {'gan.n_critic': 2}),  # two critic updates on two real batches, gradient penalty
], ids=['dcgan', 'wgan_gp'])
def test_eight_devices_equal_one_device(tmp_path, module, overrides):
  config = tiny(module, **overrides)
  one = train(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  eight = train(config, str(tmp_path / 'eight'))
  leaves_one, leaves_eight = jax.tree.leaves(host_tree(one.state)), jax.tree.leaves(host_tree(eight.state))
  assert len(leaves_one) == len(leaves_eight)
  for a, b in zip(leaves_one, leaves_eight):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)
  for step in one.history:
    for name in ('g_loss', 'd_loss', 'g_grad_norm'):
      np.testing.assert_allclose(one.history[step][name], eight.history[step][name], rtol=1e-4, atol=1e-6)
  if module is wgan_gp_digits:
    assert {'wasserstein', 'gp'} <= set(one.history[2])


def test_k_steps_per_call_on_one_device_equal_one_step_per_call(tmp_path):
  """BatchNorm's running statistics (averaged over devices) in a K-step scan on one device: its state enters the
  step device-varying, and the scan failed to trace ("input carry ... has type float32[8]{V:data} but the output
  carry ... float32[8]")."""
  config = tiny(dcgan_digits, sample_every=0)
  one_device = jax.devices()[:1]
  k1 = train(config, str(tmp_path / 'k1'), devices=one_device)
  k2 = train(apply_overrides(config, {'steps_per_call': 2}), str(tmp_path / 'k2'), devices=one_device)
  for a, b in zip(jax.tree.leaves(host_tree(k1.state)), jax.tree.leaves(host_tree(k2.state)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)
  assert k1.history[2]['g_loss'] == pytest.approx(k2.history[2]['g_loss'], rel=1e-5)


def test_lsgan_trains_on_the_least_squares_objective(tmp_path):
  """At initialisation D's raw scores are ~0, so LSGAN's losses start at 1/2 (D: 1/2 (0-1)^2 + 1/2 0^2, G: 1/2
  (0-1)^2) where the non-saturating ones would start at 2 log 2 and log 2."""
  first = train(tiny(lsgan_digits), str(tmp_path)).history[1]
  assert abs(first['d_loss'] - 0.5) < 0.15 and abs(first['g_loss'] - 0.5) < 0.15
  assert 'wasserstein' not in first


def test_mlp_gan_learns_varied_digit_like_samples(tmp_path):
  config = gan_mlp_digits.get_config()
  config.data.num_threads = 1
  apply_overrides(config, {'total_steps': 400, 'log_every': 50, 'checkpoint_every': 400, 'sample_every': 400,
                           'num_samples': 64})
  result = train(config, str(tmp_path), devices=jax.devices()[:1])  # 5x faster than 8 simulated devices
  family = get_family(config)
  family.init(jax.random.PRNGKey(0), (28, 28, 1))
  samples = np.asarray(jax.jit(family.sample, static_argnums=2)(result.state, jax.random.PRNGKey(1), 64))
  assert samples.shape == (64, 28, 28, 1)
  # Not collapsed: per-pixel spread across the batch well above zero, and no two samples alike.
  assert samples.std(axis=0).mean() > 0.1
  assert len({np.round(s, 2).tobytes() for s in samples}) == 64
  # Digit-like: mostly dark background (digits are white strokes on black) with some bright strokes.
  assert (samples < -0.5).mean() > 0.4 and (samples > 0.5).mean() > 0.03
  # The generator got better at fooling D: its loss late in training is below its peak after D first learns.
  g = [result.history[s]['g_loss'] for s in sorted(result.history)]
  assert np.mean(g[-50:]) < max(np.convolve(g, np.ones(20) / 20, 'valid'))


def test_gradient_penalty_with_batchnorm_critic_is_a_user_error():
  config = wgan_gp_digits.get_config()
  config.model.d_norm = 'batch'
  with pytest.raises(UserError, match='without BatchNorm'):
    get_family(config)

"""DDPM family: learns (overfits one batch), EMA tracks params, samples in range, trains the same on 8 devices."""

import jax
import numpy as np
import pytest

from gen_jax import parallel
from gen_jax.data import make_source
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.train import train
from tests.helpers import host_tree, tiny_ddpm_config


def test_overfits_one_fixed_batch():
  config = tiny_ddpm_config(**{'optim.learning_rate': 2e-3, 'optim.warmup_steps': 0, 'ema.decay': 0.9})
  family = get_family(config)
  source = make_source(config.data)
  mesh = parallel.make_mesh(jax.devices()[:1])
  # Replicated on the mesh from the start, as the loop does: else the step compiles twice (uncommitted, then not).
  state = jax.jit(lambda r: family.init(r, source.image_shape), out_shardings=parallel.replicated(mesh))(
      jax.random.PRNGKey(0))
  images = np.stack([source[i]['image'] for i in range(16)]).astype(np.float32) / 127.5 - 1.0
  batch = parallel.to_global_batch({'image': images[None]}, mesh)
  step = parallel.make_sharded_train_step(family.train_step, mesh)
  losses = []
  for _ in range(200):
    # Rewinding the step counter keeps t and the noise fixed too (they are keyed by step): a truly fixed batch.
    state, metrics = step(state.replace(step=jax.numpy.zeros_like(state.step)), batch)
    losses.append(float(metrics['loss'][0]))
  # Zero-initialised output: the first loss is the mean of 16*64 eps^2 draws: 1 +- 0.044 (std error).
  assert abs(losses[0] - 1.0) < 0.15
  assert np.mean(losses[-20:]) < losses[0] / 10, (losses[0], np.mean(losses[-20:]))
  # EMA params moved towards the params but are not equal to them.
  p, e = jax.tree.leaves(state.params)[0], jax.tree.leaves(state.ema_params)[0]
  assert not np.allclose(p, e) and np.abs(np.asarray(p) - np.asarray(e)).max() < np.abs(np.asarray(p)).max()

  samples = jax.jit(family.sample, static_argnums=2)(state, jax.random.PRNGKey(1), 4)
  assert samples.shape == (4, 8, 8, 1) and float(samples.min()) >= -1 and float(samples.max()) <= 1


def test_eight_devices_equal_one_device(tmp_path):
  config = tiny_ddpm_config(total_steps=4, checkpoint_every=4, log_every=2)
  one = train(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  eight = train(config, str(tmp_path / 'eight'))
  for a, b in zip(jax.tree.leaves(host_tree(one.state)), jax.tree.leaves(host_tree(eight.state)), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5)
  for s in one.history:
    np.testing.assert_allclose(one.history[s]['grad_norm'], eight.history[s]['grad_norm'], rtol=1e-5)


@pytest.mark.parametrize('key,value', [('model.dtype', 'float16'), ('diffusion.prediction', 'score'),
                                       ('sampler.name', 'euler'), ('diffusion.schedule', 'quadratic')])
def test_bad_settings_are_user_errors(key, value):
  with pytest.raises(UserError):
    get_family(tiny_ddpm_config(**{key: value}))


def test_eval_reports_the_variational_bound_in_bits_per_dim(tmp_path):
  config = tiny_ddpm_config(total_steps=2, log_every=2, checkpoint_every=2, eval_every=2,
                            eval_batches=1, **{'diffusion.eval_bpd': True, 'diffusion.num_timesteps': 1000})
  result = train(config, str(tmp_path), devices=jax.devices()[:1])
  e = result.eval_history[2]
  # An untrained net on 8-bit data: a few bits/dim, of which the prior term is ~0 (T=1000 reaches N(0, I))
  # and the decoder term > 0.
  assert 0 < e['eval/prior_bits_per_dim'] < 0.01
  assert 0 < e['eval/decoder_bits_per_dim'] < e['eval/bits_per_dim'] < 20
  assert 0.5 < e['eval/loss'] < 1.5  # zero-initialised output: L_simple ~ E[eps^2] = 1

"""VAE family: maximises the ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)) (KL in closed form)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from gen_jax import distributions, parallel
from gen_jax.errors import UserError
from gen_jax.families import register
from gen_jax.families.base import Family, Metrics, TrainState
from gen_jax.models import vae as vae_model
from gen_jax.optim import make_optimizer
from gen_jax.precision import compute_dtype

EVAL_KEY = 0x3E7A1  # eval noise comes from its own stream, the same at every evaluation


def elbo_metrics(nelbo, recon, kl, image_batch_shape) -> Metrics:
  """Batch means of the per-example terms [b] (nats), and -ELBO in bits/dim."""
  nelbo = jnp.mean(nelbo)
  return {'nelbo': nelbo, 'recon': jnp.mean(recon), 'kl': jnp.mean(kl),
          'bits_per_dim': distributions.bits_per_dim(nelbo, math.prod(image_batch_shape[1:]))}


@register('vae')
class VAEFamily(Family):
  """Config keys: model.channels, model.latent_dim, model.likelihood, model.kl_weight."""

  def __init__(self, config):
    super().__init__(config)
    if config.model.likelihood not in vae_model.LIKELIHOOD_PARAMS:
      raise UserError(f'Unknown model.likelihood {config.model.likelihood!r}; use one of '
                      f'{sorted(vae_model.LIKELIHOOD_PARAMS)}.')
    self.optimizer = make_optimizer(config.optim, config.total_steps)
    self.model = None  # built in init(), when the image shape is known

  def _build(self, image_shape):
    m = self.config.model
    self.model = vae_model.VAE(image_shape=tuple(image_shape), channels=tuple(m.channels),
                               latent_dim=m.latent_dim, likelihood=m.likelihood, dtype=compute_dtype(m))
    return self.model

  def init(self, rng, image_shape):
    model = self._build(image_shape)
    params_key, noise_key, run_key = jax.random.split(rng, 3)
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    params = model.init(params_key, dummy, noise_key)['params']
    return TrainState(step=jnp.zeros((), jnp.int32), rng=run_key, params=params,
                      opt_state=self.optimizer.init(params))

  def losses(self, params, images, keys):
    """Per-example terms [b] in nats: -ELBO, -log p(x|z) and KL; `keys` [b] gives each example its noise."""
    model, likelihood = self.model, self.config.model.likelihood

    def one(image, key):
      out, mean, log_var = model.apply({'params': params}, image[None], key)
      recon = -vae_model.log_likelihood(likelihood, out, image[None])[0]
      kl = jnp.sum(distributions.gaussian_kl_to_standard_normal(mean[0], log_var[0]))
      return recon, kl

    recon, kl = jax.vmap(one)(images, keys)
    return recon + kl, recon, kl

  def train_step(self, state: TrainState, batch) -> tuple[TrainState, Metrics]:
    images = batch['image']
    keys = parallel.example_keys(jax.random.fold_in(state.rng, state.step), images.shape[0])
    kl_weight = self.config.model.kl_weight

    def loss_fn(params):
      nelbo, recon, kl = self.losses(params, images, keys)
      loss = jnp.mean(recon + kl_weight * kl)
      return loss, elbo_metrics(nelbo, recon, kl, images.shape)

    (loss, aux), grads = parallel.value_and_global_mean_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, **aux, 'grad_norm': optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def eval_step(self, state: TrainState, batch) -> Metrics:
    images = batch['image']
    keys = parallel.example_keys(jax.random.fold_in(state.rng, EVAL_KEY), images.shape[0])
    nelbo, recon, kl = self.losses(state.params, images, keys)
    return parallel.mean_over_devices(elbo_metrics(nelbo, recon, kl, images.shape))

  reports_bits_per_dim = True

  def bits_per_dim(self, state: TrainState, batch, keys):
    nelbo, _, _ = self.losses(state.params, batch['image'], keys)  # one-sample -ELBO per example
    return distributions.bits_per_dim(nelbo, math.prod(batch['image'].shape[1:]))

  def sample(self, state: TrainState, rng, num_samples: int, cond=None):
    del cond  # unconditional
    z = jax.random.normal(rng, (num_samples, self.config.model.latent_dim))
    out = self.model.apply({'params': state.params}, z, method=vae_model.VAE.decode)
    return vae_model.mean_image(self.config.model.likelihood, out)

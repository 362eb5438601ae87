"""GAN family: DCGAN, WGAN-GP and the MLP GAN trained by the shared loop, one compiled step per G update.

Each step runs `n_critic` discriminator/critic updates (each on its own global batch of real images) and then
one generator update. Two optax optimizers live in the state: params / opt_state / model_state are dicts
{'generator', 'discriminator'}; model_state holds BatchNorm running statistics, computed across the whole
global batch (BatchNorm's axis_name is the `data` mesh axis).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from gen_jax import gan_losses, parallel
from gen_jax.errors import UserError
from gen_jax.families import register
from gen_jax.families.base import Family, Metrics, TrainState
from gen_jax.models import dcgan, mlp_gan, resnet_gan
from gen_jax.optim import make_optimizer
from gen_jax.precision import compute_dtype

G, D = 'generator', 'discriminator'


def build_networks(model_config, image_shape, axis_name, double_backward: bool = False):
  """(generator, discriminator) Flax modules named by model.generator / model.discriminator.

  `double_backward`: the loss differentiates D's input gradient (gradient penalty); picks conv forms for that.
  """
  m = model_config
  dtype = compute_dtype(m)  # the mixed-precision policy (gen_jax.precision)
  generators = {
      'dcgan': lambda: dcgan.DCGANGenerator(image_shape, m.latent_dim, m.ngf, bn_axis_name=axis_name, dtype=dtype),
      'mlp': lambda: mlp_gan.MLPGenerator(image_shape, m.latent_dim, bn_axis_name=axis_name, dtype=dtype),
      'resnet': lambda: resnet_gan.ResNetGenerator(image_shape, m.latent_dim, m.ngf, bn_axis_name=axis_name,
                                                   dtype=dtype),
  }
  discriminators = {
      'dcgan': lambda: dcgan.DCGANDiscriminator(m.ndf, m.d_norm, bn_axis_name=axis_name,
                                                double_backward=double_backward, dtype=dtype),
      'mlp': lambda: mlp_gan.MLPDiscriminator(dropout=m.d_dropout, dtype=dtype),
      'resnet': lambda: resnet_gan.ResNetCritic(m.ndf, dtype=dtype),
  }
  if m.generator not in generators or m.discriminator not in discriminators:
    raise UserError(f'Unknown GAN networks {m.generator!r}/{m.discriminator!r}: model.generator and '
                    f'model.discriminator must be one of {sorted(generators)}.')
  try:
    return generators[m.generator](), discriminators[m.discriminator]()
  except ValueError as e:
    raise UserError(f'{m.generator} generator: {e}') from None


@register('gan')
class GANFamily(Family):
  """Config: model.{generator, discriminator, latent_dim, ngf, ndf, d_norm, d_dropout},
  gan.{loss, gp_weight, n_critic, unroll_critic}, optim (generator) and optim_d (discriminator)."""

  def __init__(self, config):
    super().__init__(config)
    g = config.gan
    if g.loss not in gan_losses.LOSSES:
      raise UserError(f'Unknown gan.loss {g.loss!r}; use one of {tuple(gan_losses.LOSSES)}.')
    if g.n_critic < 1:
      raise UserError(f'gan.n_critic={g.n_critic} must be >= 1.')
    if g.gp_weight > 0 and config.model.discriminator == 'dcgan' and config.model.d_norm == 'batch':
      raise UserError('The gradient penalty needs a critic without BatchNorm: set --config.model.d_norm=layer '
                      'or none.')
    self.batches_per_step = g.n_critic
    self.optimizers = {G: make_optimizer(config.optim, config.total_steps),
                       D: make_optimizer(config.optim_d, config.total_steps * g.n_critic)}

  def init(self, rng, image_shape):
    self.image_shape = tuple(image_shape)
    # Networks for init / sampling use no axis name (no mesh there); the train step builds its own.
    self.generator, self.discriminator = build_networks(self.config.model, self.image_shape, None)
    g_key, d_key, run_key = jax.random.split(rng, 3)
    z = jnp.zeros((2, self.config.model.latent_dim))
    g_vars = self.generator.init(g_key, z, train=False)
    d_vars = self.discriminator.init(d_key, jnp.zeros((2, *image_shape)), train=False)
    params = {G: g_vars['params'], D: d_vars['params']}
    model_state = {G: g_vars.get('batch_stats', {}), D: d_vars.get('batch_stats', {})}
    opt_state = {name: self.optimizers[name].init(params[name]) for name in (G, D)}
    return TrainState(step=jnp.zeros((), jnp.int32), rng=run_key, params=params, opt_state=opt_state,
                      model_state=model_state)

  def _apply(self, net, params, stats, x, train, rng=None):
    """(output, new batch_stats); BatchNorm statistics are only updated in train mode."""
    variables = {'params': params, **({'batch_stats': stats} if stats else {})}
    rngs = {'dropout': rng} if rng is not None else None
    if train and stats:
      out, updates = net.apply(variables, x, train=True, rngs=rngs, mutable=['batch_stats'])
      return out, updates['batch_stats']
    return net.apply(variables, x, train=train, rngs=rngs), stats

  def train_step(self, state: TrainState, batch) -> tuple[TrainState, Metrics]:
    cfg = self.config
    generator, discriminator = build_networks(cfg.model, self.image_shape, parallel.DATA, cfg.gan.gp_weight > 0)
    reals = batch['image']  # [n_critic b h w c] when n_critic > 1, else [b h w c]
    if cfg.gan.n_critic == 1:
      reals = reals[None]
    b = reals.shape[1]
    step_key = jax.random.fold_in(state.rng, state.step)
    device = jax.lax.axis_index(parallel.DATA)
    d_loss_of, g_loss_of = gan_losses.LOSSES[cfg.gan.loss]

    def z_for(key):  # per-example latents: the same whatever the device count
      return jax.vmap(lambda k: jax.random.normal(k, (cfg.model.latent_dim,)))(parallel.example_keys(key, b))

    def fake_images(params, stats, key):
      return self._apply(generator, params[G], stats[G], z_for(key), train=True)

    def critic_update(carry, inputs):
      params, opt_state, stats = carry
      real, i = inputs
      key = jax.random.fold_in(step_key, i)
      fake, g_stats = fake_images(params, stats, jax.random.fold_in(key, 0))
      fake = jax.lax.stop_gradient(fake)
      eps = jax.vmap(lambda k: jax.random.uniform(k))(parallel.example_keys(jax.random.fold_in(key, 1), b))
      dropout = jax.random.fold_in(jax.random.fold_in(key, 2), device)

      def d_loss_fn(d_params):
        real_out, d_stats = self._apply(discriminator, d_params, stats[D], real, True, dropout)
        fake_out, d_stats = self._apply(discriminator, d_params, d_stats, fake, True, dropout)
        loss = d_loss_of(real_out, fake_out)
        gp = jnp.zeros(())
        if cfg.gan.gp_weight > 0:
          x_hat = gan_losses.interpolate(real, fake, eps)
          critic = lambda x: self._apply(discriminator, d_params, d_stats, x, True, dropout)[0]
          gp = gan_losses.gradient_penalty(critic, x_hat)
          loss = loss + cfg.gan.gp_weight * gp
        aux = {'d_loss': loss, 'gp': gp, 'd_real': jnp.mean(real_out), 'd_fake': jnp.mean(fake_out)}
        return loss, (aux, d_stats)

      (_, (aux, d_stats)), grads = parallel.value_and_global_mean_grad(d_loss_fn, has_aux=True)(params[D])
      updates, d_opt = self.optimizers[D].update(grads, opt_state[D], params[D])
      params = {**params, D: optax.apply_updates(params[D], updates)}
      aux = parallel.mean_over_devices(aux)
      return (params, {**opt_state, D: d_opt}, {G: g_stats, D: d_stats}), aux

    carry = (state.params, state.opt_state, state.model_state)
    inputs = (reals, jnp.arange(cfg.gan.n_critic))
    if self._unroll_critic():
      auxes = []
      for i in range(cfg.gan.n_critic):
        carry, aux = critic_update(carry, jax.tree.map(lambda x: x[i], inputs))
        auxes.append(aux)
      d_aux = jax.tree.map(lambda *xs: jnp.stack(xs), *auxes)
    else:
      carry, d_aux = jax.lax.scan(critic_update, carry, inputs)
    params, opt_state, stats = carry

    g_key = jax.random.fold_in(step_key, cfg.gan.n_critic)
    dropout = jax.random.fold_in(jax.random.fold_in(g_key, 2), device)

    def g_loss_fn(g_params):
      fake, g_stats = self._apply(generator, g_params, stats[G], z_for(g_key), train=True)
      fake_out, d_stats = self._apply(discriminator, params[D], stats[D], fake, True, dropout)
      loss = g_loss_of(fake_out)
      return loss, (g_stats, d_stats)

    (g_loss, (g_stats, _)), grads = parallel.value_and_global_mean_grad(g_loss_fn, has_aux=True)(params[G])
    updates, g_opt = self.optimizers[G].update(grads, opt_state[G], params[G])
    params = {**params, G: optax.apply_updates(params[G], updates)}
    last = jax.tree.map(lambda x: x[-1], d_aux)  # the critic's state after its last update
    metrics = {'loss': g_loss, 'g_loss': g_loss, 'd_loss': last['d_loss'], 'd_real': last['d_real'],
               'd_fake': last['d_fake'], 'g_grad_norm': optax.tree.norm(grads)}
    if cfg.gan.loss == 'wasserstein':
      metrics['wasserstein'] = last['d_real'] - last['d_fake']
    if cfg.gan.gp_weight > 0:
      metrics['gp'] = last['gp']
    new_state = state.replace(step=state.step + 1, params=params, opt_state={**opt_state, G: g_opt},
                              model_state={G: g_stats, D: stats[D]})
    return new_state, metrics

  def _unroll_critic(self) -> bool:
    """XLA:CPU runs conv gradients inside loops ~60x slower (benchmarks/RESULTS.md), so unroll there; scan elsewhere."""
    setting = self.config.gan.unroll_critic
    return jax.devices()[0].platform == 'cpu' if setting == 'auto' else bool(setting)

  def sample(self, state: TrainState, rng, num_samples: int, cond=None):
    del cond  # unconditional
    z = jax.random.normal(rng, (num_samples, self.config.model.latent_dim))
    images, _ = self._apply(self.generator, state.params[G], state.model_state[G], z, train=False)
    return jnp.clip(images, -1.0, 1.0)

"""DDPM family (Ho et al. 2020): UNet noise predictor, L_simple training, EMA params, DDPM/DDIM sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from gen_jax import parallel
from gen_jax.diffusion import GaussianDiffusion
from gen_jax.diffusion.samplers import ddim_sample, ddpm_sample
from gen_jax.errors import UserError
from gen_jax.families import register
from gen_jax.families.base import Family, Metrics, TrainState
from gen_jax.models.unet import UNet
from gen_jax.optim import make_optimizer
from gen_jax.precision import compute_dtype

EVAL_KEY = 0x3E7A1  # eval t/noise come from their own stream, the same at every evaluation


@register('ddpm')
class DDPMFamily(Family):
  """Config: model.{ch, ch_mult, num_res_blocks, attn_resolutions, dropout, num_groups, dtype},
  diffusion.{schedule, num_timesteps, prediction, eval_bpd}, ema.decay, sampler.{name, steps, eta, variance, clip_x0,
  use_ema}."""

  def __init__(self, config):
    super().__init__(config)
    m, d, s = config.model, config.diffusion, config.sampler
    compute_dtype(m)
    if d.prediction not in ('eps', 'x0', 'v'):
      raise UserError(f"Unknown diffusion.prediction {d.prediction!r}; use 'eps', 'x0' or 'v'.")
    if s.name not in ('ddpm', 'ddim'):
      raise UserError(f"Unknown sampler.name {s.name!r}; use 'ddpm' (ancestral) or 'ddim'.")
    try:
      self.diffusion = GaussianDiffusion.create(d.schedule, d.num_timesteps)
    except ValueError as e:
      raise UserError(f'Bad diffusion config: {e}') from None
    self.model = UNet(**self._unet_kwargs(m), remat=bool(config.remat))
    self.optimizer = make_optimizer(config.optim, config.total_steps)

  @staticmethod
  def _unet_kwargs(m) -> dict:
    return dict(ch=m.ch, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout, num_groups=m.num_groups,
                dtype=compute_dtype(m))

  def init(self, rng, image_shape):
    self.image_shape = tuple(image_shape)  # sample() needs it; the loop always calls init (or eval_shape of it)
    params_key, run_key = jax.random.split(rng)
    params = self._init_params(params_key, jnp.zeros((1, *image_shape), jnp.float32))
    return TrainState(step=jnp.zeros((), jnp.int32), rng=run_key, params=params,
                      opt_state=self.optimizer.init(params), ema_params=params)

  def _init_params(self, key, x):
    return self.model.init(key, x, jnp.zeros((1,), jnp.int32), train=False)['params']

  def _network(self, params, frozen, batch, drop_key=None):
    """The noise predictor for this batch, `(x_t, t, train, rngs) -> prediction` (float32); conditional
    families override this to embed the batch's captions (`drop_key`: training's random null conditioning)."""
    del frozen, batch, drop_key

    def net(xt, t, train=False, rngs=None):
      return self.model.apply({'params': params}, xt, t, train=train, rngs=rngs).astype(jnp.float32)
    return net

  def _extra_losses(self, params, frozen, batch, key) -> dict[str, jax.Array]:
    """Losses of other networks trained in the same step (unCLIP's prior), each a mean over the local batch;
    added to the diffusion loss and logged by name."""
    del params, frozen, batch, key
    return {}

  def _timesteps_and_noise(self, key, x0):
    """t [b] ~ U{0..T-1} and noise [b h w c] per example, keyed by global position (device-count invariant)."""
    keys = parallel.example_keys(key, x0.shape[0])
    t = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0, self.diffusion.num_timesteps))(keys)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x0.shape[1:]))(keys)
    return t, noise

  def train_step(self, state: TrainState, batch) -> tuple[TrainState, Metrics]:
    x0 = batch['image']  # [b h w c]
    key = jax.random.fold_in(state.rng, state.step)
    t, noise = self._timesteps_and_noise(key, x0)
    # Dropout masks are per device (as in every data-parallel framework): fold in the device index.
    dropout_key = jax.random.fold_in(jax.random.fold_in(key, 2), jax.lax.axis_index(parallel.DATA))
    drop_key = jax.random.fold_in(key, 3)  # conditional families: which examples train unconditionally
    xt = self.diffusion.q_sample(x0, t, noise)
    kind = self.config.diffusion.prediction

    def loss_fn(params):
      out = self._network(params, state.frozen, batch, drop_key)(xt, t, True, {'dropout': dropout_key})
      loss = jnp.mean(self.diffusion.training_loss(kind, out, x0, noise, t))
      extra = self._extra_losses(params, state.frozen, batch, jax.random.fold_in(key, 4))
      # with other losses, the diffusion loss is logged apart too (eval/loss is it alone)
      return loss + sum(extra.values()), ({**extra, 'diffusion_loss': loss} if extra else {})

    (loss, extra), grads = parallel.value_and_global_mean_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = optax.incremental_update(params, state.ema_params, step_size=1.0 - self.config.ema.decay)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads), **extra}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema), metrics

  def eval_step(self, state: TrainState, batch) -> Metrics:
    """L_simple on held-out images (same t and noise at every eval); with diffusion.eval_bpd also the full
    variational bound in bits/dim (T network evaluations per batch: costly, so off by default)."""
    x0 = batch['image']
    params = state.ema_params if self.config.sampler.use_ema else state.params
    key = jax.random.fold_in(state.rng, EVAL_KEY)
    t, noise = self._timesteps_and_noise(key, x0)
    kind = self.config.diffusion.prediction

    model_fn = self._network(params, state.frozen, batch)
    xt = self.diffusion.q_sample(x0, t, noise)
    metrics = {'loss': jnp.mean(self.diffusion.training_loss(kind, model_fn(xt, t), x0, noise, t))}
    if self.config.diffusion.eval_bpd:
      device_key = jax.random.fold_in(key, jax.lax.axis_index(parallel.DATA))
      bound = self.diffusion.bits_per_dim_bound(model_fn, x0, device_key, kind, self.config.sampler.variance,
                                                self.config.sampler.clip_x0)
      metrics.update(bits_per_dim=jnp.mean(bound.total), prior_bits_per_dim=jnp.mean(bound.prior),
                     decoder_bits_per_dim=jnp.mean(bound.terms[:, 0]))
    return parallel.mean_over_devices(metrics)

  reports_bits_per_dim = True

  def bits_per_dim(self, state: TrainState, batch, keys):
    """The full variational bound (T network evaluations) per example, each with its own noise stream."""
    params = state.ema_params if self.config.sampler.use_ema else state.params
    model_fn = self._network(params, state.frozen, {})
    kind, s = self.config.diffusion.prediction, self.config.sampler

    def one(x0, key):
      return self.diffusion.bits_per_dim_bound(model_fn, x0[None], key, kind, s.variance, s.clip_x0).total[0]
    return jax.vmap(one)(batch['image'], keys)

  def sample(self, state: TrainState, rng, num_samples: int, cond=None):
    del cond  # unconditional
    params = state.ema_params if self.config.sampler.use_ema else state.params
    return self._run_sampler(self._network(params, state.frozen, {}), num_samples, rng)

  def _run_sampler(self, model_fn, num_samples: int, rng):
    """The configured sampler (DDPM or DDIM, one lax.scan) with `model_fn(x, t)`: images [n h w c] in [-1, 1]."""
    s, kind = self.config.sampler, self.config.diffusion.prediction
    shape = (num_samples, *self.image_shape)
    threshold = s.get('dynamic_threshold', 0.0)
    if s.name == 'ddpm':
      x = ddpm_sample(model_fn, self.diffusion, kind, shape, rng, s.variance, s.clip_x0, threshold)
    else:
      x = ddim_sample(model_fn, self.diffusion, kind, shape, rng, s.steps, s.eta, s.clip_x0, threshold)
    return jnp.clip(x, -1.0, 1.0)

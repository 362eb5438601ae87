"""Gaussian diffusion (Ho et al. 2020): forward process q, posterior q(x_{t-1}|x_t,x_0), model means, bound.

Shapes use einops names: b batch, h w c image, T timesteps. Timesteps are 0-based: index t here is the paper's
t+1, so t = 0 is the last denoising step (the one scored by the discretised decoder) and t = T-1 the first.
Images x0 live in [-1, 1] (8-bit data on the grid k/127.5 - 1, see gen_jax/distributions.py).

The network may predict one of three parameterisations of the same quantity, named by `kind`:
  'eps': the noise eps in x_t = sqrt(acp_t) x0 + sqrt(1 - acp_t) eps (L_simple of Ho et al. 2020),
  'x0':  the clean image,
  'v':   v = sqrt(acp_t) eps - sqrt(1 - acp_t) x0 (Salimans & Ho 2022), well-scaled at every t.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import einops
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import distributions
from gen_jax.diffusion.schedules import beta_schedule

KINDS = ('eps', 'x0', 'v')
VARIANCES = ('fixed_small', 'fixed_large')


def _check(name: str, value: str, allowed: tuple[str, ...]):
  if value not in allowed:
    raise ValueError(f'unknown {name} {value!r}; expected one of {allowed}')


def dynamic_threshold(x0: jax.Array, percentile: float) -> jax.Array:
  """Imagen's dynamic thresholding (Saharia et al. 2022): s = max(1, the `percentile` quantile of |x0| per
  example); x0 is clipped to [-s, s] and divided by s, so saturated pixels are pushed inwards instead of clipped."""
  s = jnp.quantile(jnp.abs(x0).reshape(x0.shape[0], -1), percentile, axis=1)
  s = jnp.maximum(s, 1.0).reshape(-1, *([1] * (x0.ndim - 1)))
  return jnp.clip(x0, -s, s) / s


def _gather(table: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
  """table[t] for t [b], shaped [b 1 1 1] so it broadcasts against x [b h w c]."""
  return jnp.reshape(table[t], t.shape + (1,) * (x.ndim - t.ndim)).astype(x.dtype)


class BoundTerms(NamedTuple):
  """The variational bound in bits/dim, per example: total = prior + terms.sum(-1)."""
  total: jax.Array  # [b]
  prior: jax.Array  # [b] KL(q(x_T|x0) || N(0, I))
  terms: jax.Array  # [b T]: column 0 the decoder NLL, column t > 0 KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t))


@flax.struct.dataclass
class GaussianDiffusion:
  """Schedule-derived tables [T] (float32, computed in float64) and the diffusion math on them.

  A pytree: pass it into jitted functions as an argument (or close over it). Build with `create` or
  `from_betas`. Every method takes t as an int array [b] and images as [b h w c].
  """
  betas: jax.Array
  alphas_cumprod: jax.Array
  alphas_cumprod_prev: jax.Array  # acp_{t-1}, with acp_{-1} = 1
  sqrt_alphas_cumprod: jax.Array
  sqrt_one_minus_alphas_cumprod: jax.Array
  log_one_minus_alphas_cumprod: jax.Array
  sqrt_recip_alphas_cumprod: jax.Array
  sqrt_recipm1_alphas_cumprod: jax.Array
  posterior_variance: jax.Array  # beta_t (1 - acp_{t-1}) / (1 - acp_t); exactly 0 at t = 0
  posterior_log_variance_clipped: jax.Array  # log of the above with the t = 0 entry replaced by the t = 1 one
  posterior_mean_coef1: jax.Array  # multiplies x0
  posterior_mean_coef2: jax.Array  # multiplies x_t
  fixed_large_variance: jax.Array  # betas with the t = 0 entry replaced by posterior_variance[1] (Ho et al.)
  fixed_large_log_variance: jax.Array

  @classmethod
  def create(cls, schedule: str = 'linear', num_timesteps: int = 1000) -> GaussianDiffusion:
    return cls.from_betas(beta_schedule(schedule, num_timesteps))

  @classmethod
  def from_betas(cls, betas) -> GaussianDiffusion:
    """All tables from betas [T], derived in float64 and only then cast to float32."""
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas.shape[0] < 2 or not np.all((betas > 0) & (betas <= 1)):
      raise ValueError('betas must be a 1-D array of at least 2 values in (0, 1]')
    alphas = 1.0 - betas
    acp = np.cumprod(alphas)
    acp_prev = np.append(1.0, acp[:-1])
    posterior_variance = betas * (1.0 - acp_prev) / (1.0 - acp)
    # posterior_variance[0] is 0 (x_0 is known given x_1 and x_0): its log would be -inf.
    posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
    fixed_large_variance = np.append(posterior_variance[1], betas[1:])
    tables = dict(
        betas=betas,
        alphas_cumprod=acp,
        alphas_cumprod_prev=acp_prev,
        sqrt_alphas_cumprod=np.sqrt(acp),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - acp),
        log_one_minus_alphas_cumprod=np.log1p(-acp),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / acp),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / acp - 1.0),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=posterior_log_variance_clipped,
        posterior_mean_coef1=betas * np.sqrt(acp_prev) / (1.0 - acp),
        posterior_mean_coef2=(1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp),
        fixed_large_variance=fixed_large_variance,
        fixed_large_log_variance=np.log(fixed_large_variance),
    )
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in tables.items()})

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]

  # Forward process and its posterior.

  def q_sample(self, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """x_t ~ q(x_t|x0) = N(sqrt(acp_t) x0, (1 - acp_t) I), reparameterised by noise ~ N(0, I)."""
    return (_gather(self.sqrt_alphas_cumprod, t, x0) * x0
            + _gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

  def q_posterior_mean_variance(self, x0: jax.Array, xt: jax.Array, t: jax.Array):
    """q(x_{t-1}|x_t, x0) -> (mean, var, log_var), all [b h w c]; log_var is the clipped one (finite at t=0)."""
    mean = _gather(self.posterior_mean_coef1, t, xt) * x0 + _gather(self.posterior_mean_coef2, t, xt) * xt
    var = jnp.broadcast_to(_gather(self.posterior_variance, t, xt), xt.shape)
    log_var = jnp.broadcast_to(_gather(self.posterior_log_variance_clipped, t, xt), xt.shape)
    return mean, var, log_var

  # Conversions between the eps / x0 / v parameterisations (exact inverses of q_sample for fixed noise).

  def predict_x0_from_eps(self, xt: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
    return _gather(self.sqrt_recip_alphas_cumprod, t, xt) * xt - _gather(self.sqrt_recipm1_alphas_cumprod, t, xt) * eps

  def predict_eps_from_x0(self, xt: jax.Array, t: jax.Array, x0: jax.Array) -> jax.Array:
    return ((_gather(self.sqrt_recip_alphas_cumprod, t, xt) * xt - x0)
            / _gather(self.sqrt_recipm1_alphas_cumprod, t, xt))

  def v_target(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """v = sqrt(acp_t) eps - sqrt(1 - acp_t) x0."""
    return _gather(self.sqrt_alphas_cumprod, t, x0) * noise - _gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0

  def predict_x0_from_v(self, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """x0 = sqrt(acp_t) x_t - sqrt(1 - acp_t) v (a rotation: no division, so accurate at every t)."""
    return _gather(self.sqrt_alphas_cumprod, t, xt) * xt - _gather(self.sqrt_one_minus_alphas_cumprod, t, xt) * v

  def predict_eps_from_v(self, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """eps = sqrt(1 - acp_t) x_t + sqrt(acp_t) v."""
    return _gather(self.sqrt_one_minus_alphas_cumprod, t, xt) * xt + _gather(self.sqrt_alphas_cumprod, t, xt) * v

  def target(self, kind: str, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """What a network of parameterisation `kind` should output for x_t = q_sample(x0, t, noise)."""
    _check('kind', kind, KINDS)
    if kind == 'eps':
      return noise
    if kind == 'x0':
      return x0
    return self.v_target(x0, noise, t)

  def x0_from_prediction(self, kind: str, xt: jax.Array, t: jax.Array, pred: jax.Array,
                         clip: bool = False, threshold: float = 0.0) -> jax.Array:
    """The model's estimate of x0, optionally clipped to the data range [-1, 1].

    `threshold` p in (0, 1) replaces the static clip by Imagen's dynamic thresholding at percentile p.
    """
    _check('kind', kind, KINDS)
    if kind == 'eps':
      x0 = self.predict_x0_from_eps(xt, t, pred)
    elif kind == 'x0':
      x0 = pred
    else:
      x0 = self.predict_x0_from_v(xt, t, pred)
    if threshold:
      return dynamic_threshold(x0, threshold)
    return jnp.clip(x0, -1.0, 1.0) if clip else x0

  def training_loss(self, kind: str, model_out: jax.Array, x0: jax.Array, noise: jax.Array,
                    t: jax.Array) -> jax.Array:
    """Per-example [b] mean squared error to the target; for 'eps' this is L_simple of Ho et al. (2020)."""
    err = jnp.square(model_out - self.target(kind, x0, noise, t))
    return einops.reduce(err, 'b ... -> b', 'mean')

  # Reverse process.

  def p_mean_variance(self, kind: str, model_out: jax.Array, xt: jax.Array, t: jax.Array,
                      variance: str = 'fixed_small', clip_x0: bool = True, threshold: float = 0.0):
    """p(x_{t-1}|x_t) -> (mean, var, log_var, x0_pred), all [b h w c].

    The mean is the posterior mean with x0 replaced by the model's (optionally clipped) estimate. The variance
    is fixed: 'fixed_small' the posterior variance (clipped at t = 0), 'fixed_large' beta_t (with the t = 0
    entry set to the posterior variance at t = 1, which gives a better decoder likelihood).
    """
    _check('variance', variance, VARIANCES)
    x0_pred = self.x0_from_prediction(kind, xt, t, model_out, clip=clip_x0, threshold=threshold)
    mean, _, _ = self.q_posterior_mean_variance(x0_pred, xt, t)
    if variance == 'fixed_small':
      var_table, log_var_table = self.posterior_variance, self.posterior_log_variance_clipped
    else:
      var_table, log_var_table = self.fixed_large_variance, self.fixed_large_log_variance
    var = jnp.broadcast_to(_gather(var_table, t, xt), xt.shape)
    log_var = jnp.broadcast_to(_gather(log_var_table, t, xt), xt.shape)
    return mean, var, log_var, x0_pred

  # Variational bound, in bits per dimension.

  def prior_bpd(self, x0: jax.Array) -> jax.Array:
    """KL(q(x_T|x0) || N(0, I)) per example [b] in bits/dim: not trainable, ~0 for a good schedule."""
    t = jnp.full(x0.shape[:1], self.num_timesteps - 1, jnp.int32)
    mean = _gather(self.sqrt_alphas_cumprod, t, x0) * x0
    log_var = jnp.broadcast_to(_gather(self.log_one_minus_alphas_cumprod, t, x0), x0.shape)
    # gaussian_kl's expm1 form: (var - 1 - log var) cancels catastrophically in float32 when var = 1 - acp_T ~ 1.
    kl = distributions.gaussian_kl(mean, log_var, jnp.zeros_like(mean), jnp.zeros_like(log_var))
    return distributions.bits_per_dim(einops.reduce(kl, 'b ... -> b', 'sum'), kl[0].size)

  def vb_terms_bpd(self, kind: str, model_out: jax.Array, x0: jax.Array, xt: jax.Array, t: jax.Array,
                   variance: str = 'fixed_small', clip_x0: bool = True) -> jax.Array:
    """One term of the bound per example [b] in bits/dim (x0 on the 8-bit grid for t = 0).

    t > 0: KL(q(x_{t-1}|x_t, x0) || p(x_{t-1}|x_t)); t = 0: -log p(x0|x_1) under the discretised Gaussian decoder
    with the model's mean and variance.
    """
    true_mean, _, true_log_var = self.q_posterior_mean_variance(x0, xt, t)
    mean, _, log_var, _ = self.p_mean_variance(kind, model_out, xt, t, variance, clip_x0)
    num_dims = x0[0].size
    kl = distributions.gaussian_kl(true_mean, true_log_var, mean, log_var)
    kl = distributions.bits_per_dim(einops.reduce(kl, 'b ... -> b', 'sum'), num_dims)
    nll = -distributions.discretized_gaussian_log_prob(x0, mean, 0.5 * log_var)
    nll = distributions.bits_per_dim(einops.reduce(nll, 'b ... -> b', 'sum'), num_dims)
    return jnp.where(t == 0, nll, kl)

  def bits_per_dim_bound(self, model_fn: Callable[[jax.Array, jax.Array], jax.Array], x0: jax.Array,
                         key: jax.Array, kind: str = 'eps', variance: str = 'fixed_small',
                         clip_x0: bool = True) -> BoundTerms:
    """The full variational bound on -log p(x0) in bits/dim: the prior plus every term, one lax.scan over t.

    model_fn(x_t [b h w c], t [b]) -> model_out [b h w c]. Each term is a one-sample estimate: timestep t uses
    noise jax.random.normal(jax.random.split(key, T)[t], x0.shape).
    """
    _check('kind', kind, KINDS)
    _check('variance', variance, VARIANCES)

    def term(_, t_and_key):
      t, step_key = t_and_key
      t_b = jnp.full(x0.shape[:1], t, jnp.int32)
      xt = self.q_sample(x0, t_b, jax.random.normal(step_key, x0.shape, x0.dtype))
      return None, self.vb_terms_bpd(kind, model_fn(xt, t_b), x0, xt, t_b, variance, clip_x0)

    steps = (jnp.arange(self.num_timesteps, dtype=jnp.int32), jax.random.split(key, self.num_timesteps))
    _, terms = jax.lax.scan(term, None, steps)
    terms = einops.rearrange(terms, 'T b -> b T')
    prior = self.prior_bpd(x0)
    return BoundTerms(total=prior + terms.sum(axis=-1), prior=prior, terms=terms)

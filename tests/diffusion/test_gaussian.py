"""Gaussian diffusion against closed forms computed here in float64 numpy (never via the code under test)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax.diffusion import GaussianDiffusion, beta_schedule
from gen_jax.distributions import gaussian_kl

T = 1000
S = 0.008
TS = (0, 1, 500, 998, 999)
LN2 = math.log(2.0)


# Independent float64 references.

def ref_betas(schedule, num_timesteps=T):
  if schedule == 'linear':
    return np.array([1e-4 + (0.02 - 1e-4) * i / (num_timesteps - 1) for i in range(num_timesteps)])
  f = lambda u: math.cos((u + S) / (1 + S) * math.pi / 2) ** 2
  return np.array([min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), 0.999) for i in range(num_timesteps)])


def ref_tables(schedule, num_timesteps=T):
  betas = ref_betas(schedule, num_timesteps)
  acp = np.array([math.prod(1 - betas[:i + 1]) for i in range(num_timesteps)])
  acp_prev = np.concatenate([[1.0], acp[:-1]])
  return dict(betas=betas, acp=acp, acp_prev=acp_prev,
              coef1=betas * np.sqrt(acp_prev) / (1 - acp),
              coef2=(1 - acp_prev) * np.sqrt(1 - betas) / (1 - acp),
              post_var=betas * (1 - acp_prev) / (1 - acp))


def col(a, t):
  """a[t] as [b 1 1 1]."""
  return np.asarray(a)[np.asarray(t)][:, None, None, None]


def f64(x):
  return np.asarray(x, np.float64)


@pytest.fixture(scope='module')
def linear():
  return GaussianDiffusion.create('linear', T)


@pytest.fixture(scope='module')
def cosine():
  return GaussianDiffusion.create('cosine', T)


@pytest.fixture(scope='module', params=['linear', 'cosine'])
def schedule(request, linear, cosine):
  return request.param, {'linear': linear, 'cosine': cosine}[request.param]


def test_linear_alphas_cumprod_known_values():
  betas = beta_schedule('linear', T)
  assert betas.dtype == np.float64 and betas.shape == (T,)
  assert betas[0] == pytest.approx(1e-4, rel=1e-12) and betas[-1] == pytest.approx(0.02, rel=1e-12)
  acp = np.cumprod(1 - betas)
  assert acp[0] == pytest.approx(1 - 1e-4, rel=1e-14)
  assert acp[1] == pytest.approx((1 - 1e-4) * (1 - 1e-4 - 0.0199 / 999), rel=1e-14)
  for t in TS:  # product of the paper's linear betas, term by term
    expected = math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(t + 1))
    assert acp[t] == pytest.approx(expected, rel=1e-10)
  assert 3e-5 < acp[-1] < 5e-5  # the well-known ~4.04e-5 at T = 1000


def test_cosine_alphas_cumprod_known_values():
  betas = beta_schedule('cosine', T)
  assert betas.dtype == np.float64
  assert betas[-1] == 0.999 and np.all(betas[:-1] < 0.999)  # only the last beta is clipped at T = 1000
  acp = np.cumprod(1 - betas)
  f = lambda t: math.cos(((t / T) + S) / (1 + S) * math.pi / 2) ** 2
  for t in TS:
    expected = f(t + 1) / f(0) if t < T - 1 else f(T - 1) / f(0) * (1 - 0.999)
    assert acp[t] == pytest.approx(expected, rel=1e-9), t


def test_unknown_schedule_raises():
  with pytest.raises(ValueError):
    beta_schedule('quadratic', 10)


def test_tables_are_float32_of_float64(schedule):
  name, diffusion = schedule
  ref = ref_tables(name)
  assert diffusion.num_timesteps == T
  for field in ('betas', 'alphas_cumprod', 'posterior_variance'):
    assert getattr(diffusion, field).dtype == jnp.float32
  ts = list(TS)
  got = lambda field: f64(getattr(diffusion, field))[ts]
  np.testing.assert_allclose(got('betas'), ref['betas'][ts], rtol=1e-6)
  np.testing.assert_allclose(got('alphas_cumprod'), ref['acp'][ts], rtol=1e-6)
  np.testing.assert_allclose(got('alphas_cumprod_prev'), ref['acp_prev'][ts], rtol=1e-6)
  np.testing.assert_allclose(got('sqrt_alphas_cumprod'), np.sqrt(ref['acp'][ts]), rtol=1e-6)
  np.testing.assert_allclose(got('sqrt_one_minus_alphas_cumprod'), np.sqrt(1 - ref['acp'][ts]), rtol=1e-6)
  np.testing.assert_allclose(got('sqrt_recip_alphas_cumprod'), 1 / np.sqrt(ref['acp'][ts]), rtol=1e-6)
  np.testing.assert_allclose(got('sqrt_recipm1_alphas_cumprod'), np.sqrt(1 / ref['acp'][ts] - 1), rtol=1e-6)


def test_posterior_coefficients_and_variance(schedule):
  name, diffusion = schedule
  ref = ref_tables(name)
  ts = [1, 500, 998, 999]
  np.testing.assert_allclose(f64(diffusion.posterior_mean_coef1)[ts], ref['coef1'][ts], rtol=1e-6)
  np.testing.assert_allclose(f64(diffusion.posterior_mean_coef2)[ts], ref['coef2'][ts], rtol=1e-6)
  np.testing.assert_allclose(f64(diffusion.posterior_variance)[ts], ref['post_var'][ts], rtol=1e-6)
  # t = 0: x_{-1} is x0 itself, so the posterior is a point mass at x0.
  assert float(diffusion.posterior_mean_coef1[0]) == pytest.approx(1.0, rel=1e-6)
  assert float(diffusion.posterior_mean_coef2[0]) == 0.0
  assert float(diffusion.posterior_variance[0]) == 0.0
  log_var = f64(diffusion.posterior_log_variance_clipped)
  assert log_var[0] == pytest.approx(math.log(ref['post_var'][1]), abs=1e-5)
  assert log_var[T - 1] == pytest.approx(math.log(ref['post_var'][T - 1]), abs=1e-5)
  assert np.all(np.isfinite(log_var))


def test_q_sample_statistics(linear):
  n, x0_value = 20000, 0.7
  ts = np.array([0, 100, 500, 999])
  t = jnp.asarray(np.repeat(ts, n), jnp.int32)
  x0 = jnp.full((len(ts) * n, 2, 2, 1), x0_value)
  noise = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
  xt = np.asarray(jax.jit(GaussianDiffusion.q_sample)(linear, x0, t, noise)).reshape(len(ts), -1)
  acp = ref_tables('linear')['acp'][ts]
  np.testing.assert_allclose(xt.mean(axis=1), np.sqrt(acp) * x0_value, atol=0.015)
  np.testing.assert_allclose(xt.var(axis=1), 1 - acp, rtol=0.03, atol=1e-6)


def _random_batch(seed, t_values, shape=(4, 4, 3)):
  kx, kn = jax.random.split(jax.random.PRNGKey(seed))
  x0 = jax.random.uniform(kx, (len(t_values),) + shape, minval=-1.0, maxval=1.0)
  noise = jax.random.normal(kn, x0.shape)
  return x0, noise, jnp.asarray(t_values, jnp.int32)


def test_eps_x0_v_round_trips(schedule):
  name, diffusion = schedule
  x0, noise, t = _random_batch(1, TS)
  xt = diffusion.q_sample(x0, t, noise)
  # x0 from eps divides by sqrt(acp_t): float32 error grows like 1/sqrt(acp_t).
  atol = 1e-5 / np.sqrt(col(ref_tables(name)['acp'], t)) + 1e-6
  assert np.all(np.abs(f64(diffusion.predict_x0_from_eps(xt, t, noise)) - f64(x0)) <= atol)
  np.testing.assert_allclose(diffusion.predict_eps_from_x0(xt, t, x0)[1:], noise[1:], atol=1e-3)  # not t = 0
  v = diffusion.v_target(x0, noise, t)
  np.testing.assert_allclose(diffusion.predict_x0_from_v(xt, t, v), x0, atol=2e-6)
  np.testing.assert_allclose(diffusion.predict_eps_from_v(xt, t, v), noise, atol=2e-6)
  for kind, pred in (('eps', noise), ('x0', x0), ('v', v)):
    np.testing.assert_allclose(diffusion.x0_from_prediction(kind, xt, t, pred)[:3], x0[:3], atol=1e-4)  # t <= 500
    clipped = diffusion.x0_from_prediction(kind, xt, t, 3.0 * pred, clip=True)
    assert float(jnp.max(jnp.abs(clipped))) <= 1.0


def test_v_target_closed_form(schedule):
  name, diffusion = schedule
  x0, noise, t = _random_batch(2, TS)
  acp = col(ref_tables(name)['acp'], t)
  expected = np.sqrt(acp) * f64(noise) - np.sqrt(1 - acp) * f64(x0)
  np.testing.assert_allclose(diffusion.v_target(x0, noise, t), expected, atol=1e-6)
  np.testing.assert_allclose(diffusion.target('v', x0, noise, t), expected, atol=1e-6)
  np.testing.assert_array_equal(diffusion.target('eps', x0, noise, t), noise)
  np.testing.assert_array_equal(diffusion.target('x0', x0, noise, t), x0)


def test_posterior_mean_closed_form(schedule):
  name, diffusion = schedule
  ref = ref_tables(name)
  x0, noise, t = _random_batch(3, TS)
  xt = diffusion.q_sample(x0, t, noise)
  mean, var, log_var = diffusion.q_posterior_mean_variance(x0, xt, t)
  assert mean.shape == var.shape == log_var.shape == x0.shape
  expected = col(ref['coef1'], t) * f64(x0) + col(ref['coef2'], t) * f64(xt)
  np.testing.assert_allclose(mean, expected, atol=2e-6)
  np.testing.assert_allclose(var, np.broadcast_to(col(ref['post_var'], t), x0.shape), rtol=1e-6)
  post_log_var = np.log(np.append(ref['post_var'][1], ref['post_var'][1:]))
  np.testing.assert_allclose(log_var, np.broadcast_to(col(post_log_var, t), x0.shape), atol=1e-5)


def test_p_mean_variance(schedule):
  name, diffusion = schedule
  ref = ref_tables(name)
  x0, noise, t = _random_batch(4, TS)
  xt = diffusion.q_sample(x0, t, noise)
  true_mean = col(ref['coef1'], t) * f64(x0) + col(ref['coef2'], t) * f64(xt)
  v = diffusion.v_target(x0, noise, t)
  for kind, out in (('eps', noise), ('x0', x0), ('v', v)):  # an exact model recovers the true posterior mean
    mean, var, log_var, x0_pred = diffusion.p_mean_variance(kind, out, xt, t, clip_x0=False)
    np.testing.assert_allclose(mean, true_mean, atol=5e-3 if kind == 'eps' else 2e-5, err_msg=kind)
    np.testing.assert_allclose(var, np.broadcast_to(col(ref['post_var'], t), x0.shape), rtol=1e-6)
  large = np.append(ref['post_var'][1], ref['betas'][1:])
  _, var, log_var, _ = diffusion.p_mean_variance('eps', noise, xt, t, variance='fixed_large')
  np.testing.assert_allclose(var, np.broadcast_to(col(large, t), x0.shape), rtol=1e-6)
  np.testing.assert_allclose(log_var, np.broadcast_to(col(np.log(large), t), x0.shape), atol=1e-5)
  _, _, _, x0_pred = diffusion.p_mean_variance('eps', 5.0 * noise, xt, t)  # clip_x0 on by default
  assert float(jnp.max(jnp.abs(x0_pred))) <= 1.0
  with pytest.raises(ValueError):
    diffusion.p_mean_variance('eps', noise, xt, t, variance='learned')
  with pytest.raises(ValueError):
    diffusion.target('score', x0, noise, t)


def test_training_loss(schedule):
  name, diffusion = schedule
  x0, noise, t = _random_batch(5, [3, 250, 999, 7, 60])
  for kind in ('eps', 'x0', 'v'):
    exact = diffusion.target(kind, x0, noise, t)
    loss = diffusion.training_loss(kind, exact, x0, noise, t)
    assert loss.shape == (5,)
    np.testing.assert_array_equal(loss, 0.0)
  model_out = jax.random.normal(jax.random.PRNGKey(6), x0.shape)
  acp = col(ref_tables(name)['acp'], t)
  targets = {'eps': f64(noise), 'x0': f64(x0), 'v': np.sqrt(acp) * f64(noise) - np.sqrt(1 - acp) * f64(x0)}
  for kind, target in targets.items():
    expected = ((f64(model_out) - target) ** 2).reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(diffusion.training_loss(kind, model_out, x0, noise, t), expected, rtol=1e-5)


def test_prior_bpd(schedule):
  name, diffusion = schedule
  x0, _, _ = _random_batch(7, TS)
  acp = ref_tables(name)['acp'][-1]
  mean = math.sqrt(acp) * f64(x0)
  kl = 0.5 * (mean ** 2 - acp - math.log1p(-acp))  # = (mean^2 + var - 1 - log var) / 2 without cancellation
  expected = kl.reshape(5, -1).sum(axis=1) / (kl[0].size * LN2)
  prior = np.asarray(jax.jit(GaussianDiffusion.prior_bpd)(diffusion, x0))
  assert prior.shape == (5,)
  assert np.all(prior > 0) and np.all(prior < 1e-4)  # ~0: x_T carries (almost) no information about x0
  np.testing.assert_allclose(prior, expected, rtol=1e-3)


def _zero_model(xt, t):
  del t
  return jnp.zeros_like(xt)


# Module-level jits: one compile each, shared by the parametrisations (eager op-by-op dispatch is slower here).
_vb_terms = jax.jit(GaussianDiffusion.vb_terms_bpd, static_argnames=('kind', 'variance', 'clip_x0'))
_zero_model_bound = jax.jit(lambda d, x, k: d.bits_per_dim_bound(_zero_model, x, k))


def _grid_batch(seed, b=5, shape=(4, 4, 3)):
  """Images on the 8-bit grid, with both extreme bins present."""
  levels = jax.random.randint(jax.random.PRNGKey(seed), (b,) + shape, 0, 256)
  levels = levels.at[:, 0, 0, 0].set(0).at[:, 0, 0, 1].set(255)
  return levels.astype(jnp.float32) / 127.5 - 1.0


def _ref_discretized_gaussian_nll(x, mean, std):
  half = 1.0 / 255
  upper = np.where(x > 1 - half, np.inf, x + half)
  lower = np.where(x < -1 + half, -np.inf, x - half)
  return -np.log(stats.norm.cdf(upper, mean, std) - stats.norm.cdf(lower, mean, std))


@pytest.mark.parametrize('variance', ['fixed_small', 'fixed_large'])
def test_vb_terms_closed_form(variance):
  num_timesteps = 10
  diffusion = GaussianDiffusion.create('cosine', num_timesteps)
  ref = ref_tables('cosine', num_timesteps)
  x0 = _grid_batch(8)
  noise = jax.random.normal(jax.random.PRNGKey(9), x0.shape)
  t = jnp.asarray([0, 4, 9, 1, 0], jnp.int32)
  xt = diffusion.q_sample(x0, t, noise)
  got = _vb_terms(diffusion, kind='eps', model_out=jnp.zeros_like(x0), x0=x0, xt=xt, t=t, variance=variance)
  # Zero-eps model: x0_pred = clip(x_t / sqrt(acp_t)); model mean = coef1 x0_pred + coef2 x_t.
  x0_d, xt_d = f64(x0), f64(xt)
  x0_pred = np.clip(xt_d / np.sqrt(col(ref['acp'], t)), -1, 1)
  c1, c2 = col(ref['coef1'], t), col(ref['coef2'], t)
  model_mean, true_mean = c1 * x0_pred + c2 * xt_d, c1 * x0_d + c2 * xt_d
  post_var = np.append(ref['post_var'][1], ref['post_var'][1:])
  model_var = post_var if variance == 'fixed_small' else np.append(ref['post_var'][1], ref['betas'][1:])
  v1, v2 = col(post_var, t), col(model_var, t)
  kl = 0.5 * (np.log(v2 / v1) - 1 + v1 / v2 + (true_mean - model_mean) ** 2 / v2)
  nll = _ref_discretized_gaussian_nll(x0_d, model_mean, np.sqrt(v2))
  num_dims = x0[0].size
  expected = np.where(np.asarray(t) == 0, nll.reshape(5, -1).sum(1), kl.reshape(5, -1).sum(1)) / (num_dims * LN2)
  np.testing.assert_allclose(got, expected, rtol=2e-4)


@pytest.mark.parametrize('schedule_name', ['linear', 'cosine'])
def test_bits_per_dim_bound_matches_python_loop(schedule_name):
  num_timesteps = 10
  diffusion = GaussianDiffusion.create(schedule_name, num_timesteps)
  x0 = _grid_batch(10)
  key = jax.random.PRNGKey(11)
  bound = _zero_model_bound(diffusion, x0, key)
  assert bound.total.shape == bound.prior.shape == (5,) and bound.terms.shape == (5, num_timesteps)
  assert np.all(np.isfinite(bound.terms)) and np.all(bound.terms >= 0) and np.all(bound.total > 0)
  np.testing.assert_allclose(bound.total, bound.prior + bound.terms.sum(-1), rtol=1e-6)
  # Reference: the same one-sample estimate with a Python loop over t.
  keys = jax.random.split(key, num_timesteps)
  loop_terms = []
  for step in range(num_timesteps):
    t = jnp.full((5,), step, jnp.int32)
    xt = diffusion.q_sample(x0, t, jax.random.normal(keys[step], x0.shape))
    loop_terms.append(_vb_terms(diffusion, kind='eps', model_out=_zero_model(xt, t), x0=x0, xt=xt, t=t))
  loop_terms = np.stack(loop_terms, axis=1)
  np.testing.assert_allclose(bound.terms, loop_terms, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(bound.prior, diffusion.prior_bpd(x0), rtol=1e-6)
  np.testing.assert_allclose(bound.total, f64(diffusion.prior_bpd(x0)) + loop_terms.sum(1), rtol=1e-5)


def test_gaussian_kl_closed_form():
  m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(2.0)
  expected = math.log(math.sqrt(2.0) / math.sqrt(0.5)) + (0.5 + (m1 - m2) ** 2) / (2 * 2.0) - 0.5
  assert float(gaussian_kl(m1, lv1, m2, lv2)) == pytest.approx(expected, rel=1e-6)
  assert float(gaussian_kl(0.1, -3.0, 0.1, -3.0)) == 0.0

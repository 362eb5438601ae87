"""Known-answer tests for gen_jax.distributions, against float64 references computed without JAX."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gen_jax import distributions

BINS = np.arange(256) / 127.5 - 1.0  # the 256 bin centres of 8-bit data in [-1, 1]
HALF = 1.0 / 255.0  # half a bin width


# --- float64 references (numpy / math / scipy only) ---------------------------------------------------------
def gaussian_cdf(v, mean, scale):
  return 0.5 * (1.0 + math.erf((v - mean) / (scale * math.sqrt(2.0))))


def logistic_cdf(v, mean, scale):
  return 1.0 / (1.0 + math.exp(-(v - mean) / scale))


def ref_log_bin_prob(log_cdf, x, mean, scale):
  """log P(bin of x) in float64 from a log-CDF, taking the tail side so tiny masses keep their precision.

  `log_cdf(t)` is the log-CDF of the standardised distribution (symmetric, so the SF at t is log_cdf(-t)).
  """
  lo, hi = (x - HALF - mean) / scale, (x + HALF - mean) / scale
  if x < -1 + HALF:  # bottom bin: all mass below its upper edge
    return log_cdf(hi)
  if x > 1 - HALF:  # top bin: all mass above its lower edge
    return log_cdf(-lo)
  if x < mean:  # CDF(hi) - CDF(lo), both small
    a, b = log_cdf(hi), log_cdf(lo)
  else:  # SF(lo) - SF(hi), both small
    a, b = log_cdf(-lo), log_cdf(-hi)
  return a + np.log1p(-np.exp(b - a))


def ref_gaussian_log_cdf(t):
  return float(special.log_ndtr(np.float64(t)))


def ref_logistic_log_cdf(t):
  return float(-np.logaddexp(0.0, -np.float64(t)))


DISCRETIZED = {
    'gaussian': (distributions.discretized_gaussian_log_prob, gaussian_cdf, ref_gaussian_log_cdf),
    'logistic': (distributions.discretized_logistic_log_prob, logistic_cdf, ref_logistic_log_cdf),
}


# --- KL ------------------------------------------------------------------------------------------------------
def test_kl_known_values():
  kl = distributions.gaussian_kl_to_standard_normal
  np.testing.assert_allclose(kl(jnp.float32(1.0), jnp.float32(0.0)), 0.5, rtol=1e-6)
  np.testing.assert_allclose(kl(jnp.float32(0.0), jnp.float32(math.log(4.0))), 0.5 * (3.0 - math.log(4.0)),
                             rtol=1e-6)
  # mean 2, var 1/4: (4 + 0.25 - 1 - ln 0.25) / 2
  np.testing.assert_allclose(kl(jnp.float32(2.0), jnp.float32(math.log(0.25))),
                             0.5 * (4.0 + 0.25 - 1.0 - math.log(0.25)), rtol=1e-6)
  assert float(kl(jnp.float32(0.0), jnp.float32(0.0))) == 0.0
  np.testing.assert_array_equal(kl(jnp.zeros((3, 5)), jnp.zeros((3, 5))), np.zeros((3, 5)))
  # Elementwise (no reduction) and strictly positive away from N(0, 1).
  values = kl(jnp.array([0.5, -0.5, 0.0]), jnp.array([0.0, 0.0, 1.0]))
  assert values.shape == (3,) and np.all(np.asarray(values) > 0)


def test_kl_matches_general_gaussian_kl_in_float64():
  rng = np.random.default_rng(0)
  mean = rng.normal(0.0, 2.0, size=64)
  log_var = rng.uniform(-4.0, 3.0, size=64)
  # KL(N(m1, s1^2) || N(m2, s2^2)) = ln(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2, here m2 = 0, s2 = 1.
  s1 = np.exp(0.5 * log_var)
  m2, s2 = 0.0, 1.0
  expected = np.log(s2 / s1) + (s1**2 + (mean - m2) ** 2) / (2 * s2**2) - 0.5
  got = distributions.gaussian_kl_to_standard_normal(jnp.asarray(mean, jnp.float32),
                                                     jnp.asarray(log_var, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('mean,log_var', [(1.0, 0.0), (0.0, math.log(4.0)), (-0.7, math.log(0.3))])
def test_kl_matches_monte_carlo(mean, log_var):
  """E_q[log q(z) - log p(z)] from 200k samples of q agrees with the closed form.

  Tolerance: 5 standard errors of the Monte-Carlo mean (the per-sample std estimated from the same samples /
  sqrt(n)), i.e. a 5-sigma band, plus float32 summation slack. A wrong closed form (e.g. a missing factor 1/2
  or log_var for log_std) is off by far more than that.
  """
  n = 200_000
  std = math.exp(0.5 * log_var)
  z = np.float64(mean) + std * np.asarray(jax.random.normal(jax.random.PRNGKey(0), (n,)), np.float64)
  log_q = -0.5 * ((z - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
  log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
  terms = log_q - log_p
  tolerance = 5.0 * terms.std() / math.sqrt(n) + 1e-6
  closed = float(distributions.gaussian_kl_to_standard_normal(jnp.float32(mean), jnp.float32(log_var)))
  assert abs(terms.mean() - closed) < tolerance, (terms.mean(), closed, tolerance)


# --- reparameterize -----------------------------------------------------------------------------------------
def test_reparameterize_moments():
  n = 200_000
  mean = jnp.array([1.5, -2.0, 0.0], jnp.float32)
  log_var = jnp.log(jnp.array([0.25, 9.0, 1.0], jnp.float32))
  z = distributions.reparameterize(jax.random.PRNGKey(1), jnp.broadcast_to(mean, (n, 3)),
                                   jnp.broadcast_to(log_var, (n, 3)))
  assert z.shape == (n, 3) and z.dtype == jnp.float32
  z = np.asarray(z, np.float64)
  std = np.array([0.5, 3.0, 1.0])
  # 5 standard errors: se(mean) = std / sqrt(n), se(sample std) ~= std / sqrt(2 n) for a Gaussian.
  np.testing.assert_array_less(np.abs(z.mean(0) - np.asarray(mean)), 5 * std / math.sqrt(n))
  np.testing.assert_array_less(np.abs(z.std(0) - std), 5 * std / math.sqrt(2 * n))
  # Different keys give different samples, the same key the same ones.
  a = distributions.reparameterize(jax.random.PRNGKey(2), mean, log_var)
  b = distributions.reparameterize(jax.random.PRNGKey(2), mean, log_var)
  c = distributions.reparameterize(jax.random.PRNGKey(3), mean, log_var)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


@pytest.mark.parametrize('mu,sigma', [(0.8, 0.5), (-1.5, 2.0)])
def test_reparameterized_gradient_of_second_moment(mu, sigma):
  """f(z) = z^2, z ~ N(mu, sigma^2): E f = mu^2 + sigma^2, so d/dmu = 2 mu and d/dlog_var = sigma^2.

  The Monte-Carlo gradient (mean over n samples of the per-sample pathwise gradient) must agree within
  5 standard errors, with the per-sample gradient std measured from the same samples.
  """
  n = 200_000
  key = jax.random.PRNGKey(4)
  log_var = 2.0 * math.log(sigma)

  def per_sample(m, lv):  # [n] values of f(z_i)
    return jnp.square(distributions.reparameterize(key, jnp.full((n,), m), jnp.full((n,), lv)))

  d_mu, d_lv = jax.jacfwd(per_sample, argnums=(0, 1))(jnp.float32(mu), jnp.float32(log_var))
  d_mu, d_lv = np.asarray(d_mu, np.float64), np.asarray(d_lv, np.float64)
  assert abs(d_mu.mean() - 2 * mu) < 5 * d_mu.std() / math.sqrt(n)
  assert abs(d_lv.mean() - sigma**2) < 5 * d_lv.std() / math.sqrt(n)
  # The gradient of the MC average (what training uses) is the same estimate.
  g_mu, g_lv = jax.grad(lambda m, lv: jnp.mean(per_sample(m, lv)), argnums=(0, 1))(jnp.float32(mu),
                                                                                   jnp.float32(log_var))
  np.testing.assert_allclose([g_mu, g_lv], [d_mu.mean(), d_lv.mean()], rtol=1e-4)


# --- Bernoulli ------------------------------------------------------------------------------------------------
def test_bernoulli_log_prob_matches_float64():
  logits = np.array([-100.0, -30.0, -5.0, -0.3, 0.0, 0.3, 2.0, 17.0, 100.0])
  logits = np.concatenate([logits, logits])
  targets = np.concatenate([np.ones(9), np.zeros(9)])
  log_sigmoid = np.log(1.0 / (1.0 + np.exp(-logits)))  # log sigmoid(l), float64
  log_one_minus = np.log(1.0 / (1.0 + np.exp(logits)))  # log(1 - sigmoid(l)) = log sigmoid(-l), float64
  expected = np.where(targets == 1, log_sigmoid, log_one_minus)
  got = distributions.bernoulli_log_prob(jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
  # The extremes explicitly: a confident right answer costs ~0, a confident wrong one ~100 nats.
  assert float(got[8]) == pytest.approx(0.0, abs=1e-30) and float(got[17]) == pytest.approx(-100.0, rel=1e-6)
  assert float(got[0]) == pytest.approx(-100.0, rel=1e-6)


def test_binarize_thresholds_at_zero():
  x = jnp.array([-1.0, -0.5, -1e-7, 0.0, 1e-7, 0.5, 1.0], jnp.float32)
  got = distributions.binarize(x)
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(got, [0, 0, 0, 0, 1, 1, 1])
  # 8-bit values: exactly the upper half of the 256 levels maps to 1.
  assert float(distributions.binarize(jnp.asarray(BINS, jnp.float32)).sum()) == 128.0


# --- discretized likelihoods -----------------------------------------------------------------------------------
SCALE_CASES = [  # (mean, log_scale): tiny and huge scales, means inside and outside [-1, 1], on centres and edges
    (0.0, 0.0), (0.3, -7.0), (0.3, -3.0), (-0.7, 2.0), (1.7, -2.0), (-3.0, -5.0), (0.5, 5.0),
    (-1.2, 0.5), (float(BINS[100]), -7.0), (float(BINS[100] + HALF), -7.0), (25.0, -7.0), (-0.999, -4.0),
]


@pytest.mark.parametrize('name', sorted(DISCRETIZED))
@pytest.mark.parametrize('mean,log_scale', SCALE_CASES)
def test_discretized_bins_sum_to_one(name, mean, log_scale):
  log_prob = DISCRETIZED[name][0]
  x = jnp.asarray(BINS, jnp.float32)
  lp = log_prob(x, jnp.float32(mean), jnp.float32(log_scale))
  assert lp.shape == (256,) and np.all(np.isfinite(lp)) and np.all(np.asarray(lp) <= 1e-6)
  total = np.exp(np.asarray(lp, np.float64)).sum()
  assert abs(total - 1.0) < 1e-5, total


@pytest.mark.parametrize('name', sorted(DISCRETIZED))
@pytest.mark.parametrize('mean,log_scale', [(0.1, -1.0), (-0.4, -3.0), (0.6, 0.5), (-2.0, 0.0), (1.5, -1.5)])
def test_discretized_matches_cdf_differences(name, mean, log_scale):
  """Middle bins: CDF(x + 1/255) - CDF(x - 1/255); edge bins: the tail masses. CDFs via math in float64."""
  log_prob, cdf, _ = DISCRETIZED[name]
  scale = math.exp(log_scale)
  centre = int(np.clip(round((mean + 1.0) * 127.5), 3, 252))  # the bin nearest the mean and its neighbours
  ks = sorted({0, 1, 60, 127, 128, 170, 254, 255, centre - 3, centre - 1, centre, centre + 1, centre + 3})
  x = BINS[ks]
  got = np.asarray(log_prob(jnp.asarray(x, jnp.float32), jnp.float32(mean), jnp.float32(log_scale)))
  checked = 0
  for k, xk, value in zip(ks, x, got):
    if k == 0:
      expected = cdf(xk + HALF, mean, scale)  # all mass below the bottom bin's upper edge
    elif k == 255:
      expected = 1.0 - cdf(xk - HALF, mean, scale)  # all mass above the top bin's lower edge
    else:
      expected = cdf(xk + HALF, mean, scale) - cdf(xk - HALF, mean, scale)
    if expected < 1e-9:  # far tails: plain float64 differences lose precision (covered by the extreme test)
      continue
    checked += 1
    np.testing.assert_allclose(value, math.log(expected), rtol=0, atol=2e-4, err_msg=f'{name} bin {k}')
  assert checked >= 5


def test_discretized_edge_bins_take_tail_mass():
  # Mean far above [-1, 1]: the top bin has (almost) all the mass, far more than its own width would give.
  for log_prob, cdf, _ in DISCRETIZED.values():
    top = float(log_prob(jnp.float32(1.0), jnp.float32(3.0), jnp.float32(-1.0)))
    assert top == pytest.approx(math.log(1.0 - cdf(1.0 - HALF, 3.0, math.exp(-1.0))), abs=1e-5)
    assert top > math.log(0.9)
    bottom = float(log_prob(jnp.float32(-1.0), jnp.float32(-3.0), jnp.float32(-1.0)))
    assert bottom == pytest.approx(math.log(cdf(-1.0 + HALF, -3.0, math.exp(-1.0))), abs=1e-5)
    assert bottom > math.log(0.9)


EXTREME_CASES = [  # (x, mean) at log_scale = -7: x many scales from the mean, on either side, either sign
    (0.5, 0.9), (-0.5, -1.0), (-0.5, 0.5), (0.5, -0.5), (0.0, 5.0), (0.0, -5.0), (-1.0, 0.0), (1.0, 0.0),
    (0.2, 100.0), (-0.9, -0.6),
]


@pytest.mark.parametrize('name', sorted(DISCRETIZED))
@pytest.mark.parametrize('x,mean', EXTREME_CASES)
def test_discretized_extreme_inputs_are_finite_and_exact(name, x, mean):
  """log_scale = -7 (the VAE's floor) with x far from the mean: the true log-probability is hugely negative.

  It must be finite, agree with a float64 tail computation, and still give a gradient that pulls the mean
  towards x (a floored value such as log(1e-12) would be finite but flat).
  """
  log_prob, _, ref_log_cdf = DISCRETIZED[name]
  log_scale = -7.0
  got = float(log_prob(jnp.float32(x), jnp.float32(mean), jnp.float32(log_scale)))
  expected = ref_log_bin_prob(ref_log_cdf, x, mean, math.exp(log_scale))
  assert math.isfinite(got) and got < -50.0, got
  assert got == pytest.approx(expected, rel=1e-4), (got, expected)
  d_mean, d_log_scale = jax.grad(log_prob, argnums=(1, 2))(jnp.float32(x), jnp.float32(mean),
                                                          jnp.float32(log_scale))
  assert np.isfinite(d_mean) and np.isfinite(d_log_scale)
  assert np.sign(d_mean) == np.sign(x - mean) and d_log_scale > 0  # move towards x, widen


def test_discretized_gradients_finite_on_all_bins():
  x = jnp.asarray(BINS, jnp.float32)
  for log_prob, _, _ in DISCRETIZED.values():
    for mean, log_scale in SCALE_CASES:
      grads = jax.grad(lambda m, s: jnp.sum(log_prob(x, m, s)), argnums=(0, 1))(jnp.float32(mean),
                                                                                 jnp.float32(log_scale))
      assert np.all(np.isfinite(grads)), (mean, log_scale, grads)


# --- bits per dim ---------------------------------------------------------------------------------------------
def test_bits_per_dim_conversion():
  d = 16 * 16 * 3
  assert float(distributions.bits_per_dim(jnp.float32(d * math.log(2.0)), d)) == pytest.approx(1.0, rel=1e-6)
  nats = jnp.array([0.0, 256 * math.log(2.0) * 3.5, 100.0], jnp.float32)
  np.testing.assert_allclose(distributions.bits_per_dim(nats, 256), [0.0, 3.5, 100.0 / (256 * math.log(2.0))],
                             rtol=1e-6)

"""FD, IS, KID and precision/recall against closed forms and hand-computed values."""

import numpy as np
import pytest

from gen_jax.evaluation import metrics


def stats(mu, sigma, n=100):
  return metrics.GaussianStats(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), n)


def test_frechet_distance_of_identical_statistics_is_zero():
  rng = np.random.default_rng(0)
  s = metrics.gaussian_stats(rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16)))
  assert s.sigma.shape == (16, 16) and s.n == 500
  assert abs(metrics.frechet_distance(s, s)) < 1e-8 * np.trace(s.sigma)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
  var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([3.0, 1.0, 0.0])
  expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)  # 13 + (4 + 1 + 0)
  assert metrics.frechet_distance(stats(mu_a, np.diag(var_a)), stats(mu_b, np.diag(var_b))) == \
      pytest.approx(expected, rel=1e-10) == 18.0


def test_frechet_distance_of_sample_statistics_approaches_the_population_value():
  rng = np.random.default_rng(1)
  a = metrics.gaussian_stats(rng.normal(0.0, 1.0, (20000, 2)))
  b = metrics.gaussian_stats(rng.normal(1.0, 2.0, (20000, 2)))
  assert metrics.frechet_distance(a, b) == pytest.approx(2 * 1.0 + 2 * (2.0 - 1.0) ** 2, abs=0.1)


def test_frechet_distance_with_fewer_examples_than_dims_is_finite():
  rng = np.random.default_rng(2)
  a, b = (metrics.gaussian_stats(rng.standard_normal((10, 32))) for _ in range(2))
  assert np.isfinite(metrics.frechet_distance(a, b)) and metrics.frechet_distance(a, b) > 0


def test_frechet_distance_rejects_a_large_imaginary_square_root(monkeypatch):
  monkeypatch.setattr(metrics.scipy.linalg, 'sqrtm', lambda a: a + 0.5j)
  with pytest.raises(ValueError, match='imaginary'):
    metrics.frechet_distance(stats([0, 0], np.eye(2)), stats([0, 0], np.eye(2)))


def test_inception_score_hand_computed_and_extremes():
  log_p = np.log([[0.9, 0.1], [0.1, 0.9]])  # marginal (0.5, 0.5): KL = 0.9 ln 1.8 + 0.1 ln 0.2 for both
  score, std = metrics.inception_score(log_p, splits=1)
  assert score == pytest.approx(np.exp(0.9 * np.log(1.8) + 0.1 * np.log(0.2)), rel=1e-12) and std == 0.0
  assert metrics.inception_score(np.zeros((40, 7)), splits=10) == pytest.approx((1.0, 0.0))  # uninformative
  confident = np.eye(10)[np.tile(np.arange(10), 10)] * 50.0  # every class equally often, each sure: IS = k
  assert metrics.inception_score(confident, splits=10)[0] == pytest.approx(10.0, rel=1e-6)


def test_kid_hand_computed_and_unbiased_near_zero():
  x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
  # k(a, b) = (ab + 1)^3: K_xx off-diagonal 1, K_yy off-diagonal 343, K_xy (1 + 1 + 27 + 64) / 4
  assert metrics.mmd2_unbiased(x, y) == pytest.approx(1.0 + 343.0 - 2 * 93 / 4)
  assert metrics.kernel_inception_distance(x, y, num_subsets=3) == pytest.approx((297.5, 0.0))
  rng = np.random.default_rng(3)
  same = metrics.kernel_inception_distance(rng.standard_normal((600, 8)), rng.standard_normal((600, 8)),
                                           num_subsets=20, subset_size=300)
  shifted = metrics.kernel_inception_distance(rng.standard_normal((600, 8)), rng.standard_normal((600, 8)) + 0.5,
                                              num_subsets=20, subset_size=300)
  assert abs(same[0]) < 3 * same[1] + 1e-3 and shifted[0] > 10 * abs(same[0])


def test_precision_recall_hand_computed_on_a_line():
  real = np.arange(10.0)[:, None]  # k=3 balls: radius 3 at the ends, 2 inside
  fake = np.concatenate([np.arange(5.0), 100.0 + np.arange(5.0)])[:, None]
  # fakes 0..4 lie in real balls, 100..104 do not; fake balls around 0..4 reach 7 (ball of 4 has radius 3)
  assert metrics.precision_recall(real, fake, k=3) == pytest.approx((0.5, 0.8))
  assert metrics.precision_recall(real, real, k=3) == (1.0, 1.0)
  assert metrics.precision_recall(real, real + 1000.0, k=3) == (0.0, 0.0)

"""Sample-quality metrics on features and logits, in float64 numpy: FD, IS, KID, precision/recall.

Conventions follow the reference implementations so numbers compare with papers: Fréchet distance as in
pytorch-fid (unbiased covariances, scipy sqrtm retried with eps on the diagonal), Inception Score as in
improved-gan (10 splits, exp of the mean KL), KID as in Bińkowski et al. 2018 (unbiased MMD^2, cubic polynomial
kernel, averaged over random subsets), precision/recall as in Kynkäänniemi et al. 2019 (k-NN balls, k=3).
Shapes: n examples, d feature dims, k classes.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import scipy.linalg
import scipy.special


@dataclasses.dataclass(frozen=True)
class GaussianStats:
  mu: np.ndarray  # [d]
  sigma: np.ndarray  # [d d]
  n: int


def gaussian_stats(features: np.ndarray) -> GaussianStats:
  """Mean and unbiased covariance (ddof=1, as pytorch-fid) of features [n d], in float64."""
  features = np.asarray(features, np.float64)
  if len(features) < 2:
    raise ValueError(f'Fréchet statistics need at least 2 examples, got {len(features)}.')
  return GaussianStats(features.mean(0), np.cov(features, rowvar=False), len(features))


def frechet_distance(a: GaussianStats, b: GaussianStats, eps: float = 1e-6, max_imag: float = 1e-3) -> float:
  """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) (Dowson & Landau 1982), in float64.

  A singular product (e.g. fewer examples than dims) gets `eps` on both diagonals before the square root is
  retried; an imaginary diagonal above `max_imag` is numerical failure, not a distance: raised.
  """
  mu_a, mu_b = np.atleast_1d(a.mu).astype(np.float64), np.atleast_1d(b.mu).astype(np.float64)
  s_a, s_b = np.atleast_2d(a.sigma).astype(np.float64), np.atleast_2d(b.sigma).astype(np.float64)
  if mu_a.shape != mu_b.shape or s_a.shape != s_b.shape:
    raise ValueError(f'Statistics of different feature sizes: {mu_a.shape} vs {mu_b.shape}.')
  with warnings.catch_warnings():  # scipy warns on singular products; finiteness is checked (and fixed) here
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():
      offset = np.eye(len(s_a)) * eps
      covmean = scipy.linalg.sqrtm((s_a + offset) @ (s_b + offset))
  if np.iscomplexobj(covmean):  # pytorch-fid's test: only the diagonal (the trace) must be real
    if np.abs(np.diagonal(covmean).imag).max() > max_imag:
      raise ValueError(f'The covariance square root has an imaginary diagonal of '
                       f'{np.abs(np.diagonal(covmean).imag).max():.3g}: the statistics are degenerate.')
    covmean = covmean.real
  diff = mu_a - mu_b
  return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
  """exp(E_x KL(p(y|x) || p(y))) per split of logits [n k] (softmax over all k); (mean, std) over splits."""
  logits = np.asarray(logits, np.float64)
  if len(logits) < splits:
    raise ValueError(f'Inception Score with {splits} splits needs at least {splits} samples, got {len(logits)}.')
  log_p = scipy.special.log_softmax(logits, axis=-1)
  scores = []
  for part in np.array_split(log_p, splits):
    log_marginal = np.log(np.exp(part).mean(0))
    kl = (np.exp(part) * (part - log_marginal)).sum(-1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """k(x, y) = (x.y / d + 1)^3, the KID kernel."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 between samples x [m d] and y [n d] with the polynomial kernel (diagonals excluded)."""
  m, n = len(x), len(y)
  k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
               - 2.0 * k_xy.mean())


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
  """Mean and std of unbiased MMD^2 over `num_subsets` random subsets (without replacement, each of
  min(subset_size, n_real, n_fake) examples per side), seeded so a rerun gives the same number."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  size = min(subset_size, len(real), len(fake))
  if size < 2:
    raise ValueError(f'KID needs at least 2 examples per side, got {len(real)} and {len(fake)}.')
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                          fake[rng.choice(len(fake), size, replace=False)]) for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def knn_radii(features: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
  """Squared distance from each example to its k-th nearest other example (the radius of its k-NN ball)."""
  radii = np.empty(len(features))
  for i in range(0, len(features), block):
    d = _squared_distances(features[i:i + block], features)
    radii[i:i + block] = np.partition(d, k, axis=1)[:, k]  # index 0 is the example itself (distance 0)
  return radii


def coverage_of(queries: np.ndarray, manifold: np.ndarray, radii: np.ndarray, block: int = 2048) -> float:
  """Fraction of queries inside at least one k-NN ball of the manifold's examples."""
  inside = [(_squared_distances(queries[i:i + block], manifold) <= radii[None, :]).any(1)
            for i in range(0, len(queries), block)]
  return float(np.concatenate(inside).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
  """Improved precision (fakes inside the real manifold) and recall (reals inside the fake manifold)."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if min(len(real), len(fake)) <= k:
    raise ValueError(f'precision/recall with k={k} needs more than {k} examples per side.')
  precision = coverage_of(fake, real, knn_radii(real, k))
  recall = coverage_of(real, fake, knn_radii(fake, k))
  return precision, recall

"""Reference statistics of a dataset split: every example once, through the uint8 path samples take, cached.

FIDs stop being comparable when the reference is built differently from the samples (float vs uint8 images,
another resize) or from part of the data (a drop-remainder batch loop silently skips the tail). Here every
example of the split goes through the same extractor as the samples, and the result is cached as .npz keyed by
dataset, split, the images' bytes and extractor (with its weights' fingerprint and a code version), so changed
data, a changed classifier or weight file never reuses stale statistics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from gen_jax.data import dataset_id, dataset_name, load_split
from gen_jax.evaluation.features import FeatureExtractor
from gen_jax.evaluation.metrics import GaussianStats, gaussian_stats


@dataclasses.dataclass
class Reference:
  stats: GaussianStats  # of every example
  features: np.ndarray  # [m d]: a fixed random subset (all when n <= max_features), for KID / precision-recall
  logits: np.ndarray  # [m k] of the same examples
  labels: np.ndarray  # [m] their labels
  split: str


FEATURES_VERSION = 1  # bump when preprocessing or a feature layer changes: old caches are then never read


def cache_path(data_config, split: str, images: np.ndarray, extractor: FeatureExtractor, max_features: int,
               cache_dir: str) -> str:
  """Keyed by what went in: the dataset, split, the images' own bytes, extractor and weights, code version."""
  content = hashlib.sha1(images.tobytes()).hexdigest()
  what = json.dumps([dataset_id(data_config), split, list(images.shape), content, extractor.name,
                     extractor.fingerprint, max_features, FEATURES_VERSION])
  shape = 'x'.join(str(s) for s in images.shape[1:])
  return os.path.join(cache_dir, f'{dataset_name(data_config)}_{split}_{shape}_{extractor.name}_'
                                 f'{hashlib.sha1(what.encode()).hexdigest()[:10]}.npz')


def reference_statistics(data_config, split: str, extractor: FeatureExtractor, mesh, cache_dir: str,
                         max_features: int = 10000, progress=None) -> Reference:
  """The cached Reference of `split` (computed on first use, every process computes; process 0 writes)."""
  images, labels = load_split(data_config, split)
  path = cache_path(data_config, split, images, extractor, max_features, cache_dir)
  cached = os.path.exists(path)
  if jax.process_count() > 1:  # all load, or all compute (the computation is collective); caches may be per host
    cached = bool(np.all(multihost_utils.process_allgather(np.asarray(cached))))
  if cached:
    with np.load(path) as data:
      return Reference(GaussianStats(data['mu'], data['sigma'], int(data['n'])), data['features'], data['logits'],
                       data['labels'], split)
  print(f'Reference statistics: {len(images)} {dataset_name(data_config)}/{split} images through the {extractor.name} '
        f'(cached at {path})', flush=True)
  out = extractor(images, mesh, progress)
  stats = gaussian_stats(out['features'])
  keep = np.sort(np.random.default_rng(0).permutation(len(images))[:max_features])
  reference = Reference(stats, out['features'][keep], out['logits'][keep], labels[keep], split)
  if jax.process_index() == 0:
    os.makedirs(cache_dir, exist_ok=True)
    temporary = f'{path}.{os.getpid()}.tmp.npz'  # unique: evaluators started together share the cache
    np.savez(temporary, mu=stats.mu, sigma=stats.sigma, n=stats.n, features=reference.features,
             logits=reference.logits, labels=reference.labels)
    os.replace(temporary, path)
  return reference

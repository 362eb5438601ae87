"""Reference statistics of a dataset split: every example once, through the uint8 path samples take, cached.

FIDs stop being comparable when the reference is built differently from the samples (float vs uint8 images,
another resize) or from part of the data (a drop-remainder batch loop silently skips the tail). Here every
example of the split goes through the same extractor as the samples, and the result is cached as .npz keyed by
dataset, split, resolution and extractor (with its weights' fingerprint), so a changed classifier or weight file
never reuses stale statistics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import numpy as np

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


def cache_path(data_config, split: str, image_shape, extractor: FeatureExtractor, max_features: int,
               cache_dir: str) -> str:
  what = json.dumps([dataset_id(data_config), split, list(image_shape), extractor.name, extractor.fingerprint,
                     max_features])
  shape = 'x'.join(str(s) for s in image_shape)
  return os.path.join(cache_dir, f'{dataset_name(data_config)}_{split}_{shape}_{extractor.name}_'
                                 f'{hashlib.sha1(what.encode()).hexdigest()[:10]}.npz')


def reference_statistics(data_config, split: str, extractor: FeatureExtractor, mesh, cache_dir: str,
                         max_features: int = 10000, progress=None) -> Reference:
  """The cached Reference of `split` (computed on first use, every process computes; process 0 writes)."""
  images, labels = load_split(data_config, split)
  path = cache_path(data_config, split, images.shape[1:], extractor, max_features, cache_dir)
  if os.path.exists(path):
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
    np.savez(path + '.tmp.npz', mu=stats.mu, sigma=stats.sigma, n=stats.n, features=reference.features,
             logits=reference.logits, labels=reference.labels)
    os.replace(path + '.tmp.npz', path)
  return reference

"""Evaluation: FID Inception, dataset classifier, sample-quality metrics, reference statistics (`--mode eval`)."""

import os


def cache_dir(configured: str, kind: str) -> str:
  """`configured`, else $XDG_CACHE_HOME/gen_jax/<kind> (~/.cache/gen_jax/<kind>): shared by every run, so all
  runs on a machine are scored by the same classifier and reference statistics."""
  if configured:
    return configured
  return os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'gen_jax', kind)

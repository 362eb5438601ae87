"""Test setup: 8 forced CPU devices (before jax is imported) so multi-device code runs on any machine.

XLA:CPU compiles dominate the suite (a tiny DDPM's init + train step: ~35 s on a 2-core CPU) and many tests build
the same small nets, so the session shares one persistent compilation cache, inherited by the processes the
tests start. It is fresh for every session and removed at its end: no test ever reads a stale executable.
"""

import os
import shutil
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_XLA_CACHE = tempfile.mkdtemp(prefix='gen_jax_tests_xla_cache_')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _XLA_CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
_USER_CACHE = tempfile.mkdtemp(prefix='gen_jax_tests_user_cache_')
os.environ['XDG_CACHE_HOME'] = _USER_CACHE  # classifier / reference caches of code under test: never ~/.cache


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  # With pytest -n the workers inherit the controller's cache (JAX_COMPILATION_CACHE_DIR): only the controller,
  # which finishes last, removes it; a worker removes just the directory it made and never used.
  if 'PYTEST_XDIST_WORKER' not in os.environ or os.environ['JAX_COMPILATION_CACHE_DIR'] != _XLA_CACHE:
    shutil.rmtree(_XLA_CACHE, ignore_errors=True)
  shutil.rmtree(_USER_CACHE, ignore_errors=True)


import pytest  # noqa: E402


@pytest.fixture(scope='session')
def classifier_cache(tmp_path_factory):
  """One dataset-classifier cache for the session: the classifier is trained once, then loaded."""
  return str(tmp_path_factory.mktemp('classifier_cache'))


@pytest.fixture(scope='session')
def trained_clip(tmp_path_factory):
  """(config, workdir) of a tiny CLIP (8x8 digits, frozen MiniLM) trained to ~88% zero-shot, once per session:
  the CLIP behind the CLIP-score and unCLIP tests."""
  from gen_jax.train import train
  from tests.helpers import tiny_clip_config
  workdir = str(tmp_path_factory.mktemp('clip'))
  config = tiny_clip_config('minilm', total_steps=600, checkpoint_every=600, log_every=100, global_batch_size=64,
                            **{'optim.warmup_steps': 20})
  train(config, workdir)
  return config, workdir

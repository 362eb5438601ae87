"""Test setup: 8 forced CPU devices (before jax is imported) so multi-device code runs on any machine.

XLA:CPU compiles dominate the suite (a tiny DDPM's init + train step: ~35 s on a 2-core CPU) and many tests build
the same small nets, so the session shares one persistent compilation cache, inherited by the processes the
tests start. It is fresh for every session and removed at its end: no test ever reads a stale executable. (With the
cache on, gen_jax compiles CPU steps as one heap, the form XLA can cache: gen_jax/compiler.py.)
Expensive fixtures (the trained CLIP, the dataset classifier) are built once per session in a directory shared by
the pytest-xdist workers, under a file lock: the first worker to need one builds it, the other waits and reuses it.
"""

import os
import shutil
import tempfile

# LLVM optimisation level 1: the tests' tiny nets compile ~1/3 faster (the tiny DDPM step 18.7 -> 12.7 s on a 2-core
# EPYC) and run as fast; gen_jax's own runs keep the default level (a DCGAN step ran 108 -> 184 ms at level 1).
for _flag in ('--xla_force_host_platform_device_count=8', '--xla_backend_optimization_level=1'):
  if _flag.split('=')[0] not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_MADE = []  # the session directories this process made (and removes at its end)


def _session_dir(variable: str, prefix: str) -> str:
  """$variable, or a fresh directory put there: made by the controller (or a lone pytest), inherited by the xdist
  workers and the processes tests start; a directory the user named is theirs (never removed)."""
  if variable not in os.environ:
    os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
    _MADE.append(os.environ[variable])
  return os.environ[variable]


_session_dir('JAX_COMPILATION_CACHE_DIR', 'gen_jax_tests_xla_cache_')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
_SHARED = _session_dir('GEN_JAX_TESTS_SHARED_DIR', 'gen_jax_tests_shared_')
_session_dir('GEN_JAX_CACHE', 'gen_jax_tests_kernels_')  # gen_jax.onednn's library: built once per session
_USER_CACHE = tempfile.mkdtemp(prefix='gen_jax_tests_user_cache_')  # per process
os.environ['XDG_CACHE_HOME'] = _USER_CACHE  # classifier / reference caches of code under test: never ~/.cache


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  # With pytest -n only the controller made the shared directories, and it finishes after its workers.
  for directory in [*_MADE, _USER_CACHE]:
    shutil.rmtree(directory, ignore_errors=True)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _compiled_steps_in_process(request, monkeypatch):
  """In-process runs compile their train steps: tests count compiles and patch gen_jax at run time, which the step
  cache's key cannot see (gen_jax/step_cache.py). Tests of that cache ask for `step_cache_on`; the processes tests
  start (main.py) use it as users do."""
  if 'step_cache_on' not in request.fixturenames:
    from gen_jax import step_cache
    monkeypatch.setattr(step_cache, 'directory', lambda config: None)


@pytest.fixture
def step_cache_on():
  """gen_jax.step_cache as in a user's run (see `_compiled_steps_in_process`)."""


@pytest.fixture(scope='session')
def classifier_cache():
  """One dataset-classifier cache for the session, shared by the workers: the classifier is trained once (by whichever
  asks first: `get_classifier` locks the entry), then loaded."""
  return os.path.join(_SHARED, 'classifier_cache')


def built_once(name: str, build) -> str:
  """_SHARED/name, made by `build(path)` once for the whole session (all workers); a failed build is retried."""
  import filelock
  path = os.path.join(_SHARED, name)
  with filelock.FileLock(path + '.lock'):
    if not os.path.exists(path + '.done'):
      shutil.rmtree(path, ignore_errors=True)
      build(path)
      open(path + '.done', 'w').close()
  return path


@pytest.fixture(scope='session')
def trained_clip():
  """(config, workdir) of a tiny CLIP (8x8 digits, frozen MiniLM) trained to ~88% zero-shot, once per session:
  the CLIP behind the CLIP-score and unCLIP tests. Tests may add eval/ files to its workdir, nothing else."""
  from gen_jax.train import train
  from tests.helpers import tiny_clip_config
  config = tiny_clip_config('minilm', total_steps=600, checkpoint_every=600, log_every=100, global_batch_size=64,
                            **{'optim.warmup_steps': 20})
  return config, built_once('clip', lambda workdir: train(config, workdir))


@pytest.fixture
def jax_cache_settings():
  """For tests that change jax's persistent-cache settings: they start with the cache off (as a fresh process
  without one) and get the session's settings back after. jax binds its cache to the directory set at the first
  compile of the process: one compile here first keeps that the session's cache, whatever the test sets."""
  import jax

  from gen_jax import compiler
  jax.jit(lambda x: x + 1).lower(1.0).compile()
  names = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs')
  saved, turned_on = {name: getattr(jax.config, name) for name in names}, list(compiler._CACHE_TURNED_ON)
  jax.config.update('jax_compilation_cache_dir', None)
  compiler._CACHE_TURNED_ON.clear()
  yield
  for name, value in saved.items():
    jax.config.update(name, value)
  compiler._CACHE_TURNED_ON[:] = turned_on

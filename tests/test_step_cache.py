"""gen_jax.step_cache: a cached start loads the whole train step without tracing it, trains exactly as a compiled
one, and anything that could change the program changes the key."""

import importlib.util
import logging
import os
import signal
import sys

import jax
import numpy as np
import pytest

from gen_jax import parallel, step_cache
from gen_jax.families import get_family
from gen_jax.families.vae import VAEFamily
from gen_jax.train import train
from tests.helpers import host_tree, tiny_ddpm_config, tiny_text_config, tiny_vae_config


@pytest.fixture
def traces(monkeypatch):
  """How many times the VAE's train step was traced (each trace runs its Python once)."""
  count = [0]
  original = VAEFamily.train_step

  def counted(self, state, batch):
    count[0] += 1
    return original(self, state, batch)
  monkeypatch.setattr(VAEFamily, 'train_step', counted)
  return count


def _cached_vae(tmp_path, **overrides):
  """A tiny VAE run with the caches on. A learning rate of its own (drawn per test run, written into the config)
  makes its step a program no run compiled before, so its first compile is fresh, not from jax's cache (whose
  steps are not kept): the tests' jax cache is shared by the session's tests, or may be one a user named."""
  learning_rate = float(np.random.default_rng().uniform(1e-3, 2e-3))
  return tiny_vae_config(**{'total_steps': 4, 'compilation_cache_dir': str(tmp_path / 'xla_cache'),
                            'optim.learning_rate': learning_rate, **overrides})


def _steps(tmp_path):
  return sorted((tmp_path / 'xla_cache' / 'gen_jax_steps').glob('*.jaxstep'))


def test_a_second_run_loads_the_step_without_tracing_it_and_trains_the_same(tmp_path, jax_cache_settings,
                                                                            step_cache_on, traces):
  config = _cached_vae(tmp_path)
  first = train(config, str(tmp_path / 'first'))
  assert traces[0] >= 1 and len(_steps(tmp_path)) == 1
  traces[0] = 0
  second = train(config, str(tmp_path / 'second'))  # on 8 devices: a sharded executable
  assert traces[0] == 0
  jax.tree.map(np.testing.assert_array_equal, host_tree(first.state.params), host_tree(second.state.params))
  assert first.history == second.history


def test_a_run_resumed_on_a_loaded_step_equals_an_uninterrupted_one(tmp_path, jax_cache_settings, step_cache_on,
                                                                    traces):
  """Preempted at step 4 of 8, two steps per call; the restart restores the checkpoint and loads the step."""
  config = _cached_vae(tmp_path, total_steps=8, steps_per_call=2, log_every=2, checkpoint_every=4)
  full = train(config, str(tmp_path / 'full'))

  def preempt_at_step_4(step):
    if step == 4:
      os.kill(os.getpid(), signal.SIGTERM)
  assert train(config, str(tmp_path / 'resumed'), hooks=[preempt_at_step_4]).preempted
  traces[0] = 0
  resumed = train(config, str(tmp_path / 'resumed'))
  assert traces[0] == 0 and sorted(resumed.history) == [5, 6, 7, 8]
  jax.tree.map(np.testing.assert_array_equal, host_tree(full.state), host_tree(resumed.state))


def test_a_step_that_does_not_fit_its_arguments_falls_back_to_the_jit(caplog):
  """E.g. a restored state of another dtype than the step was compiled for: jax refuses it before running it."""
  jitted = jax.jit(lambda x: x * 2.0)
  step = step_cache.CompiledStep(jitted.lower(np.float32(1.0)).compile(), jitted)
  with caplog.at_level(logging.WARNING):
    np.testing.assert_array_equal(step(np.ones(2, np.float32)), [2.0, 2.0])  # compiled for a scalar
  assert 'calling its jit instead' in caplog.text


def test_a_loaded_step_that_fails_at_its_first_call_is_removed(tmp_path):
  path = tmp_path / 'p0-x.jaxstep'
  path.write_bytes(b'a step')

  def fails(*args):
    raise RuntimeError('NOT_FOUND: Function multiply_exponential_fusion not found')
  step = step_cache.CompiledStep(fails, jax.jit(lambda x: x), loaded_from=path)
  with pytest.raises(RuntimeError, match='not found'):
    step(1.0)
  assert not path.exists()


def test_a_damaged_step_file_is_reported_and_compiled_over(tmp_path, jax_cache_settings, step_cache_on, traces,
                                                          caplog):
  config = _cached_vae(tmp_path)
  train(config, str(tmp_path / 'first'))
  [path] = _steps(tmp_path)
  path.write_bytes(b'not an executable')
  traces[0] = 0
  with caplog.at_level(logging.WARNING):
    again = train(config, str(tmp_path / 'second'))
  assert 'did not load' in caplog.text and traces[0] >= 1
  assert int(host_tree(again.state.step)) == 4
  # removed; kept again only if compiled afresh (here jax's cache most likely held the step: see the next test)
  assert not path.exists() or step_cache._load(path, jax.devices()) is not None  # (loads; runs: the first test)


def test_only_fresh_compiles_are_kept_not_steps_from_jax_cache(tmp_path, monkeypatch):
  """XLA:CPU re-serializes an executable it loaded from a cache without its kernels (gen_jax/step_cache.py)."""
  from etils import epath
  path = epath.Path(tmp_path) / 'step.jaxstep'
  lowered = jax.jit(lambda x: x * 2.0).lower(1.0)
  compile_fresh = lowered.compile

  def compile_from_jax_cache():
    jax.monitoring.record_event(step_cache.JAX_CACHE_HIT)  # as jax does on a hit, on the compiling thread
    return compile_fresh()
  monkeypatch.setattr(lowered, 'compile', compile_from_jax_cache)
  assert float(step_cache._compile_and_save(None, lowered, path)(3.0)) == 6.0 and not path.exists()
  step_cache._compile_and_save(None, jax.jit(lambda x: x * 3.0).lower(1.0), path)
  assert float(step_cache._load(path, jax.devices()[:1])(3.0)) == 9.0


def test_a_step_loads_onto_its_mesh_devices_in_mesh_order(tmp_path):
  """A mesh of some devices (tests compare 1 with N; a job may use part of a host) in an order of its own."""
  from etils import epath
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  mesh = Mesh(np.array([jax.devices()[3], jax.devices()[1]]), (parallel.DATA,))
  sharding = NamedSharding(mesh, PartitionSpec(parallel.DATA))
  x = jax.device_put(np.arange(4.0), sharding)
  path = epath.Path(tmp_path) / 'step.jaxstep'
  step_cache._compile_and_save(None, jax.jit(lambda v: v * 2.0, out_shardings=sharding).lower(x), path)
  y = step_cache._load(path, list(mesh.devices.flat))(x)
  np.testing.assert_array_equal(np.asarray(y), np.arange(4.0) * 2.0)
  assert [s.device for s in y.addressable_shards] == [jax.devices()[3], jax.devices()[1]]


def test_off_switch_and_no_jax_cache_mean_no_step_files(tmp_path, jax_cache_settings, step_cache_on):
  config = _cached_vae(tmp_path, compiled_step_cache=False)
  assert step_cache.directory(config) is None  # jax's cache is not on yet: Trainer turns it on
  train(config, str(tmp_path / 'run'))
  assert not _steps(tmp_path)


def _key_inputs(config, devices=None, batch=16):
  family = get_family(config)
  mesh = parallel.make_mesh(devices)
  state = jax.eval_shape(lambda r: family.init(r, (8, 8, 1)), jax.random.PRNGKey(0))
  images = jax.ShapeDtypeStruct((1, batch, 8, 8, 1), np.float32, sharding=parallel.replicated(mesh))
  return config, family, mesh, (state, {'image': images})


def test_the_key_changes_with_whatever_fixes_the_program(monkeypatch):
  from gen_jax.models import forms
  base = step_cache.step_key(*_key_inputs(tiny_vae_config()))
  assert base == step_cache.step_key(*_key_inputs(tiny_vae_config()))
  changed = {
      'config': step_cache.step_key(*_key_inputs(tiny_vae_config(**{'optim.learning_rate': 3e-4}))),
      'batch shape': step_cache.step_key(*_key_inputs(tiny_vae_config(), batch=8)),
      'devices': step_cache.step_key(*_key_inputs(tiny_vae_config(), devices=jax.devices()[:2])),
  }
  with forms.use_forms(forms.LAX if forms.forms() != forms.LAX else forms.XLA_CPU):
    changed['layer forms'] = step_cache.step_key(*_key_inputs(tiny_vae_config()))
  monkeypatch.setenv('GEN_JAX_LAYER_FORMS', 'lax' if forms.forms() != forms.LAX else 'xla_cpu')
  changed['GEN_JAX_LAYER_FORMS'] = step_cache.step_key(*_key_inputs(tiny_vae_config()))
  monkeypatch.delenv('GEN_JAX_LAYER_FORMS')
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_enable_fast_math=true')
  changed['XLA_FLAGS'] = step_cache.step_key(*_key_inputs(tiny_vae_config()))
  assert all(key != base for key in changed.values()), changed
  assert len(set(changed.values())) - 1 <= len(changed)  # both forms switches may give one key


def test_a_module_loaded_from_outside_the_installation_is_part_of_the_key(tmp_path, monkeypatch):
  module_file = tmp_path / 'my_family.py'

  def family_from_file():
    module_file.write_text(source)
    spec = importlib.util.spec_from_file_location('my_family', module_file)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, 'my_family', module)
    spec.loader.exec_module(module)
    return module.MyVAE(tiny_vae_config())

  source = 'from gen_jax.families.vae import VAEFamily\nclass MyVAE(VAEFamily):\n  pass\n'
  family_from_file()
  before = step_cache._sources_digest()
  family_from_file()
  assert before == step_cache._sources_digest()
  source += 'SCALE = 2.0\n'
  family_from_file()
  assert step_cache._sources_digest() != before


def test_only_families_fixed_by_their_config_are_cached():
  assert step_cache.cacheable(get_family(tiny_vae_config()))
  assert step_cache.cacheable(get_family(tiny_ddpm_config()))
  assert not step_cache.cacheable(get_family(tiny_text_config()))  # caption tables bound from the data
  defined_in_a_notebook = type('NotebookVAE', (VAEFamily,), {'__module__': 'a_cell_of_no_file'})
  assert not step_cache.cacheable(defined_in_a_notebook(tiny_vae_config()))
  derived_from_it = type('DerivedVAE', (defined_in_a_notebook,), {'__module__': __name__})
  assert not step_cache.cacheable(derived_from_it(tiny_vae_config()))


def test_only_the_most_recently_used_steps_are_kept(tmp_path):
  from etils import epath
  names = [f'p0-{i:02d}.jaxstep' for i in range(step_cache.KEEP + 3)]
  for i, name in enumerate(names):
    (tmp_path / name).write_bytes(b'x')
    os.utime(tmp_path / name, (1000 + i, 1000 + i))
  (tmp_path / 'p1-00.jaxstep').write_bytes(b'another process keeps its own')
  (tmp_path / '.p0-00.jaxstep.1.tmp').write_bytes(b'left by a killed run')
  (tmp_path / '.p0-01.jaxstep.2.tmp').write_bytes(b'being written now')
  os.utime(tmp_path / '.p0-00.jaxstep.1.tmp', (1000, 1000))
  step_cache._prune(epath.Path(tmp_path), 'p0')
  assert sorted(p.name for p in tmp_path.glob('*.jaxstep')) == [*names[3:], 'p1-00.jaxstep']
  assert [p.name for p in tmp_path.glob('.*.tmp')] == ['.p0-01.jaxstep.2.tmp']

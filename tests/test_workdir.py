"""Workdirs on Cloud Storage: train -> resume -> sample -> eval with a gs:// workdir against a real GCS JSON API
server on 127.0.0.1 (tests/gcs_emulator.py says which layer reaches it how)."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from etils import epath

from gen_jax import workdir as workdir_lib
from gen_jax.evaluate import evaluate
from gen_jax.sample import sample
from gen_jax.train import train
from tests.gcs_emulator import emulated_gcs
from tests.helpers import host_tree, tiny_vae_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_EVAL = {'eval.num_samples': 40, 'eval.batch_size': 16, 'eval.kid_subsets': 4, 'eval.kid_subset_size': 20,
              'eval.is_splits': 4, 'eval.bits_per_dim': False}


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  with emulated_gcs(str(tmp_path_factory.mktemp('gcs'))) as emulator:
    yield emulator


def test_local_paths_are_absolute_and_written_atomically(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  p = workdir_lib.path('run', 'eval', 'x.json')
  assert os.fspath(p) == str(tmp_path / 'run' / 'eval' / 'x.json')
  workdir_lib.write_json(p, {'a': 1})
  assert workdir_lib.read_json(p) == {'a': 1} and os.listdir(tmp_path / 'run' / 'eval') == ['x.json']
  assert os.fspath(workdir_lib.path('gs://b/run', 'eval')) == 'gs://b/run/eval'


def test_train_resume_sample_and_eval_with_a_gs_workdir(gcs, tmp_path_factory, classifier_cache, monkeypatch):
  bucket = gcs.create_bucket('gen-jax-runs')
  workdir = f'{bucket}/vae'
  reference = train(tiny_vae_config(total_steps=8), str(tmp_path_factory.mktemp('local_vae')))  # no grids
  cwd = tmp_path_factory.mktemp('cwd')
  monkeypatch.chdir(cwd)  # anything written to a local path by mistake would land here

  def preempt_at_step_3(step):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)

  assert train(tiny_vae_config(total_steps=8), workdir, hooks=[preempt_at_step_3]).preempted  # saves step 3
  resumed = train(tiny_vae_config(total_steps=8, sample_every=8), workdir)  # restores step 3 from the bucket
  assert sorted(resumed.history) == list(range(4, 9))
  for x, y in zip(jax.tree.leaves(host_tree(reference.state.params)), jax.tree.leaves(host_tree(resumed.state.params)),
                  strict=True):
    np.testing.assert_array_equal(x, y)  # resume from gs:// == uninterrupted local run

  config = tiny_vae_config(total_steps=8, **SMALL_EVAL, **{'classifier.cache_dir': classifier_cache,
                                                           'eval.cache_dir': classifier_cache})
  assert sample(config, workdir) == f'{workdir}/samples/sample_000008.npz'
  [report] = evaluate(config, workdir, 'configs/vae_digits.py')

  names = gcs.object_names('gen-jax-runs')
  for expected in ['vae/train_time.json', 'vae/samples/step_000008.png', 'vae/samples/sample_000008.npz',
                   'vae/samples/sample_000008.png', 'vae/eval/step_000008.json']:
    assert expected in names
  for events in ('vae/events.out.tfevents.', 'vae/eval/events.out.tfevents.'):  # training scalars + sample grids
    assert any(n.startswith(events) for n in names)
  for step in (3, 4, 8):
    assert any(n.startswith(f'vae/checkpoints/{step}/state/') for n in names)  # TensorStore's array data
    assert any(n.startswith(f'vae/checkpoints/{step}/data') for n in names)  # the input pipeline's position
  saved = json.loads(epath.Path(f'{workdir}/eval/step_000008.json').read_text())
  assert saved['metrics'] == pytest.approx(report['metrics']) and saved['workdir'] == workdir
  assert np.load(epath.Path(f'{workdir}/samples/sample_000008.npz').open('rb'))['images'].shape == (64, 8, 8, 1)
  assert os.listdir(cwd) == []  # nothing went to a local path

  # A damaged latest checkpoint in the bucket: moved aside (objects copied, then deleted) and resumed from step 4.
  step_8 = {n: size for n, size in gcs.objects('gen-jax-runs').items() if n.startswith('vae/checkpoints/8/')}
  damaged = max((n for n in step_8 if '/state/' in n), key=step_8.get)
  path = epath.Path(f'{bucket}/{damaged}')
  path.write_bytes(path.read_bytes()[:1000])
  again = train(tiny_vae_config(total_steps=8), workdir)
  assert sorted(again.history) == [5, 6, 7, 8]
  names = gcs.object_names('gen-jax-runs')
  assert {n.replace('vae/checkpoints/', 'vae/checkpoints_corrupt/') for n in step_8} <= set(names)  # all kept
  for x, y in zip(jax.tree.leaves(host_tree(reference.state.params)), jax.tree.leaves(host_tree(again.state.params)),
                  strict=True):
    np.testing.assert_array_equal(x, y)


def test_xla_compilation_cache_in_a_gs_workdir(gcs):
  """jax's persistent cache writes through etils.epath too (checked in a fresh process: the setting is global)."""
  bucket = gcs.create_bucket('gen-jax-xla')
  code = ('import jax, jax.numpy as jnp; from gen_jax.compiler import setup_compilation_cache; '
          'from ml_collections import ConfigDict; '
          f'setup_compilation_cache(ConfigDict({{"compilation_cache_dir": "workdir"}}), "{bucket}/run"); '
          'jax.config.update("jax_persistent_cache_min_compile_time_secs", 0); '  # cache even a tiny program
          'jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()')
  env = {**os.environ, **gcs.environment(), 'JAX_COMPILATION_CACHE_DIR': ''}
  subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, check=True, timeout=300)
  assert any(n.startswith('run/xla_cache/') for n in gcs.object_names('gen-jax-xla'))

"""Two processes on 127.0.0.1 (2 CPU devices each) must train and evaluate exactly what one process does."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from gen_jax.evaluate import evaluate
from gen_jax.train import train
from tests.helpers import apply_overrides, host_tree, tiny_vae_config
from tests.test_evaluate import SMALL_EVAL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path, classifier_cache):
  coordinator = f'127.0.0.1:{free_port()}'
  out = str(tmp_path / 'result')
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2', 'PYTHONPATH': ROOT}
  procs = [subprocess.Popen([sys.executable, '-m', 'tests.multihost_worker', coordinator, str(i),
                             str(tmp_path / 'workdir'), out, classifier_cache], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    logs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  for i, p in enumerate(procs):
    assert p.returncode == 0, f'process {i} failed:\n{logs[i][-4000:]}'

  single = train(tiny_vae_config(total_steps=6, checkpoint_every=6, sample_every=6), str(tmp_path / 'single'))
  expected = jax.tree.leaves(host_tree(single.state.params))
  for i in range(2):  # both processes hold the same replicated params, equal to the 1-process run
    with np.load(f'{out}.{i}.npz') as got:
      for j, leaf in enumerate(expected):
        np.testing.assert_allclose(got[f'arr_{j}'], leaf, atol=1e-5)
    with open(f'{out}.{i}.json') as f:
      history = json.load(f)
    for step, metrics in single.history.items():
      np.testing.assert_allclose(history[str(step)]['loss'], metrics['loss'], rtol=1e-5)
      np.testing.assert_allclose(history[str(step)]['grad_norm'], metrics['grad_norm'], rtol=1e-5)
  # Only process 0 writes samples; both took part in the checkpoint.
  assert os.path.exists(tmp_path / 'workdir' / 'samples' / 'step_000006.png')
  assert os.path.isdir(tmp_path / 'workdir' / 'checkpoints' / '6')

  config = apply_overrides(tiny_vae_config(total_steps=6), {**SMALL_EVAL, 'classifier.cache_dir': classifier_cache})
  [report] = evaluate(config, str(tmp_path / 'single'))
  for i in range(2):  # the 2-process evaluation (4 devices) equals the 1-process one (8 devices)
    with open(f'{out}.{i}.eval.json') as f:
      metrics = json.load(f)
    for key, value in report['metrics'].items():
      np.testing.assert_allclose(metrics[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
  assert os.path.exists(tmp_path / 'workdir' / 'eval' / 'step_000006.json')

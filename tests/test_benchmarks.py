"""The prepared benchmark scripts run end to end here, so a lent GPU's few minutes are never spent on a broken one."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def json_lines(text: str) -> list[dict]:
  return [json.loads(line) for line in text.splitlines() if line.startswith('{')]


def test_gpu_suite_smoke_runs_every_section_on_this_backend():
  # on one device, as on the one lent GPU (with the tests' 8 CPU devices a one-device-only failure went unseen)
  one_device = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split() if 'device_count' not in f)
  run = subprocess.run(['bash', 'benchmarks/gpu_suite.sh', '--smoke'], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, 'PY': sys.executable, 'XLA_FLAGS': one_device}, timeout=600)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  for section in ('## 1.', '## 2.', '## 3.', '## 4.', '## 5.', '## 6.'):
    assert section in run.stdout
  assert '== suite finished: 0 failure(s)' in run.stdout and 'FAILED' not in run.stdout
  results = json_lines(run.stdout)
  float32, bfloat16, remat, cached = results[:4]
  assert (float32['dtype'], bfloat16['dtype'], remat['remat'], float32['remat']) == ('float32', 'bfloat16', True, False)
  assert remat['gflop_per_step'] > float32['gflop_per_step']  # the rematerialised blocks are recomputed
  assert cached['compile_s'] < float32['compile_s']  # the second compile came from the persistent cache
  assert results[4]['images_per_s'] > 0 and 'keeps_up' in results[5]
  assert results[6]['steps_per_call'] == 2  # the smoke run skips K=1 (every other run's path)
  forms = results[7]
  assert forms['b'] == 'forms=lax' and forms['a_ms'] > 0 and forms['b_ms'] > 0


def test_startup_benchmark_prints_its_breakdown():
  run = subprocess.run([sys.executable, 'benchmarks/startup.py', '--repeats', '1'], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  [result] = json_lines(run.stdout)
  assert result['run_s'] > result['bare_jax_s'] > 0 and result['ratio'] > 1
  assert result['breakdown_s']['XLA compiles'] > 0 and 'jit(per_device)' in result['compile_s_per_program']
  assert result['overlapped_s'] > 0  # the train step was compiled on the compile-ahead thread
  # the rows account for one run, not more, once the overlapped compiles are taken out
  assert sum(result['breakdown_s'].values()) - result['overlapped_s'] < 1.5 * result['run_s']

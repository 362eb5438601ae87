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
  float32, bfloat16, remat, cached, step_cached, no_autotune = results[:6]
  assert (float32['dtype'], bfloat16['dtype'], remat['remat'], float32['remat']) == ('float32', 'bfloat16', True, False)
  assert remat['gflop_per_step'] > float32['gflop_per_step']  # the rematerialised blocks are recomputed
  # the cold compile's phases and XLA's profile of it; the second compile came from the persistent cache
  assert 0 < float32['trace_s'] + float32['lower_s'] + float32['xla_compile_s'] <= float32['compile_s']
  assert len(float32['compile_profile_s']) == 25 and 'compile profile:' in run.stdout
  assert cached['compile_s'] < float32['compile_s'] and cached['xla_compile_s'] < float32['xla_compile_s'] / 2
  assert (float32['step_cache'], cached['step_cache'], step_cached['step_cache']) == ('saved', 'unused', 'hit')
  assert step_cached['trace_s'] == 0 and step_cached['step_ms'] > 0  # loaded whole: nothing traced
  assert no_autotune['xla_compile_s'] > 0 and no_autotune['step_ms'] > 0
  assert results[6]['images_per_s'] > 0 and 'keeps_up' in results[7]
  assert results[8]['steps_per_call'] == 2  # the smoke run skips K=1 (every other run's path)
  forms = results[9]
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


def test_compile_profile_charges_each_event_its_self_time_per_thread():
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  from compile_profile import self_times
  thread = lambda tid, name: {'ph': 'M', 'pid': 1, 'tid': tid, 'name': 'thread_name', 'args': {'name': name}}
  event = lambda tid, name, ts, dur: {'ph': 'X', 'pid': 1, 'tid': tid, 'name': name, 'ts': ts, 'dur': dur}
  events = [thread(7, 'tf_pool/123'), thread(8, 'python'),
            event(7, 'compile', 0, 10e6), event(7, 'pass', 2e6, 3e6), event(7, 'pass', 6e6, 2e6),
            event(7, 'leaf', 6.5e6, 1e6),  # nested two deep
            event(8, 'wait', 0, 4e6), event(8, 'compile', 5e6, 1e6),  # same name on another thread: its own row
            # a child that ends a rounding error after its parent: the next event is still its parent's sibling
            event(9, 'outer', 0, 2e6), event(9, 'inner', 1e6, 1e6 + 0.5), event(9, 'next', 2e6, 1e6)]
  self_s, total_s, count = self_times(events)
  assert self_s == {('tf_pool', 'compile'): 5.0, ('tf_pool', 'pass'): 4.0, ('tf_pool', 'leaf'): 1.0,
                    ('python', 'wait'): 4.0, ('python', 'compile'): 1.0,
                    ('9', 'outer'): 1.0, ('9', 'inner'): 1.0, ('9', 'next'): 1.0}
  assert total_s[('tf_pool', 'pass')] == 5.0 and count[('tf_pool', 'pass')] == 2


def test_compile_profile_without_a_profiler_still_runs_the_block(monkeypatch, capsys):
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  import jax
  from compile_profile import traced_events

  def no_profiler(*args, **kwargs):
    raise RuntimeError('no CUPTI')
  monkeypatch.setattr(jax.profiler, 'start_trace', no_profiler)
  ran = []
  with traced_events() as events:
    ran.append(True)
  assert ran and events == [] and 'did not start' in capsys.readouterr().out


def test_op_profile_occupancy_shares_the_span_by_busy_thread_count():
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  from op_profile import occupancy
  # thread A busy 0-6 (two overlapping events count once), thread B 2-4 and 8-10: span 0-10
  shares = occupancy([[(0, 4), (3, 6)], [(2, 4), (8, 10)]])
  assert shares == {0: 0.2, 1: 0.6, 2: 0.2}
  assert occupancy([[], []]) == {}


def test_unet_phases_splits_the_backward_into_its_halves():
  flags = ['--rounds', '1', '--steps', '1', '--ch', '32', '--batch', '2', '--size', '8', '--res_blocks', '1']
  run = subprocess.run([sys.executable, 'benchmarks/unet_phases.py', *flags], cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  ms = json.loads(run.stdout.strip().splitlines()[-1])['median_ms']['jax']
  assert all(ms[phase] > 0 for phase in ('forward', 'forward_backward', 'forward_input_backward'))
  assert abs(ms['backward'] - (ms['forward_backward'] - ms['forward'])) < 0.2  # medians of the round's differences
  assert abs(ms['kernel_gradients'] + ms['input_gradient_chain'] - ms['backward']) < 0.2

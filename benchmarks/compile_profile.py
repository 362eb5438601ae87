"""Where a step's compile goes: XLA's own phases, from jax's profiler (`train_throughput.py --profile_compile N`).

Issue 14 asks for a profile before a cure for the `ddpm_cifar` step's compile (42.9 s cold, 4.8 s from the
persistent cache on an H200). `train_throughput.py` always splits its compile into JAX tracing, MLIR lowering and
XLA's compile (jax.monitoring's duration events); with --profile_compile the compile runs under jax's profiler (XLA's
trace events, no Python tracer) and this module totals the events. They nest (a pass inside the pipeline inside the
compile) and run on several threads (the caller waits while a compile thread works and hands code generation to a
pool), so each event is charged its self time on its thread: its duration less that of the events nested in it. A
waiting event keeps its wait as self time (e.g. the Python thread's `backend_compile_and_load`), hence the thread
column; summed over threads the figures are thread-seconds, not wall time. Names are the backend's own (e.g. `HLO
passes ...`, `FusionCompiler::Compile` and the codegen pool's tasks on the CPU; autotuning and ptxas on GPUs).
"""

from __future__ import annotations

import collections
import contextlib
import glob
import gzip
import json
import os
import tempfile

import jax

# jax.monitoring duration event -> the compile phase it times
JAX_EVENTS = {'/jax/core/compile/jaxpr_trace_duration': 'trace_s',
              '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower_s',
              '/jax/core/compile/backend_compile_duration': 'xla_compile_s'}


@contextlib.contextmanager
def compile_phases():
  """Yields a Counter of seconds per phase (JAX_EVENTS' values) for the compiles inside the block (this thread's and
  others': run nothing else meanwhile)."""
  phases = collections.Counter({phase: 0.0 for phase in JAX_EVENTS.values()})

  def on_duration(event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event in JAX_EVENTS:
      phases[JAX_EVENTS[event]] += duration

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  try:
    yield phases
  finally:
    unregister = getattr(jax.monitoring, 'unregister_event_duration_listener', None)  # not in every jax
    if unregister is not None:
      unregister(on_duration)


def self_times(events: list[dict]) -> tuple[dict, dict, dict]:
  """Self and inclusive seconds and counts per (thread name, event name), from complete ('X') trace events (times in
  microseconds); a thread name is its pool's (the part before '/')."""
  thread_names = {(e.get('pid'), e.get('tid')): e['args']['name'].split('/')[0]
                  for e in events if e.get('ph') == 'M' and e.get('name') == 'thread_name'}
  by_thread = collections.defaultdict(list)
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e:
      by_thread[e.get('pid'), e.get('tid')].append(e)
  self_s, total_s, count = collections.Counter(), collections.Counter(), collections.Counter()
  for thread, thread_events in by_thread.items():
    thread_name = thread_names.get(thread, str(thread[1]))
    thread_events.sort(key=lambda e: (e['ts'], -e['dur']))
    stack = []  # open events on this thread: [end_us, key]
    for e in thread_events:
      start, dur, key = e['ts'], e['dur'], (thread_name, e['name'])
      while stack and stack[-1][0] <= start:
        stack.pop()
      end = min(start + dur, stack[-1][0]) if stack else start + dur  # a child ends with its parent (rounding)
      if stack:  # nested: its time is not its parent's own
        self_s[stack[-1][1]] -= (end - start) / 1e6
      self_s[key] += (end - start) / 1e6
      total_s[key] += dur / 1e6
      count[key] += 1
      stack.append([end, key])
  return dict(self_s), dict(total_s), dict(count)


@contextlib.contextmanager
def traced_events():
  """Yields a list that holds, after the block, the trace events of everything run inside it (jax's profiler; no
  Python tracer, whose frames would slow tracing and swamp the table). A profiler that fails (e.g. no CUPTI on a
  GPU host) or fails to write its trace leaves the list empty and the block runs as without it: a prepared run keeps
  its other figures."""
  events = []
  with tempfile.TemporaryDirectory() as log_dir:
    try:
      options = jax.profiler.ProfileOptions()
      options.python_tracer_level = 0
      options.enable_hlo_proto = False  # not needed here; for a large program, a large proto
      if hasattr(options, 'device_tracer_level'):  # host events only: no CUPTI, less overhead on a GPU
        options.device_tracer_level = 0
      jax.profiler.start_trace(log_dir, create_perfetto_trace=True, profiler_options=options)
    except Exception as e:  # pylint: disable=broad-except
      print(f'compile profile: the profiler did not start ({e!r}); timing without it')
      yield events
      return
    try:
      yield events
    finally:
      try:
        jax.profiler.stop_trace()
      except Exception as e:  # pylint: disable=broad-except
        print(f'compile profile: the profiler did not stop cleanly ({e!r})')
    try:
      [path] = glob.glob(os.path.join(log_dir, '**', 'perfetto_trace.json.gz'), recursive=True)
      with gzip.open(path) as f:
        trace = json.load(f)
    except Exception as e:  # pylint: disable=broad-except
      print(f'compile profile: no readable trace ({e!r})')
      return
  events.extend(trace['traceEvents'] if isinstance(trace, dict) else trace)


def print_compile_profile(events: list[dict], top: int) -> dict[str, float]:
  """Prints the `top` (thread, event) pairs by self time; returns them as {'thread: event': seconds}."""
  self_s, total_s, count = self_times(events)
  keys = sorted(self_s, key=self_s.get, reverse=True)[:top]
  width = max((len(thread) for thread, _ in keys), default=0)
  print(f'compile profile: {sum(self_s.values()):.2f} thread-seconds of traced events, top {len(keys)} by self time')
  for key in keys:
    print(f'  {self_s[key]:8.3f} s self {total_s[key]:8.3f} s incl  x{count[key]:<5d} {key[0]:{width}s}  {key[1]}')
  return {f'{thread}: {name}': round(self_s[thread, name], 3) for thread, name in keys}

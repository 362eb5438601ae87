"""Start-up cost of a short training run, against a bare `import jax` plus one jitted op on the same machine.

  python benchmarks/startup.py [--config configs/gan_mlp_digits.py] [--steps 1] [--repeats 3]

Each figure is the median of --repeats fresh processes (no persistent XLA cache: every compile is cold). Then one
instrumented run in this process prints where the time goes: imports, JAX tracing / MLIR lowering / XLA compiles
(from `jax.monitoring`'s duration events), the rest of train(), and how much of the compiling ran on the
compile-ahead thread, overlapping the rest. Prints readable lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BARE_JAX = 'import jax, jax.numpy as jnp; jax.jit(lambda x: x + 1)(jnp.ones(3)).block_until_ready()'
# compile phase (benchmarks/compile_profile.py's JAX_EVENTS, which name jax.monitoring's events) -> breakdown row
PHASE_ROWS = {'trace_s': 'JAX tracing (jaxprs)', 'lower_s': 'lowering to MLIR', 'xla_compile_s': 'XLA compiles'}


def wall_seconds(argv: list[str], env: dict) -> float:
  start = time.perf_counter()
  subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  return time.perf_counter() - start


def run_command(config: str, steps: int, workdir: str) -> list[str]:
  return [sys.executable, 'main.py', '--config', config, '--workdir', workdir, f'--config.total_steps={steps}']


def timed_processes(args, env) -> dict[str, float]:
  bare, runs = [], []
  for _ in range(args.repeats):
    bare.append(wall_seconds([sys.executable, '-c', BARE_JAX], env))
    with tempfile.TemporaryDirectory() as workdir:
      runs.append(wall_seconds(run_command(args.config, args.steps, workdir), env))
  return {'bare_jax_s': statistics.median(bare), 'run_s': statistics.median(runs)}


def breakdown(args) -> dict[str, float]:
  """One run inside this process; durations in seconds per row."""
  rows, counts, per_program = collections.Counter(), collections.Counter(), collections.Counter()
  ahead = collections.Counter()  # seconds per event row spent on train.Trainer.compile_ahead's thread
  start = time.perf_counter()
  import jax
  rows['import jax'] = time.perf_counter() - start
  from compile_profile import JAX_EVENTS  # imports jax: after timing its import

  def on_duration(event: str, duration: float, fun_name: str = '?', **kwargs) -> None:
    del kwargs
    if event in JAX_EVENTS:
      row = PHASE_ROWS[JAX_EVENTS[event]]
      rows[row] += duration
      if threading.current_thread().name.startswith('compile_ahead'):
        ahead[row] += duration
      counts[row] += 1
      if JAX_EVENTS[event] == 'xla_compile_s':
        per_program[fun_name] += duration

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  t = time.perf_counter()
  from gen_jax import train as train_lib
  rows['other imports (gen_jax, flax, optax, orbax, grain, ...)'] = time.perf_counter() - t
  config = importlib.import_module(args.config.removesuffix('.py').replace('/', '.')).get_config()
  config.total_steps = args.steps
  t = time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir:
    train_lib.train(config, workdir)
  train_s = time.perf_counter() - t
  # Work on the compile-ahead thread overlaps the main thread's, so only the main thread's is taken off the wall time.
  on_main = sum(rows[r] - ahead[r] for r in PHASE_ROWS.values())
  rows['rest of train(): data, waiting for compiles ahead, running, files'] = train_s - on_main
  return dict(rows), dict(counts), dict(per_program), sum(ahead.values())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/gan_mlp_digits.py')
  parser.add_argument('--steps', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_COMPILATION_CACHE')}
  sys.path.insert(0, ROOT)
  os.chdir(ROOT)
  times = timed_processes(args, env)
  ratio = times['run_s'] / times['bare_jax_s']
  print(f'bare `import jax` + one jitted op: {times["bare_jax_s"]:.2f} s;  `main.py --config {args.config} '
        f'--config.total_steps={args.steps}`: {times["run_s"]:.2f} s  ->  {ratio:.1f}x  (median of {args.repeats})')
  rows, counts, per_program, overlapped = breakdown(args)
  print('where one run\'s time goes (in-process, so Python start-up and main.py\'s flag parsing are not in it):')
  for row, seconds in rows.items():
    print(f'  {row:<55} {seconds:6.2f} s' + (f'  ({counts[row]} programs)' if row in counts else ''))
  print(f'  {"of the rows above: on the compile-ahead thread, overlapping the rest":<55} {overlapped:6.2f} s')
  print('  XLA compile per program: ' + ', '.join(f'{name} {seconds:.2f} s' for name, seconds in
                                                  sorted(per_program.items(), key=lambda kv: -kv[1])))
  print(json.dumps({'config': args.config, 'steps': args.steps, **times, 'ratio': round(ratio, 2),
                    'breakdown_s': {k: round(v, 3) for k, v in rows.items()}, 'overlapped_s': round(overlapped, 3),
                    'programs': counts,
                    'compile_s_per_program': {k: round(v, 3) for k, v in per_program.items()}}))


if __name__ == '__main__':
  main()

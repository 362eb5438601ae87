"""Training throughput of any config: compile time, steps/s and images/s of the compiled train step.

  python benchmarks/train_throughput.py --config configs/vae_digits.py [--config.global_batch_size=256]
      [--steps 50] [--image_shape 32,32,3] [--profile_compile 20]

Uses synthetic images in [-1, 1] (speed only, no data loading) of the config's dataset shape, or of
--image_shape for datasets not prepared on this machine. The compile time is split into JAX tracing, MLIR lowering
and XLA's compile (on a persistent-cache hit: loading the executable); --profile_compile prints
where XLA's compile went. Prints readable lines, then one JSON line.
"""

import concurrent.futures
import contextlib
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402
import synthetic  # noqa: E402  (benchmarks/synthetic.py)
from absl import app, flags  # noqa: E402
from compile_profile import compile_phases, print_compile_profile, traced_events  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from gen_jax import compiler, parallel, step_cache  # noqa: E402
from gen_jax.families import get_family  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_integer('steps', 30, 'Timed steps (after the warm-up calls).')
flags.DEFINE_integer('warmup', 4, 'Untimed calls before the timed ones.')
flags.DEFINE_string('image_shape', '', 'h,w,c; default: the shape of the config\'s dataset.')
flags.DEFINE_string('compilation_cache_dir', '', 'Persistent XLA cache dir: run twice for cold vs cached compile.')
flags.DEFINE_bool('step_cache', False, 'With --compilation_cache_dir: compile through gen_jax.step_cache (the whole '
                  'step kept, found before tracing), as the training loop does; JSON step_cache: hit / saved.')
flags.DEFINE_integer('profile_top', 0, 'Also print the N most costly XLA ops (run with '
                     'XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true; see benchmarks/op_profile.py).')
flags.DEFINE_integer('profile_compile', 0, 'Also compile under jax\'s profiler and print the N XLA events that took '
                     'the most time (see benchmarks/compile_profile.py).')
flags.DEFINE_string('hlo_out', '', 'Also write the compiled step\'s optimised HLO to this file.')
flags.DEFINE_bool('per_call', False, 'Wait for each call and also report the median call (as the PyTorch peers do); '
                  'off: calls are dispatched back to back, as the training loop does.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.compilation_cache_dir:
    compiler.use_persistent_cache(FLAGS.compilation_cache_dir)
  mesh = parallel.make_mesh()
  shape, k, batch = synthetic.image_shape(config, FLAGS.image_shape), config.steps_per_call, config.global_batch_size
  family = get_family(config)
  state, device_batch = synthetic.train_setup(family, config, mesh, shape)
  step = parallel.make_sharded_train_step(family.train_step, mesh, family.batches_per_step)

  # the file's name, for the report (outside the timing: compile_step builds the same key again, as training does)
  cached = step_cache.step_path(config, family, mesh, (state, device_batch)) if FLAGS.step_cache else None
  with compile_phases() as phases, (traced_events() if FLAGS.profile_compile else contextlib.nullcontext()) as events:
    t0 = time.perf_counter()
    if FLAGS.step_cache:
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        got = step_cache.compile_step(pool, step, (state, device_batch), config, family, mesh).result()
      compiled = got.compiled
      step_cache_result = ('off' if cached is None else 'hit' if got.loaded_from else 'saved' if cached.exists()
                           else 'not saved')
    else:
      compiled, step_cache_result = step.lower(state, device_batch).compile(), 'unused'
    compile_s = time.perf_counter() - t0
  if FLAGS.hlo_out:
    with open(FLAGS.hlo_out, 'w') as f:
      f.write(compiled.as_text())
  flops = (compiled.cost_analysis() or {}).get('flops', float('nan'))
  memory = compiled.memory_analysis()  # XLA's buffer assignment: what the step needs beyond its arguments
  temp_mib = getattr(memory, 'temp_size_in_bytes', 0) / 2**20
  for _ in range(FLAGS.warmup):  # dispatched as the timed calls are: the threads that run those calls fill their
    state, metrics = compiled(state, device_batch)  # malloc arenas with the step's temporaries here
  jax.block_until_ready(metrics)
  calls = max(1, FLAGS.steps // k)
  call_s = []
  usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  for _ in range(calls):
    state, metrics = compiled(state, device_batch)
    if FLAGS.per_call:
      jax.block_until_ready(metrics)
      call_s.append(time.perf_counter() - t0 - sum(call_s))
  jax.block_until_ready(metrics)
  elapsed, usage = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
  steps_per_s = calls * k / elapsed
  result = {'config': config.model.family, 'devices': jax.device_count(), 'platform': jax.devices()[0].platform,
            'global_batch_size': batch, 'image_shape': shape, 'steps_per_call': k,
            'compile_s': round(compile_s, 3), 'step_cache': step_cache_result,
            **{phase: round(s, 3) for phase, s in phases.items()},
            'step_ms': round(1000 / steps_per_s, 3),
            'steps_per_s': round(steps_per_s, 3), 'images_per_s': round(steps_per_s * batch, 1),
            'gflop_per_step': round(flops / k / 1e9, 3),
            'achieved_gflops': round(flops / k / 1e9 * steps_per_s, 2), 'temp_mib': round(temp_mib, 1),
            'remat': bool(config.get('remat', False)), 'dtype': config.model.get('dtype', 'float32'),
            # host-side cost of memory: fresh pages faulted in (and zeroed by the kernel) per step, and kernel time
            'page_faults_per_step': round((usage.ru_minflt - usage0.ru_minflt) / (calls * k)),
            'kernel_ms_per_step': round((usage.ru_stime - usage0.ru_stime) * 1e3 / (calls * k), 1)}
  if call_s:
    result['step_ms_median'] = round(statistics.median(call_s) * 1000 / k, 3)
  stats = jax.local_devices()[0].memory_stats()  # None on the CPU
  if stats and 'peak_bytes_in_use' in stats:
    result['peak_device_mib'] = round(stats['peak_bytes_in_use'] / 2**20, 1)
  if FLAGS.profile_compile:
    result['compile_profile_s'] = print_compile_profile(events, FLAGS.profile_compile)
  print(f"{result['platform']} x{result['devices']}  batch {batch}  {shape}: compile {compile_s:.2f} s "
        f"(trace {phases['trace_s']:.2f}, lower {phases['lower_s']:.2f}, XLA {phases['xla_compile_s']:.2f}; "
        f"step cache: {step_cache_result}), "
        f"{result['step_ms']:.1f} ms/step, {steps_per_s:.2f} steps/s, {result['images_per_s']:.0f} img/s, "
        f"{result['achieved_gflops']} GFLOP/s (XLA cost analysis), temp buffers {temp_mib:.0f} MiB, "
        f"{result['page_faults_per_step']} page faults / {result['kernel_ms_per_step']} ms kernel time per step"
        + (f", peak device memory {result['peak_device_mib']:.0f} MiB" if 'peak_device_mib' in result else ''))
  print(json.dumps(result))
  if FLAGS.profile_top:
    from op_profile import print_op_profile

    print_op_profile(compiled, (state, device_batch), FLAGS.profile_top)


if __name__ == '__main__':
  app.run(main)

"""Cold compile time of each family's init and train step (no persistent cache), for the digits configs.

  python benchmarks/compile_times.py [--root DIR] [--cached] [configs/vae_digits.py ...]

--cached also compiles each config twice more with a fresh persistent cache (as `config.compilation_cache_dir`
does): cold into the cache, then from it (on the CPU those are one-heap programs: gen_jax/compiler.py); with
--step_cache the cold compile also fills gen_jax.step_cache (as training runs do) and a fourth process takes the
step from there (no tracing); the totals (trace + lower + compile or load) are compared.

--root imports gen_jax and configs from another checkout (e.g. `git worktree add /tmp/old <commit>`), so the
same script measures old and new code on the same machine. Each config runs in a fresh process (jax caches
compiled programs in-process). Prints one line per config, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

DEFAULT_CONFIGS = ['configs/vae_digits.py', 'configs/gan_mlp_digits.py', 'configs/dcgan_digits.py',
                   'configs/wgan_gp_digits.py', 'configs/ddpm_digits.py', 'configs/ddpm_text_digits.py']

ONE = r'''
import importlib, json, sys, time
sys.path.insert(0, ROOT)
import jax, numpy as np
sys.path.insert(0, ROOT + '/benchmarks')
import synthetic
from gen_jax import compiler, parallel
from gen_jax.data import make_source
from gen_jax.families import get_family
config = importlib.import_module(CONFIG.removesuffix('.py').replace('/', '.')).get_config()
mesh = parallel.make_mesh()
family = get_family(config)
shape = tuple(make_source(config.data).image_shape)
frozen = jax.device_put(synthetic.bind_and_freeze(family, config), parallel.replicated(mesh))  # text: before init
jit_init = getattr(compiler, 'jit_once', compiler.jit)  # older trees compile init like the step
init = jit_init(lambda r: family.init(r, shape), out_shardings=parallel.replicated(mesh))
t = time.perf_counter(); lowered = init.lower(jax.random.PRNGKey(0)); init_trace = time.perf_counter() - t
t = time.perf_counter(); compiled_init = lowered.compile(); init_compile = time.perf_counter() - t
state = compiled_init(jax.random.PRNGKey(0))
state = state.replace(frozen=frozen)
batch = parallel.to_global_batch(synthetic.host_batch(family, np.random.default_rng(0), family.batches_per_step,
                                                      config.global_batch_size, shape), mesh)
step = parallel.make_sharded_train_step(family.train_step, mesh, family.batches_per_step)
result = {'config': CONFIG, 'init_trace_s': round(init_trace, 2), 'init_compile_s': round(init_compile, 2)}
if STEP_CACHE:  # as the training loop compiles: gen_jax.step_cache (loaded without tracing when it holds the step)
  import concurrent.futures
  from gen_jax import step_cache
  path = step_cache.step_path(config, family, mesh, (state, batch))
  t = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    got = step_cache.compile_step(pool, step, (state, batch), config, family, mesh).result()
  status = 'off' if path is None else 'hit' if got.loaded_from else 'miss'
  result.update(step_total_s=round(time.perf_counter() - t, 2), step_cache=status)
else:
  t = time.perf_counter(); lowered = step.lower(state, batch); step_trace = time.perf_counter() - t
  t = time.perf_counter(); lowered.compile(); step_compile = time.perf_counter() - t
  result.update(step_trace_s=round(step_trace, 2), step_compile_s=round(step_compile, 2),
                step_total_s=round(step_trace + step_compile, 2))
print(json.dumps(result))
'''


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  parser.add_argument('--cached', action='store_true', help='also cold into a persistent cache, then from it')
  parser.add_argument('--step_cache', action='store_true', help='with --cached: also from gen_jax.step_cache')
  parser.add_argument('configs', nargs='*', default=DEFAULT_CONFIGS)
  args = parser.parse_args()
  root = os.path.abspath(args.root)
  results = []
  for config in args.configs:
    result = measure(root, config)
    if result is None:
      continue
    if args.cached:
      with tempfile.TemporaryDirectory() as cache:
        into, cached = measure(root, config, cache, args.step_cache), measure(root, config, cache)
        step_cached = measure(root, config, cache, True) if args.step_cache else None
      if into is None or cached is None:
        continue
      result['cached'] = {'into_cache': into, 'from_cache': cached}
      if step_cached is not None:
        result['cached']['from_step_cache'] = step_cached
    results.append(result)
    print(f"{config:<32} init: trace {result['init_trace_s']:5.2f} s, compile {result['init_compile_s']:5.2f} s   "
          f"step: trace + lower {result['step_trace_s']:5.2f} s, compile {result['step_compile_s']:5.2f} s"
          + (f"   cached (trace + lower + compile): cold {into['step_total_s']:5.2f} s, from jax's cache "
             f"{cached['step_total_s']:5.2f} s (its compile {cached['step_compile_s']:5.2f} s)" if args.cached else '')
          + (f", from the step cache {step_cached['step_total_s']:5.2f} s ({step_cached['step_cache']})"
             if args.cached and step_cached else ''))
  print(json.dumps({'root': root, 'results': results}))


def measure(root: str, config: str, cache: str = '', step_cache: bool = False) -> dict | None:
  """One fresh process's compile times; `cache`: with jax's persistent cache there (every program stored);
  `step_cache`: the step compiled through gen_jax.step_cache (in `cache`)."""
  code = f'ROOT = {root!r}; CONFIG = {config!r}; STEP_CACHE = {step_cache!r}\n' + ONE
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  if cache:
    env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  run = subprocess.run([sys.executable, '-c', code], cwd=root, capture_output=True, text=True, env=env)
  if run.returncode:
    print(f'{config}: failed\n{run.stderr[-2000:]}')
    return None
  return json.loads(run.stdout.strip().splitlines()[-1])


if __name__ == '__main__':
  main()

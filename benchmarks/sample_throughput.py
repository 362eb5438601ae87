"""Sampling throughput of a config's sampler (e.g. 50-step DDIM at batch 64): compile time, s/batch, img/s.

  python benchmarks/sample_throughput.py --config configs/ddpm_cifar.py --config.model.ch=64 \
      --config.model.ch_mult='(1,2,2)' --config.sampler.name=ddim --config.sampler.steps=50 --batch 64 \
      --image_shape 32,32,3

Random (untrained) params: sampling cost does not depend on their values. Prints lines, then one JSON line.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402
import synthetic  # noqa: E402  (benchmarks/synthetic.py)
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from gen_jax import compiler, parallel  # noqa: E402
from gen_jax.families import get_family  # noqa: E402
from gen_jax.sample import example_keys, make_example_sampler  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_integer('batch', 64, 'Images per sampling call (split over devices).')
flags.DEFINE_integer('repeats', 2, 'Timed calls after the compiling one.')
flags.DEFINE_string('image_shape', '32,32,3', 'h,w,c of the samples.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  config = FLAGS.config
  shape = tuple(int(v) for v in FLAGS.image_shape.split(','))
  mesh = parallel.make_mesh()
  family = get_family(config)
  frozen = jax.device_put(synthetic.bind_and_freeze(family, config), parallel.replicated(mesh))
  init = compiler.jit_once(lambda r: family.init(r, shape), out_shardings=parallel.replicated(mesh))
  state = init(jax.random.PRNGKey(0))
  state = state.replace(frozen=frozen)
  cond = synthetic.sample_conditioning(family, FLAGS.batch, config.sample.guidance)  # guided: one doubled call

  def rows(seed):  # what --mode sample / eval feed the sampler: one key (and cond row) per image
    out = {'key': example_keys(seed, FLAGS.batch)}
    if cond is not None:
      out['cond'] = cond
    return jax.tree.map(lambda a: parallel.shard_host_array(jax.device_get(a), mesh), out)

  draw = make_example_sampler(family, mesh)
  t0 = time.perf_counter()
  compiled = draw.lower(state, rows(1)).compile()
  compile_s = time.perf_counter() - t0
  flops = (compiled.cost_analysis() or {}).get('flops', float('nan'))
  jax.block_until_ready(compiled(state, rows(1)))
  times = []
  for i in range(FLAGS.repeats):
    batch_rows = rows(2 + i)
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(state, batch_rows))
    times.append(time.perf_counter() - t0)
  best = min(times)
  sampler = config.get('sampler', {})
  result = {'family': config.model.family, 'sampler': dict(sampler) if sampler else None, 'batch': FLAGS.batch,
            'image_shape': shape, 'devices': jax.device_count(), 'platform': jax.devices()[0].platform,
            'compile_s': round(compile_s, 2), 'batch_s': round(best, 3), 'images_per_s': round(FLAGS.batch / best, 2),
            'achieved_gflops': round(flops / 1e9 / best, 1)}
  print(f"{result['platform']} x{result['devices']}: {FLAGS.batch} images in {best:.2f} s "
        f"({result['images_per_s']} img/s), compile {compile_s:.1f} s, {result['achieved_gflops']} GFLOP/s "
        f"(XLA cost analysis; loop bodies may be counted once)")
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)

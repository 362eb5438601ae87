"""A/B timing of one config's train step under two settings, compiled in one process and timed alternately.

  python benchmarks/ab_step.py --config configs/ddpm_cifar.py --config.model.ch=64 --image_shape 32,32,3 \
      --config.global_batch_size=16 --b forms=lax [--a ...] [--rounds 5 --steps 4]

A setting is a comma list of `forms=NAME` (layers.NAMED), `forms.FIELD=0|1` (one field of layers.Forms),
`threefry=rolled|unrolled|sized` (compiler.unroll_threefry_on_cpu: all rolled, all unrolled, or the default
size rule) and `xla.OPTION=VALUE` (an XLA compiler option on
top of gen_jax.compiler's, e.g. xla.xla_cpu_prefer_vector_width=512). On shared machines whose speed drifts by 10%
from one minute to the next, timing the two compiled steps in alternating rounds makes their ratio trustworthy where two
separate runs are not. Prints each round, the medians and B/A, then one JSON line.
"""

import dataclasses
import json
import os
import statistics
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
from gen_jax.models import layers  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_string('a', '', 'Setting A (default: the current defaults).')
flags.DEFINE_string('b', '', 'Setting B.')
flags.DEFINE_integer('rounds', 5, 'Alternating rounds (A then B in each).')
flags.DEFINE_integer('steps', 3, 'Timed steps per setting per round.')
flags.DEFINE_string('image_shape', '', 'h,w,c; default: the shape of the config\'s dataset.')
flags.mark_flags_as_required(['config'])


THREEFRY = {'rolled': (False, 0), 'unrolled': (True, 0), 'sized': (True, compiler.MIN_UNROLLED_WORDS)}


def parse_setting(text: str) -> tuple[layers.Forms, tuple[bool, int], dict[str, str]]:
  """'forms=lax,forms.tanh_silu=0,threefry=rolled,xla.NAME=V' -> (Forms, unroll_threefry_on_cpu's args, XLA options)."""
  chosen, threefry, options = layers.forms(), THREEFRY['sized'], {}
  for item in filter(None, text.split(',')):
    key, _, value = item.partition('=')
    if key == 'forms':
      if value not in layers.NAMED:
        raise ValueError(f'forms={value!r}: use one of {sorted(layers.NAMED)}')
      chosen = layers.NAMED[value]
    elif key.startswith('forms.'):
      chosen = dataclasses.replace(chosen, **{key[len('forms.'):]: value in ('1', 'true', 'True')})
    elif key == 'threefry':
      if value not in THREEFRY:
        raise ValueError(f'threefry must be one of {sorted(THREEFRY)}, got {value!r}')
      threefry = THREEFRY[value]
    elif key.startswith('xla.'):
      options[key[len('xla.'):]] = {'true': True, 'false': False}.get(value, value)  # XLA wants bools as bools
    else:
      raise ValueError(f'unknown setting {item!r}: use forms=, forms.FIELD=, threefry= or xla.OPTION=')
  return chosen, threefry, options


def main(argv):
  del argv
  config = FLAGS.config
  mesh = parallel.make_mesh()
  family = get_family(config)
  state, batch = synthetic.train_setup(family, config, mesh, synthetic.image_shape(config, FLAGS.image_shape))
  compiled, states = {}, {}
  for name, text in (('A', FLAGS.a), ('B', FLAGS.b)):
    chosen, threefry, options = parse_setting(text)
    compiler.unroll_threefry_on_cpu(*threefry)
    step = parallel.make_sharded_train_step(family.train_step, mesh, family.batches_per_step)
    t0 = time.perf_counter()
    with layers.use_forms(chosen):
      lowered = step.lower(state, batch)
      compiled[name] = lowered.compile({**(compiler.options() or {}), **options}) if options else lowered.compile()
    print(f'{name}: {text or "defaults"} ({chosen}, threefry {threefry}): '
          f'compile {time.perf_counter() - t0:.1f} s', flush=True)
    states[name] = jax.tree.map(lambda x: x.copy(), state)
  compiler.unroll_threefry_on_cpu()
  # Untimed calls of both once both are compiled: warmed up before B's compile, A's first timed round ran 1.2-1.3x
  # slower than its others (the compiler's memory use disturbed the step's; UNet, 2-core Sapphire Rapids).
  for name in ('A', 'B') * 2:
    states[name], metrics = compiled[name](states[name], batch)
    jax.block_until_ready(metrics)
  times = {'A': [], 'B': []}
  for r in range(FLAGS.rounds):
    for name in ('A', 'B'):
      t0 = time.perf_counter()
      for _ in range(FLAGS.steps):
        states[name], metrics = compiled[name](states[name], batch)
      jax.block_until_ready(metrics)
      times[name].append((time.perf_counter() - t0) / FLAGS.steps * 1e3)
    print(f'round {r}: A {times["A"][-1]:.1f} ms  B {times["B"][-1]:.1f} ms  B/A {times["B"][-1] / times["A"][-1]:.3f}',
          flush=True)
  med = {name: statistics.median(v) for name, v in times.items()}
  ratios = [b / a for a, b in zip(times['A'], times['B'])]
  print(f'median A {med["A"]:.1f} ms  B {med["B"]:.1f} ms  B/A {med["B"] / med["A"]:.3f} '
        f'(per-round B/A {min(ratios):.3f}..{max(ratios):.3f})')
  print(json.dumps({'config': config.model.family, 'a': FLAGS.a, 'b': FLAGS.b, 'a_ms': round(med['A'], 2),
                    'b_ms': round(med['B'], 2), 'b_over_a': round(med['B'] / med['A'], 4),
                    'round_ratios': [round(x, 4) for x in ratios]}))


if __name__ == '__main__':
  app.run(main)

"""`jax.jit` with the XLA compiler options gen_jax's compiled steps use; every step, sampler and init goes through it.

On the CPU, jaxlib 0.10 hands convolutions, dots, reductions and elementwise fusions to YNNPACK. For convolutions
that is the slow choice: on a 2-core AMD EPYC a 3x3 64->64 conv at 16x32x32 took 22 ms forward and 134 ms forward +
backward through YNNPACK, 11 ms and 46 ms through XLA's own (Eigen) convolution, and the DDPM UNet train step went
from 3.1 s to 2.0 s (benchmarks/RESULTS.md). Dots and reductions stay with YNNPACK (faster there); elementwise
fusions stay with XLA's emitter (the step was slower with them in YNNPACK). GPU and TPU compiles get no options.
Measured on the other CPU family too (2-core Intel Sapphire Rapids, UNet ch64 b16 step): this set 956 ms, + YNNPACK
elementwise 1056 ms, reductions only 954 ms, oneDNN / XNNPACK convolutions 1008 / 956 ms, jaxlib's defaults 1697 ms:
the same set is the best of those on both, so there is one set.

Programs that run once per process (parameter init) are compiled by `jit_once` at LLVM optimisation level 0 on
the CPU: their compile time dwarfs their run time (ddpm_digits' init: 3.9 s -> 1.5 s to compile, 9 -> 31 ms to
run; the MLP GAN's 0.95 -> 0.58 s). Train steps keep the default level (DCGAN's step ran 108 -> 184 ms at level 1).

Host memory: XLA:CPU's temporaries are split into heaps of at most 16 MiB (xla_multiheap_size_constraint_per_heap),
which `gen_jax.host_memory` has malloc keep and reuse: without both, each DDPM UNet step faulted its 447 MiB of
temporaries in afresh (~120k page faults, ~200 ms of kernel time; the step 0.88x the time with them, 2-core Sapphire
Rapids). But XLA:CPU cannot serialize an executable with more than one heap ("Multiple temp buffer allocations
found"), so the persistent compilation cache skipped every such step and compiled it again in each run. Hence the
policy: with jax's persistent cache on (`config.compilation_cache_dir`, JAX_COMPILATION_CACHE_DIR), whoever turned
it on asked for cached compiles, and programs are compiled as one heap (`UNCACHEABLE` left out) so they are cached;
with it off, runs get the faster split. Its price, 2-core AVX2 EPYC (benchmarks/ab_step.py, one heap / split): UNet
ch 64 b16 step 1.09x, ddpm_digits 1.07x, MLP GAN 1.03x, DCGAN 0.97x (rounds vary by ~10%). For long runs that set
the cache, XLA_FLAGS=--xla_multiheap_size_constraint_per_heap=16777216 keeps the split (steps then not cached).

Random bits (`unroll_threefry_on_cpu`, done on import): jax lowers its Threefry hash on the CPU as a 5-trip while
loop (a smaller program), so every round reads and writes the whole state through memory and nothing fuses with
it; the unrolled lowering jax uses on GPU and TPU gives the same bits from one fused loop. A dropout mask of
16x32x32x64 took 3.7 ms rolled, 1.1 ms unrolled, and the DDPM UNet step (ch 64, batch 16, 17 dropout masks) ran
9.6% faster (benchmarks/ab_step.py, alternating rounds; 2-core AMD EPYC Zen 4).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable

import jax

from gen_jax import host_memory
from gen_jax import workdir as workdir_lib

CPU_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE',
               'xla_multiheap_size_constraint_per_heap': str(host_memory.HEAP_BYTES)}
UNCACHEABLE = ('xla_multiheap_size_constraint_per_heap',)  # left out while the persistent cache is on


_CACHE_TURNED_ON = []  # by use_persistent_cache: known even where jax's setting can't be read back


def persistent_cache_dir() -> str:
  """jax's persistent cache directory ('' when off)."""
  return getattr(jax.config, 'jax_compilation_cache_dir', None) or (_CACHE_TURNED_ON[0] if _CACHE_TURNED_ON else '')


def persistent_cache_on() -> bool:
  return bool(persistent_cache_dir())


def use_persistent_cache(path: str) -> None:
  """Turns on jax's persistent compilation cache in `path` (local or gs://) for programs compiled for >= 0.5 s."""
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  _CACHE_TURNED_ON[:] = [path]


def setup_compilation_cache(config, workdir: str) -> None:
  """Turns on jax's persistent cache where `config.compilation_cache_dir` asks ('workdir': <workdir>/xla_cache).
  Every mode calls it first: before the first compile (jax reads the setting once) and before programs are wrapped
  (`jit` then picks options whose executables can be cached)."""
  cache_dir = config.compilation_cache_dir
  if cache_dir:
    use_persistent_cache(os.fspath(workdir_lib.path(workdir, 'xla_cache') if cache_dir == 'workdir' else cache_dir))


@functools.cache
def options(cacheable: bool = False) -> dict[str, str] | None:
  """The options for the default backend, or None; `cacheable`: only those whose executables XLA can serialize
  for the persistent cache. Asked lazily (the first jit), so that `jax.distributed` can start first; options set in
  XLA_FLAGS win, and an option this XLA no longer knows is left out. On the CPU this also applies
  `host_memory.keep_freed_memory` (before any step runs)."""
  if jax.default_backend() != 'cpu':
    return None
  host_memory.keep_freed_memory()
  flags = os.environ.get('XLA_FLAGS', '')
  chosen = {name: value for name, value in CPU_OPTIONS.items()
            if name not in flags and not (cacheable and name in UNCACHEABLE)}
  if not _known(chosen):  # one compile when all are known; else each on its own
    chosen = {name: value for name, value in chosen.items() if _known({name: value})}
  return chosen or None


def _known(chosen: dict[str, str]) -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=chosen).lower(1.0).compile()
  except Exception:  # pylint: disable=broad-except  # options are experimental; an absent one is not an error
    return False
  return True


# Threefry calls of fewer output words than this keep jax's rolled CPU lowering: XLA fuses an unrolled hash into every
# kernel that reads its bits, so a small mask used by a forward and two backward kernels is compiled three times
# (the MLP GAN step: 27 unrolled-hash kernels, 3.7 s to compile against 2.5 s rolled) and saves little there. The tiny
# calls (key derivations, per-example keys) must stay rolled too: unrolling only those compiled the MLP GAN step slower
# than unrolling every call (2-core EPYC: 12-14 s, against 9-11 s all unrolled and 5.5-7 s with this rule).
MIN_UNROLLED_WORDS = 2**17
THREEFRY_RULE: dict = {}  # the CPU Threefry lowering set last (what programs lowered now get): gen_jax.step_cache


def unroll_threefry_on_cpu(unrolled: bool = True, min_words: int = MIN_UNROLLED_WORDS) -> bool:
  """Lowers Threefry calls of at least `min_words` outputs on the CPU as jax does on GPU/TPU (unrolled; same bits),
  the smaller ones with jax's CPU rule on flattened operands (`_flat_rolled`); unrolled=False: all of them that
  way (for A/B timing). Applies to programs lowered afterwards. False where jax's internals moved (its own rule
  stays)."""
  try:
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32
    # pylint: disable=protected-access
    fast, hash_fn = threefry2x32._threefry2x32_lowering_rule, threefry2x32._threefry2x32_lowering
  except (ImportError, AttributeError):  # a jax without these internals keeps its own (slower, same bits)
    return False
  rolled = mlir.lower_fun(functools.partial(_flat_rolled, hash_fn), multiple_results=True)

  def rule(ctx, *args, **params):
    words = math.prod(ctx.avals_out[0].shape)
    return (fast if unrolled and words >= min_words else rolled)(ctx, *args, **params)

  mlir.register_lowering(threefry2x32.threefry2x32_p, rule, platform='cpu', inline=False)
  THREEFRY_RULE.update(unrolled=unrolled, min_words=min_words)
  return True


def _flat_rolled(hash_fn: Callable, *operands: jax.Array) -> list[jax.Array]:
  """jax's rolled CPU Threefry on 1-D operands, reshaped back: the same bits (the hash is elementwise), but LLVM
  unrolls the rolled loop's kernel over a small multi-dimensional shape into thousands of vector ops, which is slow
  to compile: a bernoulli mask of 8x8x8x8 compiled in 3.6 s, of 4096 in 0.4 s (both ran 0.9 ms); the tiny DDPM
  UNet step of the tests (ch 8, 8x8, batch 8) compiled in 12.8-17.0 s before, 10.0-10.3 s after (2-core EPYC)."""
  shape = jax.lax.broadcast_shapes(*(x.shape for x in operands))
  flat = [x if x.ndim == 0 else jax.numpy.broadcast_to(x, shape).reshape(-1) for x in operands]
  return [bits.reshape(shape) for bits in hash_fn(*flat, use_rolled_loops=True)]


UNROLLED_THREEFRY = unroll_threefry_on_cpu()


def jit(fun: Callable, **kwargs: Any) -> Callable:
  """`jax.jit(fun, **kwargs)` with `options()`, cacheable ones while the persistent cache is on (at this call: turn
  the cache on before wrapping)."""
  return jax.jit(fun, compiler_options=options(persistent_cache_on()), **kwargs)


def jit_once(fun: Callable, **kwargs: Any) -> Callable:
  """`jit` for a program run once (init): compiled for compile speed, not run speed, on the CPU."""
  if jax.default_backend() != 'cpu':
    return jit(fun, **kwargs)
  chosen = options(persistent_cache_on()) or {}
  return jax.jit(fun, compiler_options={**chosen, 'xla_backend_optimization_level': 0}, **kwargs)

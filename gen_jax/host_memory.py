"""Keep freed host memory in the process for reuse (glibc's malloc), so that CPU steps do not page-fault afresh.

XLA:CPU allocates each execution's temporary buffers (447 MiB for the DDPM UNet ch 64 step at batch 16) on a
worker thread and frees them at its end. glibc serves a request that large by a fresh mmap and returns it with
munmap, so every step faulted in and zeroed ~120k pages again (~200 ms of kernel time per step on a 2-core Sapphire
Rapids, 11% of the step's CPU time); PyTorch's per-tensor allocations are small enough to be reused. The cure has
two halves: `gen_jax.compiler` asks XLA to split the temporaries into heaps of at most `HEAP_BYTES`
(xla_multiheap_size_constraint_per_heap), and `keep_freed_memory` tells malloc to serve every request from its arenas
(no mmap) and never to give arena memory back (mallopt). Together the step's page faults fell
from ~120k to under 1k and the step took 0.88x the time; at batch 64 (2 GiB of temporaries, some single buffers of
32 MiB) 248k -> 3k faults and 506 -> 46 ms of kernel time per step. A worker thread's arena still cannot hold a
block over its 64 MiB heap: such a buffer is mapped afresh. The process's resident memory then stays at its peak, and
each thread's arena keeps what that thread freed: here the maximum RSS was the same either way, but on a many-core
machine whose XLA worker threads take turns running the step it can grow by up to one step's temporaries per thread.
Fewer arenas bound that but cost more than they gave (M_ARENA_MAX 1 or 2: lock contention, UNet step 1.10x).

Set GEN_JAX_KEEP_FREED_MEMORY=0 to leave malloc as it is (e.g. to time both in separate processes).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

HEAP_BYTES = 16 << 20  # XLA's temporaries per allocation: several fit one 64 MiB per-thread heap of glibc's
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4  # <malloc.h>
_INT_MAX = 2**31 - 1


@functools.cache
def keep_freed_memory() -> bool:
  """Applies the mallopt settings once per process; False where the C library is not glibc or it is turned off.

  M_MMAP_MAX 0 (no block gets its own mapping, which glibc unmaps when it is freed), M_TRIM_THRESHOLD INT_MAX (freed
  memory is never returned) and M_TOP_PAD 1 GiB (an emptied per-thread heap is kept rather than unmapped: glibc
  deletes such a heap only when the pad would still be met without it). Memory the main thread frees stays too.
  """
  if os.environ.get('GEN_JAX_KEEP_FREED_MEMORY', '1') == '0' or platform.libc_ver()[0] != 'glibc':
    return False
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return all(mallopt(param, value) == 1 for param, value in
             ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX), (_M_TOP_PAD, 1 << 30)))

"""gen_jax.host_memory: memory a worker thread frees is reused by its next allocations instead of faulted in again.

Each case runs in a fresh process (malloc settings are process-wide and cannot be undone). The pattern is a CPU
step's: a worker thread holds six 16 MiB blocks (XLA's temporaries split at compiler's heap limit), frees them and
allocates them again. Counted: minor page faults per round (numpy's transparent huge pages off, so a fault is a page).
"""

import json
import os
import platform
import subprocess
import sys

import pytest

from gen_jax import compiler, host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = r'''
import json, resource, threading
import numpy as np
from gen_jax import host_memory
np._core.multiarray._set_madvise_hugepage(False)
kept = host_memory.keep_freed_memory()
faults = []
def rounds():
  for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.full(4 << 20, 1.0, np.float32) for _ in range(6)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
worker = threading.Thread(target=rounds)
worker.start()
worker.join()
print(json.dumps({'kept': kept, 'faults': faults}))
'''

pytestmark = pytest.mark.skipif(platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
                                reason='glibc malloc settings')


def probe(keep: bool) -> dict:
  env = {**os.environ, 'GEN_JAX_KEEP_FREED_MEMORY': '1' if keep else '0'}
  out = subprocess.run([sys.executable, '-c', PROBE], cwd=ROOT, env=env, check=True, capture_output=True,
                       text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def test_freed_blocks_are_reused_by_the_next_round_instead_of_faulted_in_again():
  kept, plain = probe(keep=True), probe(keep=False)
  assert kept['kept'] and not plain['kept']
  pages = 6 * (16 << 20) // 4096
  assert all(f > 0.9 * pages for f in kept['faults'][:1] + plain['faults'][:1])  # the first round faults all in
  assert min(plain['faults'][1:]) > 0.25 * pages, plain  # glibc's defaults give (part of) it back every round
  assert max(kept['faults'][1:]) < 0.01 * pages, kept


def test_the_cpu_compile_options_split_temporaries_into_blocks_a_thread_heap_holds():
  assert 2 * host_memory.HEAP_BYTES <= 64 << 20  # glibc's per-thread heap holds several
  assert compiler.CPU_OPTIONS['xla_multiheap_size_constraint_per_heap'] == str(host_memory.HEAP_BYTES)

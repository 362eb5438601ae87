"""Run one of ../shared/peers' CPU benchmark scripts on a CUDA GPU, unchanged.

  python benchmarks/peer_on_cuda.py PEERS/torch_dcgan_bench.py [its flags]   (run from the peers folder)

Makes CUDA torch's default device (every tensor and module the script creates lands there), synchronises the GPU
before every `time.perf_counter()` read (so the script's timers measure finished work), and skips the peers'
wait for a quiet CPU. Only fp32 runs are meaningful: the scripts' `--amp` autocasts on the CPU.
"""
import os
import runpy
import sys
import time

import torch

torch.set_default_device('cuda')
torch.backends.cudnn.benchmark = True
_pc = time.perf_counter


def _synced():
  torch.cuda.synchronize()
  return _pc()


time.perf_counter = _synced
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))  # the peers' own benchutil
import benchutil  # noqa: E402

benchutil.wait_quiet = lambda *a, **k: (0.0, 0.0)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')

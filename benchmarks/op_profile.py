"""Where a compiled step spends its time, per XLA op: the tool that found the CPU kernel-gradient bottleneck.

`train_throughput.py --profile_top N` calls `print_op_profile`. It needs XLA's per-op trace events, so the
process must start with XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true (CPU). Each op is shown with its
optimised-HLO root (a fusion's root instruction), and convolutions are also totalled by window size: a window as
large as the image (e.g. size=32x32) is a kernel gradient.
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile

import jax


def _op_times_ms(trace_dir: str, calls: int) -> collections.Counter:
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # TF ships the trace proto (installed for clu)

  space = xplane_pb2.XSpace()
  with open(sorted(glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True))[-1], 'rb') as f:
    space.ParseFromString(f.read())
  times = collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if 'XLAEigen' not in line.name:  # XLA:CPU's worker threads
        continue
      for event in line.events:
        name = names.get(event.metadata_id, '?')
        if not name.startswith(('ThunkExecutor', 'SlinkyThreadPool')):
          times[name] += event.duration_ps / 1e9 / calls
  return times


def _roots(hlo_text: str) -> dict[str, str]:
  """op name -> the root instruction of what it computes (the fused computation's root for fusions)."""
  defs = dict(re.findall(r'^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$', hlo_text, re.M))
  roots = dict(re.findall(r'^%?([\w.\-]+) [^\n]*\{\n(?:[^\n]*\n)*?\s*ROOT [^=]+= ([^\n]*)', hlo_text, re.M))
  out = {}
  for name, text in defs.items():
    called = re.search(r'calls=%?([\w.\-]+)', text)
    out[name] = roots.get(called.group(1), text) if called else text
  return out


def print_op_profile(compiled, args, top: int = 25, calls: int = 2) -> None:
  """Runs `compiled(*args)` `calls` times under the profiler and prints the top ops by time per call.

  The first output is fed back as the first argument, as a train step's donated state must be."""
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(calls):
      out = compiled(*args)
      args = (out[0], *args[1:])
    jax.block_until_ready(out)
    jax.profiler.stop_trace()
    times = _op_times_ms(trace_dir, calls)
  if not times:
    print('No per-op events: start the process with XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true (CPU only).')
    return
  roots = _roots(compiled.as_text())
  kinds = collections.Counter()
  for name, ms in times.items():
    root = roots.get(name, '')
    window = re.search(r'convolution\(.*window=\{size=(\w+)', root)
    opcode = re.match(r'\S+ ([\w-]+)\(', root)
    if window:
      kinds[f'convolution, window {window.group(1)}'] += ms
    else:
      kinds[opcode.group(1) if opcode else re.sub(r'\.\d+$', '', name)] += ms
  print(f'op time per call, summed over threads: {sum(times.values()):.1f} ms; by root instruction:')
  for kind, ms in kinds.most_common(top):
    print(f'  {ms:9.1f} ms  {kind}')
  print(f'top {top} ops:')
  for name, ms in times.most_common(top):
    print(f'  {ms:9.1f} ms  {name:28s} {roots.get(name, "")[:100]}')

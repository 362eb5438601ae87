"""Where a compiled step spends its time, per XLA op: the tool that found the CPU kernel-gradient bottleneck.

`train_throughput.py --profile_top N` calls `print_op_profile`. It needs XLA's per-op trace events, so the
process must start with XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true (CPU). Each op is shown with its
optimised-HLO root (a fusion's root instruction), and convolutions are also totalled by window size: a window as
large as the image (e.g. size=32x32) is a kernel gradient.

It also prints how the profiled calls kept XLA's worker threads busy (`occupancy`): the share of the time during
which all of them, some or none ran an op or a thread-pool task. That is how the DDPM UNet step's loss in going
from one core to two was seen (benchmarks/RESULTS.md, 2-core Sapphire Rapids: one thread idle for ~10% of the step).
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile

import jax


def occupancy(busy: list[list[tuple[int, int]]]) -> dict[int, float]:
  """{k: share of the span (first start to last end) during which exactly k threads were busy}, from each
  thread's busy intervals [(start, end), ...] (overlaps within a thread count once)."""
  edges = sorted((t, d) for intervals in busy for s, e in _merged(intervals) for t, d in ((s, 1), (e, -1)))
  if not edges:
    return {}
  spent, running, last = collections.Counter(), 0, edges[0][0]
  for t, delta in edges:
    spent[running] += t - last
    running, last = running + delta, t
  span = edges[-1][0] - edges[0][0]
  return {k: spent[k] / span for k in range(len(busy) + 1)} if span else {}


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
  out: list[list[int]] = []
  for s, e in sorted(intervals):
    if out and s <= out[-1][1]:
      out[-1][1] = max(out[-1][1], e)
    else:
      out.append([s, e])
  return [(s, e) for s, e in out]


def _thread_busy(line, names: dict) -> list[tuple[int, int]]:
  """One worker thread's busy intervals (ps): its ops' events and its thread-pool tasks (StartRegion..StopRegion,
  which also cover the convolutions' Eigen work, whose own events end when they are dispatched)."""
  busy, start = [], None
  for event in sorted(line.events, key=lambda e: e.offset_ps):
    name = names.get(event.metadata_id, '?')
    if name == 'ThreadpoolListener::StartRegion':
      start = event.offset_ps
    elif name == 'ThreadpoolListener::StopRegion' and start is not None:
      busy.append((start, event.offset_ps))
      start = None
    elif not name.startswith(('ThunkExecutor', 'SlinkyThreadPool', 'ThreadpoolListener')):
      busy.append((event.offset_ps, event.offset_ps + event.duration_ps))
  return busy


def _op_times_ms(trace_dir: str, calls: int) -> tuple[collections.Counter, dict[int, float]]:
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # TF ships the trace proto (installed for clu)

  space = xplane_pb2.XSpace()
  with open(sorted(glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True))[-1], 'rb') as f:
    space.ParseFromString(f.read())
  times, busy = collections.Counter(), []
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if 'XLAEigen' not in line.name:  # XLA:CPU's worker threads
        continue
      busy.append([(line.timestamp_ns * 1000 + s, line.timestamp_ns * 1000 + e) for s, e in _thread_busy(line, names)])
      for event in line.events:
        name = names.get(event.metadata_id, '?')
        if not name.startswith(('ThunkExecutor', 'SlinkyThreadPool')):
          times[name] += event.duration_ps / 1e9 / calls
  return times, occupancy(busy)


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
    times, shares = _op_times_ms(trace_dir, calls)
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
  if shares:
    print(f'XLA worker threads ({len(shares) - 1}) busy over the profiled calls: '
          + ', '.join(f'{k} for {share:.1%}' for k, share in sorted(shares.items(), reverse=True)))
  print(f'op time per call, summed over threads: {sum(times.values()):.1f} ms; by root instruction:')
  for kind, ms in kinds.most_common(top):
    print(f'  {ms:9.1f} ms  {kind}')
  print(f'top {top} ops:')
  for name, ms in times.most_common(top):
    print(f'  {ms:9.1f} ms  {name:28s} {roots.get(name, "")[:100]}')

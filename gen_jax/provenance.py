"""Where and how long a run ran: the hardware string and cumulative training wall time that results tables cite.

`<workdir>/train_time.json` maps each checkpointed step to the training wall seconds spent to reach it, summed
over every invocation (a resumed run adds its own time to the checkpoint it resumed from), plus the hardware of
each invocation. Written by process 0 only; losing it loses no training state.
"""

from __future__ import annotations

import os
import platform

import jax

from gen_jax import workdir as workdir_lib

TRAIN_TIME_FILE = 'train_time.json'


def cpu_description() -> str:
  """E.g. '2-core Intel(R) Xeon(R) Processor (AVX-512, AMX)': the CPU model and the vector units XLA can use."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          model = value.strip()
        elif key.strip() == 'flags':
          flags = set(value.split())
          break
  except OSError:
    pass
  units = [name for flag, name in (('avx512f', 'AVX-512'), ('amx_tile', 'AMX')) if flag in flags]
  if not units and 'avx2' in flags:
    units = ['AVX2']
  return f'{os.cpu_count()}-core {model}' + (f' ({", ".join(units)})' if units else '')


def hardware_description() -> str:
  """The devices this process computes on: '2-core <cpu>' on CPU, else e.g. '8x NVIDIA H200'."""
  devices = jax.devices()
  if devices[0].platform == 'cpu':
    return cpu_description() + (f', {len(devices)} XLA devices' if len(devices) > 1 else '')
  return f'{len(devices)}x {devices[0].device_kind}'


def read_train_time(workdir: str) -> dict:
  try:
    return workdir_lib.read_json(workdir_lib.path(workdir, TRAIN_TIME_FILE))
  except (OSError, ValueError):
    return {'steps': {}, 'hardware': []}


def train_seconds_at(workdir: str, step: int) -> float | None:
  """Training wall seconds up to checkpoint `step`, or None when not recorded (e.g. an older run)."""
  value = read_train_time(workdir)['steps'].get(str(step))
  return None if value is None else float(value)


def record_train_time(workdir: str, step: int, seconds: float) -> None:
  """Records `seconds` of wall time (all invocations so far) at checkpoint `step`; process 0 writes."""
  if jax.process_index() != 0:
    return
  info = read_train_time(workdir)
  info['steps'][str(step)] = round(seconds, 1)
  if hardware_description() not in info['hardware']:
    info['hardware'].append(hardware_description())
  workdir_lib.write_json(workdir_lib.path(workdir, TRAIN_TIME_FILE), info)

"""Metric bookkeeping for the loop: per-step history, finiteness checks, averaging, the stdout progress line."""

from __future__ import annotations

import math
import time

import jax
import numpy as np

from gen_jax.errors import UserError


class NonFiniteLossError(UserError):
  """The loss or another metric became NaN/Inf; the run stops without checkpointing the broken params."""


def host_value(x) -> np.ndarray:
  """A replicated (possibly multi-host) array -> numpy, from this process's first local copy."""
  if hasattr(x, 'addressable_data'):
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


class MetricsLog:
  """Collects per-call metrics (device arrays [K]) without blocking, and flushes them at log/save points."""

  def __init__(self):
    self._pending: list[tuple[int, dict]] = []  # (step before the call, metrics [K])
    self.history: dict[int, dict[str, float]] = {}  # step -> host metrics, for tests and summaries
    self._sums: dict[str, tuple[float, int]] = {}  # metric -> (sum, count) since the last averages()

  def add(self, first_step: int, metrics: dict) -> None:
    self._pending.append((first_step, metrics))

  def flush(self, last_good_checkpoint: int | None) -> None:
    """Moves pending metrics to the host; raises NonFiniteLossError naming the first bad step."""
    for first_step, metrics in self._pending:
      values = {k: host_value(v) for k, v in metrics.items()}
      steps = len(next(iter(values.values())))
      for i in range(steps):
        step = first_step + i + 1
        row = {k: float(v[i]) for k, v in values.items()}
        bad = {k: v for k, v in row.items() if not math.isfinite(v)}
        if bad:
          self._pending = []
          where = (f'the last good checkpoint is step {last_good_checkpoint}' if last_good_checkpoint is not None
                   else 'no checkpoint had been written yet')
          raise NonFiniteLossError(
              f'Non-finite metrics at step {step}: {bad}. Training stopped; these params were not checkpointed '
              f'({where}). Try a lower --config.optim.learning_rate or --config.optim.grad_clip_norm=1.0.')
        self.history[step] = row
      for k, v in values.items():  # float64 sums on the host (clu's Average ran ~10 tiny jits to compile)
        total, count = self._sums.get(k, (0.0, 0))
        self._sums[k] = (total + float(np.sum(v, dtype=np.float64)), count + v.size)
    self._pending = []

  def averages(self) -> dict[str, float]:
    """Mean of every metric since the last call; resets the average."""
    result = {k: total / count for k, (total, count) in self._sums.items()}
    self._sums = {}
    return result


class ProgressLine:
  """One line per log interval on stdout: step, metrics, throughput, ETA."""

  def __init__(self, total_steps: int, global_batch_size: int, start_step: int):
    self.total_steps, self.batch = total_steps, global_batch_size
    self._last_step, self._last_time = start_step, time.perf_counter()
    self.steps_per_s = 0.0  # over the last interval formatted (also written to TensorBoard)

  def format(self, step: int, metrics: dict[str, float]) -> str:
    now = time.perf_counter()
    rate = self.steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self.total_steps - step) / rate if rate > 0 else float('inf')
    shown = '  '.join(f'{k} {v:.4g}' for k, v in metrics.items())
    eta_text = time.strftime('%H:%M:%S', time.gmtime(eta)) if math.isfinite(eta) else '?'
    width = len(str(self.total_steps))
    return (f'step {step:>{width}}/{self.total_steps}  {shown}  | {rate:.2f} steps/s, '
            f'{rate * self.batch:.0f} img/s, ETA {eta_text}')


class Progress:
  """'  sampling   2000/10000  143.2 img/s  ETA 00:00:56' at most every `every_s` seconds, and at the end."""

  def __init__(self, what: str, every_s: float = 10.0):
    self.what, self.every_s = what, every_s
    self.start = self.last = time.perf_counter()

  def __call__(self, done: int, total: int) -> None:
    now = time.perf_counter()
    if (now - self.last < self.every_s and done < total) or jax.process_index() != 0:
      return
    self.last = now
    rate = done / max(now - self.start, 1e-9)
    eta = time.strftime('%H:%M:%S', time.gmtime((total - done) / rate)) if rate > 0 else '?'
    print(f'  {self.what:<24} {done:>{len(str(total))}}/{total}  {rate:.1f}/s  ETA {eta}', flush=True)

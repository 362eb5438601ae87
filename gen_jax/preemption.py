"""SIGTERM (preemption, `kill`, scheduler time limit) -> finish the current step, checkpoint, exit cleanly."""

from __future__ import annotations

import signal

import jax
import numpy as np
from jax.experimental import multihost_utils

# main.py's exit status after a SIGTERM stop (checkpoint saved, run not finished): EX_TEMPFAIL, "try again". The
# launchers read it to rerun the command (launch/tpu_vm.py), requeue the job (launch/slurm.py) or not evaluate a
# half-trained sweep member (launch/sweep.py).
PREEMPTED_EXIT_CODE = 75


class PreemptionGuard:
  """Context manager that turns SIGTERM into a flag the loop polls between steps.

  Multi-process runs agree on the flag (an all-gather per poll) so every process stops after the same step and
  takes part in the same final checkpoint.
  """

  def __init__(self):
    self._flag = False
    self._previous = None

  def _handler(self, signum, frame):
    del signum, frame
    self._flag = True

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False

  def should_stop(self) -> bool:
    if jax.process_count() == 1:
      return self._flag
    flags = multihost_utils.process_allgather(np.int32(self._flag))
    return bool(np.max(flags))

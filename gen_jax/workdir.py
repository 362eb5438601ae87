"""Every file under a run's workdir goes through here: a local directory or `gs://bucket/...` alike.

A TPU pod's hosts share no disk, so real jobs write to Cloud Storage. Paths are `etils.epath` objects (gs:// through
`tf.io.gfile` when TensorFlow is installed, else gcsfs); Orbax's array data goes through TensorStore's own gcs
driver, TensorBoard events through TensorFlow. Local paths are made absolute (Orbax needs it); remote ones are
left exactly as given.
"""

from __future__ import annotations

import json
import os
from typing import Any

from etils import epath

REMOTE_PREFIXES = ('gs://', 's3://', 'az://', 'hf://')


def is_remote(path) -> bool:
  return os.fspath(path).startswith(REMOTE_PREFIXES)


def path(workdir, *parts: str) -> epath.Path:
  """`workdir/parts...` as an epath.Path (absolute when local)."""
  root = epath.Path(workdir) if is_remote(workdir) else epath.Path(os.path.abspath(os.fspath(workdir)))
  return root.joinpath(*parts)


def write_bytes(p, data: bytes) -> None:
  """Atomic for readers: a local file is written beside and renamed over; a Cloud Storage object only appears
  when its upload completes."""
  p = epath.Path(p)
  p.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(p):
    p.write_bytes(data)
    return
  temporary = p.with_name(p.name + f'.{os.getpid()}.tmp')
  temporary.write_bytes(data)
  temporary.replace(p)


def write_text(p, text: str) -> None:
  write_bytes(p, text.encode())


def write_json(p, value: Any) -> None:
  write_text(p, json.dumps(value, indent=1))


def read_json(p) -> Any:
  return json.loads(epath.Path(p).read_text())


def tensorboard_dir(p) -> str:
  """Where TensorBoard events for `p` are written (the same place; tests of gs:// workdirs redirect it, since
  TensorFlow's GCS client cannot be pointed at an emulator)."""
  return os.fspath(p)


def create_writer(p, just_logging: bool = False):
  """clu's default writer (TensorBoard + log, asynchronous) for directory `p`, built here because
  `create_default_writer` re-parses the path with epath, which knows no TensorFlow-only schemes (ram://)."""
  from clu import metric_writers
  writers = [metric_writers.LoggingWriter()]
  if not just_logging:
    writers.append(metric_writers.SummaryWriter(tensorboard_dir(p)))
  return metric_writers.AsyncMultiWriter(writers)

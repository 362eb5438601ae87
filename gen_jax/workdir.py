"""Every file under a run's workdir goes through here: a local directory or `gs://bucket/...` alike.

A TPU pod's hosts share no disk, so real jobs write to Cloud Storage. Paths are `etils.epath` objects (gs:// through
`tf.io.gfile` when TensorFlow is installed, else gcsfs), TensorBoard events included (gen_jax.summary_writer);
Orbax's array data goes through TensorStore's own gcs driver. Local paths are made absolute (Orbax needs it);
remote ones are left exactly as given.
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


def create_writer(p, just_logging: bool = False):
  """The metric writer for directory `p`: TensorBoard event files (gen_jax.summary_writer, no TensorFlow) + the
  log; `just_logging` (processes other than 0) writes no files."""
  from gen_jax import summary_writer
  return summary_writer.LoggingOnlyWriter() if just_logging else summary_writer.EventWriter(p)

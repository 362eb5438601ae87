"""Compiles `convolutions.cc` and `matmul.cc` (with `chunks.h`) against the pip-installed oneDNN into one shared library
once per machine, loads it and registers its FFI handlers with XLA.

The shared library is cached under $GEN_JAX_CACHE (else $XDG_CACHE_HOME/gen_jax, else ~/.cache/gen_jax), named by a
hash of the source, the compiler and the jaxlib/oneDNN it was built against, so a changed source or an upgrade
rebuilds it and runs started together never load a half-written file (each builds to its own temporary name and
renames it into place). The build takes ~5 s with g++ and happens at most once per machine and version.

`load()` returns False, and `unavailable_reason()` says why, where a piece is missing (not Linux x86-64, no C++
compiler, the `onednn-cpu-gomp` / `onednn-devel-cpu-gomp` wheels not installed, the build failing): gen_jax then
keeps XLA's own convolutions, which give the same values.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import jax

# FFI target names the custom calls use -> the library's handler symbols
CONV, KERNEL_GRAD, INPUT_GRAD = 'gen_jax_onednn_conv', 'gen_jax_onednn_kernel_grad', 'gen_jax_onednn_input_grad'
MATMUL = 'gen_jax_onednn_matmul'
_SYMBOLS = {CONV: 'GenJaxOnednnConv', KERNEL_GRAD: 'GenJaxOnednnKernelGrad', INPUT_GRAD: 'GenJaxOnednnInputGrad',
            MATMUL: 'GenJaxOnednnMatmul'}
SOURCES = tuple(pathlib.Path(__file__).with_name(name) for name in ('convolutions.cc', 'matmul.cc'))
HEADERS = (pathlib.Path(__file__).with_name('chunks.h'),)


class Unavailable(RuntimeError):
  """Why the oneDNN convolutions cannot be used here (the message says what to install or set)."""


def cache_dir() -> pathlib.Path:
  root = os.environ.get('GEN_JAX_CACHE') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'gen_jax')
  return pathlib.Path(root)


def onednn_prefix() -> pathlib.Path:
  """Where pip put the oneDNN wheels' data files (include/oneapi/dnnl, lib/libdnnl.so.3): this environment's prefix."""
  for prefix in (sysconfig.get_paths()['data'], sys.prefix):
    path = pathlib.Path(prefix)
    if (path / 'include' / 'oneapi' / 'dnnl' / 'dnnl.hpp').exists() and (path / 'lib' / 'libdnnl.so.3').exists():
      return path
  raise Unavailable('oneDNN is not installed in this environment: pip install onednn-cpu-gomp==2023.2.0 '
                    'onednn-devel-cpu-gomp==2023.2.0 (requirements.txt has them for Linux x86-64)')


def _compiler() -> str:
  cxx = os.environ.get('CXX', 'g++')
  if not shutil.which(cxx):
    raise Unavailable(f'no C++ compiler {cxx!r} on PATH (install g++, or set CXX) to build the oneDNN convolutions')
  return cxx


def supported_platform() -> bool:
  return sys.platform == 'linux' and platform.machine() == 'x86_64'


def build() -> pathlib.Path:
  """The cached shared library, compiled first where it is missing. Raises `Unavailable` with the reason."""
  if not supported_platform():
    raise Unavailable(f'the oneDNN wheels exist for Linux x86-64 only, not {sys.platform} {platform.machine()}')
  prefix, cxx = onednn_prefix(), _compiler()
  source = b'\0'.join(path.read_bytes() for path in (*SOURCES, *HEADERS))
  version = subprocess.run([cxx, '--version'], capture_output=True, text=True).stdout.splitlines()[:1]
  fingerprint = hashlib.sha256(b'\0'.join(
      [source, repr(version).encode(), jax.__version__.encode(), os.fsencode(prefix),
       os.fsencode(os.path.realpath(prefix / 'lib' / 'libdnnl.so.3'))])).hexdigest()[:16]
  target = cache_dir() / f'onednn_kernels_{fingerprint}.so'
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    partial = pathlib.Path(tmp) / target.name
    command = [cxx, '-O2', '-std=c++17', '-shared', '-fPIC', '-fopenmp', '-w', *map(str, SOURCES),
               '-isystem', str(prefix / 'include'), '-isystem', jax.ffi.include_dir(),
               '-L', str(prefix / 'lib'), '-l:libdnnl.so.3', f'-Wl,-rpath,{prefix / "lib"}', '-o', str(partial)]
    logging.info('Building the oneDNN kernels once for this machine: %s', ' '.join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
      raise Unavailable(f'building {", ".join(p.name for p in SOURCES)} failed ({" ".join(command)}):\n'
                        f'{done.stderr[-2000:]}')
    os.replace(partial, target)
  return target


@functools.cache
def _load() -> tuple[str, str]:
  """(the loaded library's path, '') or ('', why it is unavailable); once per process."""
  try:
    path = build()
    library = ctypes.CDLL(os.fspath(path))
  except Unavailable as e:
    return '', str(e)
  except OSError as e:  # an unwritable cache (set GEN_JAX_CACHE), libgomp.so.1 (the wheel's OpenMP) missing, ...
    return '', f'building or loading the oneDNN convolutions failed: {e}'
  for target, symbol in _SYMBOLS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform='cpu')
  return os.fspath(path), ''


def load() -> bool:
  """Builds (once per machine), loads and registers the FFI targets (once per process); False where unavailable."""
  path, reason = _load()
  if not path:
    _warn_once(reason)
  return bool(path)


def loaded_library() -> str:
  """The loaded library's file (its name fingerprints the source and versions), loading it first; '' if none."""
  load()
  return _load()[0]


def unavailable_reason() -> str:
  return _load()[1]


@functools.cache
def _warn_once(reason: str) -> None:
  say = logging.warning if supported_platform() else logging.info  # elsewhere there is nothing to install
  say('CPU convolutions and matmuls stay with XLA (same values, slower on the UNet): %s', reason)

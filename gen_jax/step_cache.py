"""The compiled train step kept whole beside jax's persistent cache, found *before* the step is traced.

jax's persistent cache keys an executable by the program it lowered, so even a cached start traces and lowers the
train step first: on the 2-core AMD EPYC the ddpm_cifar step's cached compile took 17.5 s, 9.9 s of it tracing
and lowering (README, "Where the ddpm_cifar step's compile goes"). Here the step is keyed by what fixes its
program without tracing it, and its executable is serialized whole (jax.experimental.serialize_executable):

- the config (all of it), the source of every gen_jax module and of the family's own module, the versions of
  jax, jaxlib, flax, optax and numpy, every jax setting, the XLA environment variables (XLA_FLAGS, ...),
  gen_jax's XLA options, and the CPU's model and instruction-set flags (an executable built for AVX-512 must not
  load on an AVX2 host);
- the devices (ids, kinds, processes), the mesh, and the shapes, dtypes and shardings of the state and the batch.

A family whose step could close over data-derived constants no key sees (one that overrides `bind_data` or has
`frozen` inputs: the captioned families, unCLIP) is compiled as before. `config.compiled_step_cache=False` turns
this off while keeping jax's cache. A file that fails to load is reported and compiled over; nothing here can fail
a run that would otherwise start.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import json
import os
import pickle
import platform
import sys
import threading
import time
import uuid

import jax
from absl import logging
from etils import epath

from gen_jax import compiler
from gen_jax.families.base import Family

FORMAT = 1  # bump when what a file holds changes
KEEP = 8  # newest files kept per directory: one ddpm_cifar step is 12 MiB on the CPU
_ENV_PREFIXES = ('XLA_', 'LIBTPU', 'TPU_', 'NVIDIA_TF32')  # environment read by XLA's compilers
_LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy')
JAX_CACHE_HIT = '/jax/compilation_cache/cache_hits'  # jax.monitoring event


def directory(config) -> epath.Path | None:
  """Where steps are kept (<jax's cache dir>/gen_jax_steps), or None when off: jax's persistent cache is off, or
  `config.compiled_step_cache` is False."""
  cache_dir = compiler.persistent_cache_dir()
  if not cache_dir or not config.get('compiled_step_cache', True):
    return None
  return epath.Path(cache_dir) / 'gen_jax_steps'


def cacheable(family: Family) -> bool:
  """Whether the step is fixed by the config and sources alone (see the module docstring); a family defined where
  its source cannot be read (a notebook cell) is not."""
  cls = type(family)
  return cls.bind_data is Family.bind_data and cls.frozen is Family.frozen and _source_file(cls) is not None


def _source_file(cls) -> str | None:
  try:
    return os.path.abspath(inspect.getsourcefile(cls))
  except (TypeError, OSError):
    return None


def step_key(config, family: Family, mesh, args: tuple) -> str:
  """sha256 of everything that fixes the compiled step's program (see the module docstring)."""
  leaves, treedef = jax.tree.flatten(args)
  material = {
      'format': FORMAT,
      'config': json.loads(config.to_json_best_effort()),
      'sources': _sources_digest(family),
      'versions': {name: _version(name) for name in _LIBRARIES},
      'python': sys.version,
      'jax_config': {k: v for k, v in jax.config.values.items() if isinstance(v, (bool, int, float, str, type(None)))},
      'environment': {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)},
      'xla_options': compiler.options(compiler.persistent_cache_on()),
      'cpu': _cpu_description(),
      'platform_version': jax.devices()[0].client.platform_version,
      'devices': [(d.id, d.platform, d.device_kind, d.process_index) for d in mesh.devices.flat],
      'mesh': [list(mesh.axis_names), list(mesh.devices.shape)],
      'processes': [jax.process_index(), jax.process_count()],
      'args_tree': str(treedef),
      'args': [(tuple(x.shape), str(x.dtype), bool(getattr(x, 'weak_type', False)), str(x.sharding)) for x in leaves],
  }
  return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def step_path(config, family: Family, mesh, args: tuple) -> epath.Path | None:
  """The file that holds (or would hold) this step; None when the step cache is off or the family not cacheable."""
  folder = directory(config) if cacheable(family) else None
  return None if folder is None else folder / f'{step_key(config, family, mesh, args)}.jaxstep'


def compile_step(pool: concurrent.futures.Executor, jitted, args: tuple, config, family: Family,
                 mesh) -> concurrent.futures.Future:
  """`jitted.lower(*args).compile()` as a future on `pool`, loaded instead from the step cache when it holds this
  step (and saved there after compiling when it does not). Tracing and lowering happen here, on the caller's
  thread (with one GIL, a pool thread tracing would only slow what the caller does meanwhile); loading and XLA's
  compile on `pool`. `args` may be abstract (jax.ShapeDtypeStruct with shardings)."""
  path = step_path(config, family, mesh, args)
  if path is not None and path.exists():
    return pool.submit(_load_or_compile, path, list(mesh.devices.flat), jitted, args)
  return pool.submit(_compile_and_save, jitted.lower(*args), path)


def _load_or_compile(path: epath.Path, devices: list, jitted, args: tuple) -> jax.stages.Compiled:
  loaded = _load(path, devices)
  return loaded if loaded is not None else _compile_and_save(jitted.lower(*args), path)


def _compile_and_save(lowered: jax.stages.Lowered, path: epath.Path | None) -> jax.stages.Compiled:
  compiled, from_jax_cache = _compile(lowered)
  if path is not None and from_jax_cache:
    # XLA:CPU (jaxlib 0.10.2) serializes an executable it loaded from a cache without its kernels (a 9.1 kB program
    # came back as 5.9 kB and failed at its first call: "Function tanh_add_fusion not found"), so only fresh
    # compiles are kept. Such a step (the program unchanged by an edit of gen_jax) comes from jax's cache as before.
    logging.info('The train step came from jax\'s persistent cache: not kept in the step cache (%s).', path.parent)
  elif path is not None:
    _save(compiled, path)
  return compiled


def _compile(lowered: jax.stages.Lowered) -> tuple[jax.stages.Compiled, bool]:
  """(compiled, whether jax's persistent cache supplied it): jax reports a hit as an event on the compiling
  thread."""
  thread, hits = threading.get_ident(), []

  def listener(event: str, **kwargs) -> None:
    del kwargs
    if event == JAX_CACHE_HIT and threading.get_ident() == thread:
      hits.append(event)
  jax.monitoring.register_event_listener(listener)
  try:
    compiled = lowered.compile()
  finally:
    jax.monitoring.unregister_event_listener(listener)
  return compiled, bool(hits)


def _load(path: epath.Path, devices: list) -> jax.stages.Compiled | None:
  """The step in `path`, loaded onto `devices` (the mesh's, in its order: by default jax would load it onto every
  device of the backend)."""
  started = time.perf_counter()
  try:
    from jax.experimental import serialize_executable
    payload, in_tree, out_tree = pickle.loads(path.read_bytes())
    compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree, execution_devices=devices)
  except Exception as e:  # noqa: BLE001 (a damaged or foreign file: removed, and the step compiled instead)
    logging.warning('Compiled train step %s did not load (%s: %s); removed it, compiling the step again.', path,
                    type(e).__name__, e)
    path.unlink(missing_ok=True)
    return None
  _touch(path)
  logging.info('Loaded the compiled train step from %s in %.1f s (no tracing).', path, time.perf_counter() - started)
  return compiled


def _save(compiled: jax.stages.Compiled, path: epath.Path) -> None:
  try:
    from jax.experimental import serialize_executable
    blob = pickle.dumps(serialize_executable.serialize(compiled))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f'.{path.name}.{uuid.uuid4().hex}.tmp'  # a reader never sees half a file
    partial.write_bytes(blob)
    partial.replace(path)
    _prune(path.parent)
  except Exception as e:  # noqa: BLE001 (a step jax cannot serialize, a full or read-only disk: run uncached)
    logging.warning('Could not keep the compiled train step in %s (%s: %s).', path.parent, type(e).__name__, e)


def _prune(folder: epath.Path) -> None:
  """Keeps the KEEP most recently used steps (loads refresh a file's time)."""
  steps = sorted(folder.glob('*.jaxstep'), key=lambda p: p.stat().mtime, reverse=True)
  for old in steps[KEEP:]:
    old.unlink(missing_ok=True)


def _touch(path: epath.Path) -> None:
  try:
    os.utime(path)  # local files; on gs:// the write time stays (least recently written goes first there)
  except (OSError, TypeError):
    pass


def _sources_digest(family: Family) -> str:
  """sha256 over gen_jax's Python sources and the family's module (which may live outside gen_jax)."""
  root = os.path.dirname(os.path.abspath(compiler.__file__))
  files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names
                 if name.endswith('.py'))
  family_file = _source_file(type(family))
  if family_file is not None and family_file not in files:
    files.append(family_file)
  digest = hashlib.sha256()
  for file in files:
    digest.update(os.path.relpath(file, root).encode())
    with open(file, 'rb') as f:
      digest.update(f.read())
  return digest.hexdigest()


def _version(name: str) -> str:
  module = sys.modules.get(name)
  if module is None:
    try:
      module = __import__(name)
    except ImportError:
      return ''
  return str(getattr(module, '__version__', ''))


def _cpu_description() -> str:
  """The host CPU's model and instruction-set flags: XLA:CPU compiles for the host it runs on."""
  try:
    with open('/proc/cpuinfo') as f:
      fields = dict(line.split(':', 1) for line in f.read().split('\n\n')[0].splitlines() if ':' in line)
    return ' | '.join(fields.get(k, '').strip() for k in ('vendor_id', 'model name', 'cpu family', 'model', 'flags'))
  except OSError:
    return f'{platform.machine()} {platform.processor()}'

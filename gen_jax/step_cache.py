"""The compiled train step kept whole beside jax's persistent cache, found *before* the step is traced.

jax's persistent cache keys an executable by the program it lowered, so even a cached start traces and lowers the
train step first: on the 2-core AMD EPYC the ddpm_cifar step's cached compile took 13-17 s, 7-10 s of it tracing and
lowering (benchmarks/RESULTS.md, "Where the `ddpm_cifar` step's compile goes"). Here the step is keyed by what fixes
its program without tracing it, and its executable is serialized whole (jax.experimental.serialize_executable):

- the config (all of it); the source of every gen_jax module and of every other module loaded from outside the
  Python installation (a family, model or config of the user's own); the versions of jax, jaxlib, flax, optax,
  einops and numpy; every jax setting; gen_jax's layer forms and Threefry lowering; the environment read by XLA and
  gen_jax (XLA_FLAGS, GEN_JAX_LAYER_FORMS, ...); gen_jax's XLA options; the CPU's model and instruction-set flags
  (an executable built for AVX-512 must not load on an AVX2 host);
- the devices (ids, kinds, processes), the mesh, and the shapes, dtypes and shardings of the state and the batch.

What no key sees: a family that binds data-derived tables (overrides `bind_data` or has `frozen` inputs: the
captioned families, CLIP, unCLIP) could close over them, so such families are compiled as before, as is a family
whose class has no source file (a notebook cell); code that patches gen_jax at run time should set
`config.compiled_step_cache=False` (jax's cache stays on). Files are trusted as jax's own cache files are: loading
one runs the code in it, so keep the cache directory writable by you alone.

Failures degrade to compiling: a key that cannot be built, a file that does not load (removed), a step that does
not fit the restored state at its first call (the jit is called instead, as before this cache), a loaded step that
fails at its first call (removed; that run stops with the error and the next one compiles).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import inspect
import json
import os
import pickle
import platform
import sys
import sysconfig
import threading
import time
import uuid

import jax
from absl import logging
from etils import epath

from gen_jax import compiler
from gen_jax.families.base import Family
from gen_jax.models import forms
from gen_jax.onednn import build as onednn_build

FORMAT = 1  # bump when what a file holds changes
KEEP = 8  # steps kept per process and directory, the most recently used (locally; on gs:// the newest written)
STALE_PARTIAL_S = 24 * 3600  # a half-written file this old is left from a killed run
_ENV_PREFIXES = ('XLA_', 'LIBTPU', 'TPU_', 'NVIDIA_TF32', 'GEN_JAX_', 'ONEDNN_', 'DNNL_')  # read by XLA, gen_jax
_LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'einops', 'numpy')
JAX_CACHE_HIT = '/jax/compilation_cache/cache_hits'  # jax.monitoring event


def directory(config) -> epath.Path | None:
  """Where steps are kept (<jax's cache dir>/gen_jax_steps), or None when off: jax's persistent cache is off, or
  `config.compiled_step_cache` is False."""
  cache_dir = compiler.persistent_cache_dir()
  if not cache_dir or not config.get('compiled_step_cache', True):
    return None
  return epath.Path(cache_dir) / 'gen_jax_steps'


def cacheable(family: Family) -> bool:
  """Whether the step is fixed by the config and sources alone (see the module docstring)."""
  cls = type(family)
  return (cls.bind_data is Family.bind_data and cls.frozen is Family.frozen
          and all(_source_file(c) is not None for c in cls.__mro__ if c is not object))


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
      'sources': _sources_digest(),
      'versions': {name: _version(name) for name in _LIBRARIES},
      'python': sys.version,
      'jax_config': {k: v for k, v in jax.config.values.items() if isinstance(v, (bool, int, float, str, type(None)))},
      'layer_forms': dataclasses.asdict(forms.forms()),
      'threefry': compiler.THREEFRY_RULE,
      'custom_calls': _custom_calls(mesh),
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


def _custom_calls(mesh) -> str:
  """The library behind the step's custom calls (oneDNN's CPU convolutions; '' if none), loaded now: a step whose
  executable calls it needs its FFI targets registered before it loads, and a rebuilt library is a new key."""
  chosen = dataclasses.asdict(forms.forms())
  if mesh.devices.flat[0].platform != 'cpu' or not any(on for name, on in chosen.items() if name.startswith('onednn_')):
    return ''
  return os.path.basename(onednn_build.loaded_library())


def step_path(config, family: Family, mesh, args: tuple) -> epath.Path | None:
  """The file that holds (or would hold) this step; None when the step cache is off, the family not cacheable, or
  the key could not be built (reported)."""
  folder = directory(config) if cacheable(family) else None
  if folder is None:
    return None
  try:
    return folder / f'p{jax.process_index()}-{step_key(config, family, mesh, args)}.jaxstep'
  except Exception as e:  # noqa: BLE001 (an unreadable source file, ...: compile as without the cache)
    logging.warning('No step cache for this run: its key could not be built (%s: %s).', type(e).__name__, e)
    return None


class CompiledStep:
  """The compiled train step, called as its jit would be. At the first call only: arguments it was not compiled
  for (a restored state of another structure or dtype; jax checks them before anything runs or is donated) fall back
  to the jit, which traces and compiles for them as before; a step loaded from the cache that fails there has its
  file removed, and the error is raised."""

  def __init__(self, compiled: jax.stages.Compiled, jitted, loaded_from: epath.Path | None = None):
    self.compiled, self._jitted, self.loaded_from = compiled, jitted, loaded_from
    self._call = None  # decided at the first call

  def __call__(self, *args):
    if self._call is not None:
      return self._call(*args)
    try:
      out = self.compiled(*args)
    except (TypeError, ValueError) as e:
      logging.warning('The compiled train step does not take these arguments (%s); calling its jit instead.', e)
      self._call = self._jitted
      return self._jitted(*args)
    except Exception:
      if self.loaded_from is not None:
        self.loaded_from.unlink(missing_ok=True)
        logging.error('The train step loaded from %s failed at its first call; removed it (the next run compiles '
                      'the step).', self.loaded_from)
      raise
    self._call = self.compiled
    return out


def compile_step(pool: concurrent.futures.Executor, jitted, args: tuple, config, family: Family,
                 mesh) -> concurrent.futures.Future:
  """A future on `pool` of the CompiledStep for `args`: loaded from the step cache when that holds it, else
  compiled (and saved there). Tracing and lowering happen here, on the caller's thread (with one GIL, a pool thread
  tracing would only slow what the caller does meanwhile), except after a file that fails to load; loading and
  XLA's compile on `pool`. `args` may be abstract (jax.ShapeDtypeStruct with shardings)."""
  path = step_path(config, family, mesh, args)
  if path is not None and path.exists():
    return pool.submit(_load_or_compile, path, list(mesh.devices.flat), jitted, args)
  return pool.submit(_compile_and_save, jitted, jitted.lower(*args), path)


def _load_or_compile(path: epath.Path, devices: list, jitted, args: tuple) -> CompiledStep:
  loaded = _load(path, devices)
  if loaded is not None:
    return CompiledStep(loaded, jitted, loaded_from=path)
  return _compile_and_save(jitted, jitted.lower(*args), path)


def _compile_and_save(jitted, lowered: jax.stages.Lowered, path: epath.Path | None) -> CompiledStep:
  compiled, from_jax_cache = _compile(lowered)
  if path is None:
    pass
  elif from_jax_cache:
    # XLA:CPU (jaxlib 0.10.2) serializes an executable it loaded from a cache without its kernels (a 9.1 kB program
    # came back as 5.9 kB and failed at its first call: "Function tanh_add_fusion not found"), so only fresh
    # compiles are kept. Such a step (the program unchanged by an edit of gen_jax) comes from jax's cache as before.
    logging.info('The train step came from jax\'s persistent cache: not kept in the step cache (%s).', path.parent)
  elif jax.config.jax_share_binary_between_hosts and jax.process_count() > 1:
    logging.info('Processes share one compiled binary (jax_share_binary_between_hosts): step cache not used.')
  else:
    _save(compiled, path)
  return CompiledStep(compiled, jitted)


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
  device of the backend); None if it does not load (a file that was read but does not load is removed)."""
  started = time.perf_counter()
  try:
    blob = path.read_bytes()
  except Exception as e:  # noqa: BLE001 (gone meanwhile, or a transient storage error: compile, keep the file)
    logging.warning('Could not read the compiled train step %s (%s: %s); compiling it.', path, type(e).__name__, e)
    return None
  try:
    from jax.experimental import serialize_executable
    payload, in_tree, out_tree = pickle.loads(blob)
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
    _prune(path.parent, path.name.split('-', 1)[0])
  except Exception as e:  # noqa: BLE001 (a step jax cannot serialize, a full or read-only disk: run uncached)
    logging.warning('Could not keep the compiled train step in %s (%s: %s).', path.parent, type(e).__name__, e)


def _prune(folder: epath.Path, process: str) -> None:
  """Keeps this process's KEEP most recently used steps (loads refresh a local file's time) and removes partial
  files left by killed runs."""
  steps = sorted(folder.glob(f'{process}-*.jaxstep'), key=lambda p: p.stat().mtime, reverse=True)
  for old in steps[KEEP:]:
    old.unlink(missing_ok=True)
  for partial in folder.glob(f'.{process}-*.tmp'):
    if time.time() - partial.stat().mtime > STALE_PARTIAL_S:
      partial.unlink(missing_ok=True)


def _touch(path: epath.Path) -> None:
  try:
    os.utime(path)  # local files; on gs:// the write time stays (least recently written goes first there)
  except (OSError, TypeError):
    pass


def _sources_digest() -> str:
  """sha256 over gen_jax's Python sources and those of every loaded module outside the Python installation."""
  root = os.path.dirname(os.path.abspath(compiler.__file__))
  files = {os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names if name.endswith('.py')}
  installed = tuple(os.path.abspath(sysconfig.get_paths()[k]) + os.sep for k in ('stdlib', 'platstdlib', 'purelib',
                                                                               'platlib'))
  for module in list(sys.modules.values()):
    file = getattr(module, '__file__', None)
    if file and file.endswith('.py') and not os.path.abspath(file).startswith(installed):
      files.add(os.path.abspath(file))
  digest = hashlib.sha256()
  for file in sorted(files):
    if not os.path.isfile(file):  # an editor's lock link, a file deleted meanwhile
      continue
    digest.update(file.encode())
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

"""Ablation sweeps: every member of a sweep file trained, evaluated and tabulated, resumably.

  python -m launch.sweep configs/sweeps/ddpm_digits_ablation.py --workdir_root runs/ablation_ddpm_digits
      [--parallel N] [--dry_run] [--where local|tpu|slurm] [--launcher_flag=--zone=us-central2-b ...]

A sweep file (big_vision's `sweep` functions, as a plain module) names a base config and yields override sets:

  CONFIG = 'configs/ddpm_digits.py'; METRIC = 'classifier_fd'; SEED_KEYS = ('seed',); COMMON = {...}
  def sweep(): yield {'diffusion.prediction': 'eps', 'seed': 0}; ...

Member `prediction=eps,seed=0` runs `main.py --config CONFIG --workdir ROOT/prediction=eps,seed=0 --config.k=v...`
(COMMON first, then its own overrides), then `--mode eval`. Rerunning the same command skips members whose final
step is evaluated, evaluates trained ones and resumes the rest from their checkpoints (the training loop's resume).
When every member is evaluated it writes ROOT/results.{md,csv} (mean and sample standard deviation over the
SEED_KEYS of each setting, via gen_jax.results), ROOT/members.csv (one row per member) and ROOT/sweep.png (METRIC
per setting, and the training loss curves). `--where tpu|slurm` sends each member through launch/tpu_vm.py or
launch/slurm.py instead (their flags via --launcher_flag); SLURM jobs are queued, so rerun the command once they
finish to get the table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.util
import os
import shlex
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # config files import `configs.default`
  sys.path.insert(0, ROOT)

from etils import epath  # noqa: E402

from gen_jax import workdir as workdir_lib  # noqa: E402
from gen_jax.preemption import PREEMPTED_EXIT_CODE  # noqa: E402


class SweepError(Exception):
  """A bad sweep file or flag: printed as one line."""


@dataclasses.dataclass(frozen=True)
class Member:
  name: str
  overrides: dict[str, Any]  # COMMON, then the member's own
  setting: dict[str, Any]  # the member's own overrides without SEED_KEYS: what its seeds repeat
  total_steps: int


@dataclasses.dataclass(frozen=True)
class Sweep:
  path: str
  config_file: str  # relative to the repository root, as main.py gets it
  metric: str
  members: list[Member]


def member_name(overrides: dict[str, Any]) -> str:
  """'diffusion.prediction'='eps', 'seed'=0 -> 'prediction=eps,seed=0' (the last key part: short, readable)."""
  names = short_names(overrides)
  parts = [f'{names[key]}={flag_text(value)}' for key, value in overrides.items()]
  name = ','.join(parts) or 'base'
  if '/' in name or name.startswith('.'):
    raise SweepError(f'member name {name!r} (from its overrides) is not a valid directory name.')
  return name


def flag_text(value: Any) -> str:
  """A value as --config.k=VALUE spells it."""
  return value if isinstance(value, str) else repr(value)


def _load_module(path: str):
  spec = importlib.util.spec_from_file_location(f'gen_jax_sweep_{abs(hash(path))}', path)
  if spec is None or not os.path.isfile(path):
    raise SweepError(f'no sweep file at {path}.')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _resolved(config, overrides: dict[str, Any], where: str):
  """`config` with `overrides` applied as --config.k=v would (same type checks): misspelt keys fail here,
  before anything runs."""
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    try:
      for part in parents:
        node = node[part]
      if leaf not in node:
        raise KeyError(leaf)
      node[leaf] = value
    except (KeyError, AttributeError):
      raise SweepError(f'{where}: no config key {key!r} in the base config.') from None
    except TypeError as e:
      raise SweepError(f'{where}: {key}={value!r}: {e}') from None
  return config


def load_sweep(path: str) -> Sweep:
  module = _load_module(path)
  for attribute in ('CONFIG', 'sweep'):
    if not hasattr(module, attribute):
      raise SweepError(f'{path} defines no {attribute} (a sweep file names CONFIG and defines sweep()).')
  config_file = module.CONFIG
  config_path = config_file if os.path.isabs(config_file) else os.path.join(ROOT, config_file)
  base = _load_module(config_path).get_config()
  common = dict(getattr(module, 'COMMON', {}))
  seed_keys = tuple(getattr(module, 'SEED_KEYS', ('seed',)))
  members, names = [], set()
  for own in module.sweep():
    own = dict(own)
    name = member_name(own)
    if name in names:
      raise SweepError(f'{path}: two members are named {name!r}; their overrides must differ.')
    names.add(name)
    overrides = {**common, **own}
    config = _resolved(base, overrides, f'{path}, member {name}')
    members.append(Member(name=name, overrides=overrides, total_steps=int(config.total_steps),
                          setting={k: v for k, v in own.items() if k not in seed_keys}))
  if not members:
    raise SweepError(f'{path}: sweep() yielded no members.')
  return Sweep(path=path, config_file=config_file, metric=getattr(module, 'METRIC', 'classifier_fd'), members=members)


def short_names(keys) -> dict[str, str]:
  """'diffusion.prediction' -> 'prediction' unless another key ends the same way (then the full key)."""
  keys = list(dict.fromkeys(keys))
  last = [k.rsplit('.', 1)[-1] for k in keys]
  return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


# --- member state in its workdir ---------------------------------------------------------------------------------

def workdir_of(root: str, member: Member) -> str:
  return str(epath.Path(root) / member.name)


def status(root: str, member: Member) -> str:
  """'done' (final step evaluated), 'trained' (final checkpoint, no eval), 'started' (checkpoints), or 'new'."""
  workdir = epath.Path(workdir_of(root, member))
  if (workdir / 'eval' / f'step_{member.total_steps:06d}.json').exists():
    return 'done'
  checkpoints = workdir / 'checkpoints'
  if (checkpoints / str(member.total_steps) / 'commit_success.txt').exists():  # Orbax's "save finished" marker
    return 'trained'
  if checkpoints.exists() and any(p.name.isdigit() for p in checkpoints.iterdir()):
    return 'started'
  return 'new'


def main_args(sweep: Sweep, member: Member, workdir: str, mode: str) -> list[str]:
  """The arguments after `main.py` for one member."""
  args = ['--config', sweep.config_file, '--workdir', workdir]
  args += [f'--config.{key}={flag_text(value)}' for key, value in member.overrides.items()]
  return args + (['--mode', mode] if mode != 'train' else [])


# --- where members run ---------------------------------------------------------------------------------------------

_print_lock = threading.Lock()


def _say(line: str) -> None:
  with _print_lock:
    print(line, flush=True)


def run_local(argv: Sequence[str], prefix: str, log_path: str | None) -> int:
  """One main.py process; its output streamed with a [member] prefix and appended to log_path (local roots)."""
  log = open(log_path, 'a') if log_path else None
  try:
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'main.py'), *argv], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in process.stdout:
      _say(f'[{prefix}] {line.rstrip()}')
      if log:
        log.write(line)
        log.flush()
    return process.wait()
  finally:
    if log:
      log.close()


def run_member(sweep: Sweep, root: str, member: Member, where: str, dry_run: bool, launcher_flags: Sequence[str],
               slot: int) -> str:
  """Trains (unless trained) and evaluates one member; returns its status afterwards ('queued' for SLURM)."""
  state = status(root, member)
  if state == 'done':
    _say(f'[{member.name}] done: skipped')
    return state
  workdir = workdir_of(root, member)
  modes = (['train'] if state != 'trained' else []) + ['eval']
  _say(f'[{member.name}] {state}: ' + ' + '.join('resume' if m == 'train' and state == 'started' else m
                                                   for m in modes))
  if where == 'local':
    local = not workdir_lib.is_remote(workdir)
    if not dry_run and local:
      os.makedirs(workdir, exist_ok=True)
    for mode in modes:
      argv = main_args(sweep, member, workdir, mode)
      if dry_run:
        _say(' '.join(shlex.quote(a) for a in ['python', 'main.py', *argv]))
        continue
      rc = run_local(argv, member.name, os.path.join(workdir, f'{mode}.log') if local else None)
      if rc == PREEMPTED_EXIT_CODE:
        _say(f'[{member.name}] {mode} stopped by SIGTERM (checkpoint saved). Rerun the sweep to resume.')
        return 'preempted'
      if rc:
        _say(f'[{member.name}] {mode} failed (exit {rc}); see {workdir}/{mode}.log. Rerun the sweep to resume.')
        return 'failed'
    return 'dry run' if dry_run else status(root, member)
  if where == 'tpu':
    from launch import tpu_vm
    for mode in modes:
      flags = list(launcher_flags) + (['--name_suffix', f'-{slot}'] if slot is not None else [])
      rc = tpu_vm.main(['run', *flags, *(['--dry_run'] if dry_run else []), '--',
                        *main_args(sweep, member, workdir, mode)])
      if rc:
        return 'failed'
    return 'dry run' if dry_run else status(root, member)
  if where == 'slurm':
    from launch import slurm
    marker = epath.Path(workdir) / SUBMITTED
    if not dry_run and marker.exists() and _in_slurm_queue(marker.read_text().split()):
      _say(f'[{member.name}] its jobs are still queued or running: not submitted again')
      return 'queued'
    after, jobs = None, []
    for mode in modes:
      argv = ['submit', *launcher_flags, *(['--dry_run'] if dry_run else []), '--job_name', f'{member.name}.{mode}',
              *(['--after', after] if after else []), '--', *main_args(sweep, member, workdir, mode)]
      after = slurm.submit_from_argv(argv)
      jobs.append(after)
    if not dry_run:
      marker.parent.mkdir(parents=True, exist_ok=True)
      marker.write_text(' '.join(jobs))
    return 'queued'
  raise SweepError(f'unknown --where {where!r}; use local, tpu or slurm.')


SUBMITTED = 'slurm_jobs.txt'  # in a member's workdir: the ids of its queued jobs (no double submission)


def _in_slurm_queue(job_ids: Sequence[str]) -> bool:
  """Whether any of the jobs is still pending or running (squeue lists only those)."""
  if not job_ids:
    return False
  result = subprocess.run(['squeue', '-h', '-o', '%i', '-j', ','.join(job_ids)], capture_output=True, text=True)
  return result.returncode == 0 and bool(result.stdout.strip())


def run_all(sweep: Sweep, root: str, where: str = 'local', parallel: int = 1, dry_run: bool = False,
            launcher_flags: Sequence[str] = ()) -> dict[str, str]:
  """member name -> status after this invocation; N at a time (local: N processes; tpu: slices NAME-0..N-1)."""
  if parallel < 1:
    raise SweepError(f'--parallel {parallel} must be >= 1.')

  def job(index_member):
    index, member = index_member
    slot = index % parallel if (where == 'tpu' and parallel > 1) else None
    return member.name, run_member(sweep, root, member, where, dry_run, launcher_flags, slot)

  if parallel == 1 or where == 'slurm':
    return dict(job(im) for im in enumerate(sweep.members))
  if where == 'tpu':  # one worker thread per slice, each taking its own members in order
    lanes = [[im for im in enumerate(sweep.members) if im[0] % parallel == lane] for lane in range(parallel)]
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
      done = pool.map(lambda lane: [job(im) for im in lane], lanes)
      return dict(pair for lane in done for pair in lane)
  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    return dict(pool.map(job, enumerate(sweep.members)))


def main(argv: Sequence[str] | None = None, print_fn: Callable[[str], None] = print) -> int:
  parser = argparse.ArgumentParser(prog='python -m launch.sweep', description=__doc__.split('\n\n')[0])
  parser.add_argument('sweep_file')
  parser.add_argument('--workdir_root', required=True, help='members run in WORKDIR_ROOT/<member name> (or gs://...)')
  parser.add_argument('--parallel', type=int, default=1, help='members at a time (local processes / TPU slices)')
  parser.add_argument('--where', default='local', choices=['local', 'tpu', 'slurm'])
  parser.add_argument('--dry_run', action='store_true', help='print what would run; run nothing')
  parser.add_argument('--launcher_flag', action='append', default=[],
                      help='passed to launch/tpu_vm.py run or launch/slurm.py submit, e.g. --launcher_flag=--zone=Z')
  args = parser.parse_args(argv)
  try:
    sweep = load_sweep(args.sweep_file)
    print_fn(f'{len(sweep.members)} members of {args.sweep_file} (base {sweep.config_file}) into {args.workdir_root}')
    states = run_all(sweep, args.workdir_root, args.where, args.parallel, args.dry_run, args.launcher_flag)
  except SweepError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.dry_run:
    return 0
  pending = [name for name, state in states.items() if state != 'done']
  if pending:
    print_fn(f'{len(pending)} of {len(states)} members not finished ({", ".join(sorted(set(states.values())))}): '
             f'{", ".join(pending)}. Rerun the same command to resume them; the table comes when all are done.')
    return 1 if any(states[n] == 'failed' for n in pending) else 0
  from launch import sweep_report
  print_fn(sweep_report.summarise(sweep, args.workdir_root))
  print_fn(f'Wrote {args.workdir_root}/results.md, results.csv, members.csv and sweep.png.')
  return 0


if __name__ == '__main__':
  sys.exit(main())

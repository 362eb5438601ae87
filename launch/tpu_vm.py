"""Cloud TPU VM slices for gen_jax: create, set up, run (surviving spot preemption), tail, ssh, delete.

  python -m launch.tpu_vm create --name gen-jax --zone us-central2-b --accelerator v4-32 [--spot] [--queued]
  python -m launch.tpu_vm setup  --name gen-jax --zone us-central2-b
  python -m launch.tpu_vm run    --name gen-jax --zone us-central2-b --accelerator v4-32 --spot \\
      -- --config configs/ddpm_cifar.py --workdir gs://BUCKET/runs/ddpm_cifar
  python -m launch.tpu_vm tail | ssh [--worker N] [-- COMMAND] | delete   --name gen-jax --zone us-central2-b

Every subcommand takes --dry_run: it prints the exact `gcloud` (and local tar) commands instead of running them.
`run` starts the same `main.py` command on every worker in the background (`GEN_JAX_DISTRIBUTED=1` on a
multi-host slice: jax.distributed finds the pod itself), streams worker 0's log until the job ends and returns
its exit status. When the slice was preempted (spot) or is gone, it deletes and recreates it, sets it up again and
reruns the command, which resumes from the last checkpoint in the gs:// workdir (up to --max_restarts times).
This is JAX's own multi-controller runtime on a slice, not a scheduler of ours.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from typing import Sequence

from launch.cli import flag_value, split_at_double_dash

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REMOTE_DIR = '~/gen_jax'
LOG, RC, PID = '~/gen_jax_run.log', '~/gen_jax_run.rc', '~/gen_jax_run.pid'
PREEMPTED = 75  # main.py after a SIGTERM stop (gen_jax.preemption.PREEMPTED_EXIT_CODE; not imported: no jax here)
LOST = 86  # follow_command: the job's process is gone without an exit status (the VM rebooted)
SSH_FAILED = 255
JAX_TPU = 'jax[tpu]==0.10.2'  # the jax of requirements.txt, with libtpu

# Software versions (runtime images) that carry each generation's TPU driver; --version overrides.
RUNTIME_VERSIONS = {'v2': 'tpu-ubuntu2204-base', 'v3': 'tpu-ubuntu2204-base', 'v4': 'tpu-ubuntu2204-base',
                    'v5p': 'v2-alpha-tpuv5', 'v5litepod': 'v2-alpha-tpuv5-lite', 'v6e': 'v2-alpha-tpuv6e'}


class LaunchError(Exception):
  """A bad flag or an unknown accelerator type: printed as one line."""


def parse_accelerator(accelerator: str) -> tuple[str, int]:
  generation, _, size = accelerator.rpartition('-')
  if generation not in RUNTIME_VERSIONS or not size.isdigit():
    raise LaunchError(f'unknown --accelerator {accelerator!r}; expected e.g. v4-32, v5litepod-8, v5p-16, v6e-8 '
                      f'(generations: {", ".join(RUNTIME_VERSIONS)}).')
  return generation, int(size)


def num_hosts(accelerator: str) -> int:
  """Worker VMs of a slice: v2-v5p sizes count TensorCores (8 per host); v5e / v6e sizes count chips (up to 8 on
  one host, 4 per host beyond)."""
  generation, size = parse_accelerator(accelerator)
  if generation in ('v5litepod', 'v6e'):
    return 1 if size <= 8 else size // 4
  return max(1, size // 8)


class Shell:
  """Runs commands, or with dry_run prints them (and answers queries with a stated placeholder)."""

  def __init__(self, dry_run: bool, out=None):
    self.dry_run, self.out = dry_run, out or sys.stdout

  def show(self, command: Sequence[str] | str) -> None:
    text = command if isinstance(command, str) else ' '.join(shlex.quote(c) for c in command)
    print(text, file=self.out, flush=True)

  def run(self, command: Sequence[str], check: bool = True) -> int:
    self.show(command)
    if self.dry_run:
      return 0
    rc = subprocess.call(list(command))
    if check and rc:
      raise LaunchError(f'command failed (exit {rc}): {" ".join(command)}')
    return rc

  def query(self, command: Sequence[str], dry_answer: str) -> str:
    """stdout; 'NOT_FOUND' when gcloud says the resource does not exist; '' when the answer is unknown (e.g. the
    network of this machine dropped): never read as "gone"."""
    if self.dry_run:
      self.show(command)
      return dry_answer
    result = subprocess.run(list(command), capture_output=True, text=True)
    if result.returncode == 0:
      return result.stdout.strip()
    return 'NOT_FOUND' if 'NOT_FOUND' in result.stderr else ''


class Slice:
  """The gcloud commands of one TPU VM slice."""

  def __init__(self, args):
    self.name = args.name + (args.name_suffix or '')
    self.zone, self.project = args.zone, args.project
    self.accelerator = getattr(args, 'accelerator', None)
    self.spot, self.queued = getattr(args, 'spot', False), getattr(args, 'queued', False)
    self.version = getattr(args, 'version', None)
    self.python = getattr(args, 'python', 'python3.11')

  def _where(self) -> list[str]:
    return [f'--zone={self.zone}'] + ([f'--project={self.project}'] if self.project else [])

  def _tpu(self, *words: str) -> list[str]:
    return ['gcloud', 'compute', 'tpus', 'tpu-vm', *words]

  def create_commands(self) -> list[list[str]]:
    if not self.accelerator:
      raise LaunchError('--accelerator is required to create a slice (e.g. --accelerator v4-32).')
    version = self.version or RUNTIME_VERSIONS[parse_accelerator(self.accelerator)[0]]
    spot = ['--spot'] if self.spot else []
    if self.queued:  # waits in the queue for capacity instead of failing when there is none now
      return [['gcloud', 'compute', 'tpus', 'queued-resources', 'create', self.name, f'--node-id={self.name}',
               *self._where(), f'--accelerator-type={self.accelerator}', f'--runtime-version={version}', *spot]]
    return [self._tpu('create', self.name, *self._where(), f'--accelerator-type={self.accelerator}',
                      f'--version={version}', *spot)]

  def queued_state(self) -> list[str]:
    return ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe', self.name, *self._where(),
            '--format=value(state.state)']

  def state(self) -> list[str]:
    return self._tpu('describe', self.name, *self._where(), '--format=value(state)')

  def delete_commands(self) -> list[list[str]]:
    if self.queued:
      return [['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', self.name, *self._where(), '--force',
               '--quiet']]
    return [self._tpu('delete', self.name, *self._where(), '--quiet')]

  def ssh(self, command: str | None, worker: str = 'all') -> list[str]:
    return self._tpu('ssh', self.name, *self._where(), f'--worker={worker}',
                     *([f'--command={command}'] if command is not None else []))

  def setup_commands(self, archive: str) -> list[list[str]]:
    """This checkout (tracked + untracked, not ignored: what you are running now) onto every worker, then a
    Python 3.11 venv with requirements.txt and jax[tpu]."""
    install = ' && '.join([
        'set -e', 'sudo apt-get update -qq', f'sudo apt-get install -y -qq {self.python} {self.python}-venv',
        f'rm -rf {REMOTE_DIR}', f'mkdir -p {REMOTE_DIR}', f'tar -xzf ~/gen_jax.tar.gz -C {REMOTE_DIR}',
        f'cd {REMOTE_DIR}', f'{self.python} -m venv .venv', '.venv/bin/pip install -q --upgrade pip',
        '.venv/bin/pip install -q -r requirements.txt', '.venv/bin/pip install -q --no-deps -r requirements-nodeps.txt',
        f'.venv/bin/pip install -q {shlex.quote(JAX_TPU)}'])
    return [['bash', '-c', f'cd {shlex.quote(ROOT)} && git ls-files -co --exclude-standard -z | '
             f'tar -czf {shlex.quote(archive)} --null -T -'],
            self._tpu('scp', archive, f'{self.name}:gen_jax.tar.gz', *self._where(), '--worker=all'),
            self.ssh(install)]

  def start_command(self, main_args: Sequence[str]) -> list[str]:
    """main.py on every worker, detached (an ssh drop does not kill it): its exit status goes to RC when it
    ends, the PID of its shell to PID (so a job that vanished with its VM is noticed)."""
    distributed = 'GEN_JAX_DISTRIBUTED=1 ' if num_hosts(self.accelerator) > 1 else ''
    command = ' '.join(shlex.quote(a) for a in main_args)
    return self.ssh(f'cd {REMOTE_DIR} && rm -f {RC} && ( ({distributed}nohup .venv/bin/python main.py {command} '
                    f'> {LOG} 2>&1; echo $? > {RC}) > /dev/null 2>&1 < /dev/null & echo $! > {PID} ) && echo started')

  def follow_command(self) -> list[str]:
    """Worker 0's log until the job writes RC; the ssh exits with the job's status (255: the slice or this
    machine's connection went away; LOST: the job's process died without a status, e.g. its VM rebooted)."""
    return self.ssh(f'tail -n +1 -F {LOG} & T=$!; while [ ! -f {RC} ]; do kill -0 $(cat {PID}) 2>/dev/null || '
                    f'{{ sleep 5; [ -f {RC} ] || {{ kill $T; exit {LOST}; }}; }}; sleep 15; done; sleep 2; kill $T; '
                    f'exit $(cat {RC})', worker='0')


def _archive_path(slice_: Slice) -> str:
  return os.path.join(os.environ.get('TMPDIR', '/tmp'), f'gen_jax-{slice_.name}.tar.gz')


def create(slice_: Slice, shell: Shell, wait_s: float = 30) -> None:
  for command in slice_.create_commands():
    shell.run(command)
  if slice_.queued:
    while (state := shell.query(slice_.queued_state(), 'ACTIVE')) != 'ACTIVE':
      if state in ('FAILED', 'SUSPENDED', 'NOT_FOUND'):
        raise LaunchError(f'queued resource {slice_.name} is {state}; see `gcloud compute tpus queued-resources '
                          f'describe {slice_.name} --zone={slice_.zone}`.')
      time.sleep(wait_s)


def setup(slice_: Slice, shell: Shell) -> None:
  for command in slice_.setup_commands(_archive_path(slice_)):
    shell.run(command)


def run(slice_: Slice, shell: Shell, main_args: Sequence[str], max_restarts: int, wait_s: float = 30) -> int:
  """Starts the job, follows worker 0 and recreates a preempted slice; returns the job's exit status."""
  _check_workdir(slice_, main_args)
  shell.run(slice_.start_command(main_args))
  restarts = 0
  while True:
    rc = shell.run(slice_.follow_command(), check=False)
    if shell.dry_run:
      shell.show(f'# then `{" ".join(slice_.state())}`. Job exit {PREEMPTED} (SIGTERM, saved) or {LOST} (gone '
                 f'with a reboot) on a READY slice: start it again. Slice PREEMPTED or NOT_FOUND: recreate, set up '
                 f'and start again. Up to {max_restarts} restarts; each resumes from the last checkpoint:')
      for command in [*slice_.delete_commands(), *slice_.create_commands(),
                      *slice_.setup_commands(_archive_path(slice_)), slice_.start_command(main_args)]:
        shell.show(command)
      return 0
    if rc == 0:
      return 0
    state = _slice_state(slice_, shell, wait_s)
    if state == 'READY' and rc == SSH_FAILED:  # our connection dropped, the slice is fine: follow again
      continue
    if state == 'READY' and rc not in (PREEMPTED, LOST):
      print(f'The job failed on {slice_.name} (exit {rc}); not restarting. See `python -m launch.tpu_vm tail`.',
            flush=True)
      return rc
    if state == '':  # still unknown after retries: do not delete a slice that may be fine
      continue
    if restarts >= max_restarts:
      print(f'{slice_.name}: {state}, job exit {rc}, after {restarts} restarts; giving up.', flush=True)
      return rc or 1
    restarts += 1
    try:
      if state == 'READY':  # SIGTERM'd (maintenance) or lost with a reboot: the same slice runs it again
        print(f'The job on {slice_.name} stopped (exit {rc}) on a healthy slice: starting it again, restart '
              f'{restarts}/{max_restarts}; it resumes from its last checkpoint.', flush=True)
      else:
        print(f'{slice_.name} is {state} (preempted?): recreating it, restart {restarts}/{max_restarts}; the run '
              'resumes from its last checkpoint.', flush=True)
        for command in slice_.delete_commands():
          shell.run(command, check=False)
        create(slice_, shell, wait_s)
        setup(slice_, shell)
      shell.run(slice_.start_command(main_args))
    except LaunchError as e:  # no spot capacity now, preempted again during set-up, ...
      print(f'{e}; retrying in {wait_s:.0f} s.', flush=True)
      time.sleep(wait_s)
      rc = 1


def _slice_state(slice_: Slice, shell: Shell, wait_s: float, tries: int = 5) -> str:
  """READY, PREEMPTED, NOT_FOUND, ...; '' when gcloud could not tell after `tries`."""
  for attempt in range(tries):
    state = shell.query(slice_.state(), '')
    if state:
      return state
    time.sleep(wait_s * attempt)
  return ''


def _check_workdir(slice_: Slice, main_args: Sequence[str]) -> None:
  if not slice_.accelerator:
    raise LaunchError('--accelerator is required by run (worker count, and to recreate a preempted slice).')
  workdir = flag_value(main_args, '--workdir')
  if workdir is None or flag_value(main_args, '--config') is None:
    raise LaunchError("pass main.py's flags after `--`: -- --config configs/X.py --workdir gs://BUCKET/DIR")
  if not workdir.startswith('gs://'):
    raise LaunchError(f'--workdir {workdir} is not a gs:// path: a slice\'s workers share no disk, and a preempted '
                      'slice loses its own. Use gs://BUCKET/DIR.')


def main(argv: Sequence[str] | None = None) -> int:
  argv, rest = split_at_double_dash(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(prog='python -m launch.tpu_vm', description=__doc__.split('\n\n')[0])
  sub = parser.add_subparsers(dest='action', required=True)
  for action in ('create', 'setup', 'run', 'tail', 'ssh', 'delete'):
    p = sub.add_parser(action)
    p.add_argument('--name', required=True, help='TPU VM (node) name')
    p.add_argument('--name_suffix', default='', help=argparse.SUPPRESS)  # launch.sweep --parallel: NAME-<i>
    p.add_argument('--zone', required=True)
    p.add_argument('--project', default='', help='default: gcloud config get project')
    p.add_argument('--dry_run', action='store_true', help='print the commands; run nothing')
    if action in ('create', 'run', 'delete'):
      p.add_argument('--accelerator', default='', help='e.g. v4-32 (4 hosts), v5litepod-8 (1 host)')
      p.add_argument('--spot', action='store_true', help='spot capacity: cheaper, preemptible')
      p.add_argument('--queued', action='store_true', help='through a queued resource (waits for capacity)')
      p.add_argument('--version', default='', help='TPU software version; default by generation')
    if action in ('setup', 'run'):
      p.add_argument('--python', default='python3.11', help='the Python installed on the workers')
    if action == 'run':
      p.add_argument('--max_restarts', type=int, default=10, help='recreations of a preempted slice')
    if action == 'ssh':
      p.add_argument('--worker', default='0', help="a worker index or 'all'")
  args = parser.parse_args(argv)
  shell = Shell(args.dry_run)
  slice_ = Slice(args)
  try:
    if args.action == 'create':
      create(slice_, shell)
    elif args.action == 'setup':
      setup(slice_, shell)
    elif args.action == 'run':
      return run(slice_, shell, rest, args.max_restarts)
    elif args.action == 'tail':
      return shell.run(slice_.ssh(f'tail -n 200 -F {LOG}', worker='0'), check=False)
    elif args.action == 'ssh':
      return shell.run(slice_.ssh(' '.join(rest) if rest else None, worker=args.worker), check=False)
    elif args.action == 'delete':
      for command in slice_.delete_commands():
        shell.run(command)
  except LaunchError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())

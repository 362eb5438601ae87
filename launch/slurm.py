"""SLURM GPU clusters: an sbatch script that runs the same `main.py` command as one process per GPU.

  python -m launch.slurm submit --nodes 2 --gpus_per_node 8 [--partition gpu] [--time 24:00:00] [--account A]
      [--job_name NAME] [--after JOBID] [--setup 'source .venv/bin/activate'] [--dry_run]
      -- --config configs/ddpm_cifar.py --workdir /shared/runs/ddpm_cifar

`srun` starts nodes x gpus_per_node tasks; with GEN_JAX_DISTRIBUTED=1 each calls `jax.distributed.initialize()`,
which reads SLURM's environment (coordinator = first node of SLURM_JOB_NODELIST, SLURM_NTASKS processes,
SLURM_PROCID) and gives each task the GPU of its SLURM_LOCALID: so tasks must see every GPU of their node (no
per-task GPU binding). The workdir must be on a filesystem every node sees (or gs://). SLURM's SIGTERM before the
time limit (--signal=TERM@120) and on preemption makes the run save a checkpoint and exit 75; the script then
requeues the job (--requeue allows it), which resumes from that checkpoint, as resubmitting would. --dry_run
prints the script and the sbatch command; otherwise the script is written under --script_dir and submitted.
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
PREEMPTED_EXIT_CODE = 75  # gen_jax.preemption.PREEMPTED_EXIT_CODE (not imported: this file runs without jax)


def sbatch_script(args, main_args: Sequence[str]) -> str:
  tasks = args.gpus_per_node  # one process per GPU
  lines = ['#!/bin/bash', f'#SBATCH --job-name={args.job_name}', f'#SBATCH --nodes={args.nodes}',
           f'#SBATCH --ntasks-per-node={tasks}', f'#SBATCH --gpus-per-node={args.gpus_per_node}',
           f'#SBATCH --cpus-per-task={args.cpus_per_task}', f'#SBATCH --time={args.time}',
           '#SBATCH --signal=TERM@120', '#SBATCH --requeue', '#SBATCH --open-mode=append',
           f'#SBATCH --output={args.log_dir}/%x-%j.out']
  lines += [f'#SBATCH --partition={args.partition}'] * bool(args.partition)
  lines += [f'#SBATCH --account={args.account}'] * bool(args.account)
  lines += ['', 'set -euo pipefail', f'cd {shlex.quote(ROOT)}']
  lines += [args.setup] * bool(args.setup)
  lines += ['export GEN_JAX_DISTRIBUTED=1  # jax.distributed.initialize() reads SLURM_* itself',
            'export TF_CPP_MIN_LOG_LEVEL=2',
            f'srun --kill-on-bad-exit=1 {shlex.quote(args.python)} main.py '
            + ' '.join(shlex.quote(a) for a in main_args) + ' && status=0 || status=$?',
            f'if [ "$status" -eq {PREEMPTED_EXIT_CODE} ]; then  # SIGTERM (time limit, preemption): saved, not done',
            '  scontrol requeue "$SLURM_JOB_ID"  # back in the queue; it resumes from that checkpoint',
            'fi', 'exit "$status"', '']
  return '\n'.join(lines)


def sbatch_command(script_path: str, after: str | None) -> list[str]:
  return ['sbatch', '--parsable', *([f'--dependency=afterok:{after}'] if after else []), script_path]


def parse(argv: Sequence[str]):
  argv, rest = split_at_double_dash(argv)
  parser = argparse.ArgumentParser(prog='python -m launch.slurm', description=__doc__.split('\n\n')[0])
  sub = parser.add_subparsers(dest='action', required=True)
  p = sub.add_parser('submit')
  p.add_argument('--nodes', type=int, default=1)
  p.add_argument('--gpus_per_node', type=int, default=8)
  p.add_argument('--cpus_per_task', type=int, default=8)
  p.add_argument('--time', default='24:00:00')
  p.add_argument('--partition', default='')
  p.add_argument('--account', default='')
  p.add_argument('--job_name', default='gen_jax')
  p.add_argument('--after', default='', help='start after this job id succeeds (e.g. eval after training)')
  p.add_argument('--setup', default='', help="shell line before srun, e.g. 'source .venv/bin/activate'")
  p.add_argument('--python', default='python3')
  p.add_argument('--log_dir', default='slurm_logs')
  p.add_argument('--script_dir', default='slurm_jobs')
  p.add_argument('--dry_run', action='store_true')
  args = parser.parse_args(argv)
  args.job_name = ''.join(c if c.isalnum() or c in '-_.=,' else '_' for c in args.job_name)
  args.log_dir = os.path.join(ROOT, args.log_dir)  # SLURM resolves --output against sbatch's cwd: be explicit
  args.script_dir = os.path.join(ROOT, args.script_dir)
  if flag_value(rest, '--workdir') is None:
    parser.error("pass main.py's flags after `--`: -- --config configs/X.py --workdir /shared/DIR")
  if args.nodes < 1 or args.gpus_per_node < 1:
    parser.error('--nodes and --gpus_per_node must be >= 1.')
  return args, rest


def submit_from_argv(argv: Sequence[str], out=None) -> str:
  """Submits (or with --dry_run prints) one job; returns its id ('DRYRUN-<name>' in a dry run)."""
  out = out or sys.stdout
  args, main_args = parse(argv)
  script = sbatch_script(args, main_args)
  name = args.job_name
  path = os.path.join(args.script_dir, f'{name}.sbatch')
  command = sbatch_command(path, args.after or None)
  if args.dry_run:
    print(f'# {path}:\n{script}', file=out)
    print(' '.join(shlex.quote(c) for c in command), file=out, flush=True)
    return f'DRYRUN-{name}'
  os.makedirs(args.script_dir, exist_ok=True)
  os.makedirs(args.log_dir, exist_ok=True)
  with open(path, 'w') as f:
    f.write(script)
  job_id = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().split(';')[0]
  print(f'{time.strftime("%H:%M:%S")} submitted {path} as job {job_id} (logs: {args.log_dir}/{name}-{job_id}.out)',
        file=out, flush=True)
  return job_id


def main(argv: Sequence[str] | None = None) -> int:
  try:
    submit_from_argv(sys.argv[1:] if argv is None else argv)
  except subprocess.CalledProcessError as e:
    print(f'error: sbatch failed (exit {e.returncode}): {e.stderr.strip()}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())

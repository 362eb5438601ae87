"""launch/tpu_vm.py: the exact gcloud commands for a v4-32 pod and a single-host v5e-8, and the preemption loop
(recreate, set up, rerun) driven by scripted gcloud answers."""

import contextlib
import io
import shlex

import pytest

from launch import tpu_vm

MAIN = ['--config', 'configs/ddpm_cifar.py', '--workdir', 'gs://my-bucket/runs/ddpm_cifar']


def dry(argv):
  out = io.StringIO()
  cut = argv.index('--') if '--' in argv else len(argv)
  with contextlib.redirect_stdout(out):
    assert tpu_vm.main([*argv[:cut], '--dry_run', *argv[cut:]]) == 0
  return [shlex.split(line) for line in out.getvalue().splitlines() if line and not line.startswith('#')]


@pytest.mark.parametrize('accelerator, hosts', [('v4-8', 1), ('v4-32', 4), ('v5p-16', 2), ('v5litepod-8', 1),
                                                ('v5litepod-16', 4), ('v6e-256', 64), ('v3-32', 4)])
def test_worker_count_of_each_slice(accelerator, hosts):
  assert tpu_vm.num_hosts(accelerator) == hosts


def test_v4_32_pod_spot_create_and_run():
  [create] = dry(['create', '--name', 'gen-jax', '--zone', 'us-central2-b', '--accelerator', 'v4-32', '--spot',
                  '--project', 'my-proj'])
  assert create == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'gen-jax', '--zone=us-central2-b',
                    '--project=my-proj', '--accelerator-type=v4-32', '--version=tpu-ubuntu2204-base', '--spot']

  commands = dry(['run', '--name', 'gen-jax', '--zone', 'us-central2-b', '--accelerator', 'v4-32', '--spot', '--',
                  *MAIN])
  start, follow = commands[0], commands[1]
  assert start[:7] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'gen-jax', '--zone=us-central2-b']
  assert start[7] == '--worker=all'  # every host of the pod runs the same command ...
  assert ('GEN_JAX_DISTRIBUTED=1 nohup .venv/bin/python main.py --config configs/ddpm_cifar.py --workdir '
          'gs://my-bucket/runs/ddpm_cifar > ~/gen_jax_run.log' in start[8])  # ... as one jax.distributed job
  assert follow[7] == '--worker=0' and 'tail -n +1 -F ~/gen_jax_run.log' in follow[8]
  # On preemption: delete, recreate (spot again), set up, start again.
  assert commands[2][:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'gen-jax']
  assert commands[3] == create[:7] + create[8:]  # (no --project in this invocation)
  assert 'tar -czf' in commands[4][2] and commands[5][4] == 'scp' and '--worker=all' in commands[5]
  assert 'pip install -q -r requirements.txt' in commands[6][8] and "'jax[tpu]==0.10.2'" in commands[6][8]
  assert commands[7] == start


def test_v5e_8_single_host_queued_create_and_run():
  create, wait = dry(['create', '--name', 'g5', '--zone', 'us-west4-a', '--accelerator', 'v5litepod-8', '--queued'])
  assert create == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create', 'g5', '--node-id=g5',
                    '--zone=us-west4-a', '--accelerator-type=v5litepod-8', '--runtime-version=v2-alpha-tpuv5-lite']
  assert wait[4:6] == ['describe', 'g5'] and wait[-1] == '--format=value(state.state)'
  start = dry(['run', '--name', 'g5', '--zone', 'us-west4-a', '--accelerator', 'v5litepod-8', '--', *MAIN])[0]
  assert 'GEN_JAX_DISTRIBUTED' not in start[8]  # one host: no jax.distributed
  assert '.venv/bin/python main.py --config configs/ddpm_cifar.py' in start[8]


def test_tail_ssh_delete():
  [tail] = dry(['tail', '--name', 'g', '--zone', 'z'])
  assert tail[7] == '--worker=0' and tail[8] == '--command=tail -n 200 -F ~/gen_jax_run.log'
  [ssh] = dry(['ssh', '--name', 'g', '--zone', 'z', '--worker', 'all', '--', 'nvidia-smi || ls'])
  assert ssh[7:] == ['--worker=all', '--command=nvidia-smi || ls']
  [delete] = dry(['delete', '--name', 'g', '--zone', 'z', '--queued'])
  assert delete == ['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'g', '--zone=z', '--force', '--quiet']


@pytest.mark.parametrize('args, message', [
    (['--config', 'c.py', '--workdir', 'runs/x'], 'not a gs:// path'),
    (['--config', 'c.py'], 'pass main.py'),
])
def test_run_refuses_a_local_or_missing_workdir(args, message, capsys):
  assert tpu_vm.main(['run', '--name', 'g', '--zone', 'z', '--accelerator', 'v4-32', '--dry_run', '--', *args]) == 2
  assert message in capsys.readouterr().err


def test_unknown_accelerator_is_a_clear_error(capsys):
  assert tpu_vm.main(['create', '--name', 'g', '--zone', 'z', '--accelerator', 'v9-8', '--dry_run']) == 2
  assert 'unknown --accelerator' in capsys.readouterr().err


class ScriptedShell(tpu_vm.Shell):
  """gcloud as a preempted spot slice would answer: the first follow drops (255), describe says PREEMPTED."""

  def __init__(self, follow_codes, states):
    super().__init__(dry_run=False, out=io.StringIO())
    self.follow_codes, self.states, self.log = list(follow_codes), list(states), []

  def run(self, command, check=True):
    self.log.append(command)
    return self.follow_codes.pop(0) if 'tail -n +1 -F' in ' '.join(command) else 0

  def query(self, command, dry_answer):
    self.log.append(command)
    return self.states.pop(0)

  def show(self, command):
    pass


def _slice():
  args = type('Args', (), {'name': 'g', 'name_suffix': '', 'zone': 'z', 'project': '', 'accelerator': 'v4-32',
                           'spot': True, 'queued': False, 'version': '', 'python': 'python3.11'})()
  return tpu_vm.Slice(args)


def test_a_preempted_slice_is_recreated_and_the_job_rerun():
  shell = ScriptedShell(follow_codes=[255, 0], states=['PREEMPTED'])
  assert tpu_vm.run(_slice(), shell, MAIN, max_restarts=3, wait_s=0) == 0
  verbs = [c[4] if c[0] == 'gcloud' else c[0] for c in shell.log]
  assert verbs == ['ssh', 'ssh', 'describe', 'delete', 'create', 'bash', 'scp', 'ssh', 'ssh', 'ssh']
  assert shell.log[-2] == shell.log[0]  # the same command started again: it resumes from its checkpoint


def test_a_failing_job_on_a_healthy_slice_is_not_restarted():
  shell = ScriptedShell(follow_codes=[1], states=['READY'])
  assert tpu_vm.run(_slice(), shell, MAIN, max_restarts=3, wait_s=0) == 1
  assert [c[4] for c in shell.log] == ['ssh', 'ssh', 'describe']


def test_restarts_stop_at_max_restarts():
  shell = ScriptedShell(follow_codes=[255] * 3, states=['PREEMPTED'] * 3)
  assert tpu_vm.run(_slice(), shell, MAIN, max_restarts=2, wait_s=0) == 255
  assert sum(c[4] == 'create' for c in shell.log if c[0] == 'gcloud') == 2


@pytest.mark.parametrize('code', [tpu_vm.PREEMPTED, tpu_vm.LOST])
def test_a_job_stopped_on_a_healthy_slice_is_started_again_there(code):
  """SIGTERM'd by a maintenance event (main.py exits 75 after saving) or lost with a reboot: no recreation."""
  shell = ScriptedShell(follow_codes=[code, 0], states=['READY'])
  assert tpu_vm.run(_slice(), shell, MAIN, max_restarts=3, wait_s=0) == 0
  assert [c[4] for c in shell.log] == ['ssh', 'ssh', 'describe', 'ssh', 'ssh']


def test_an_unknown_slice_state_is_asked_again_and_never_read_as_gone():
  shell = ScriptedShell(follow_codes=[255, 0], states=['', '', 'READY'])  # this machine's network came back
  assert tpu_vm.run(_slice(), shell, MAIN, max_restarts=3, wait_s=0) == 0
  assert [c[4] for c in shell.log] == ['ssh', 'ssh', 'describe', 'describe', 'describe', 'ssh']

  from gen_jax.preemption import PREEMPTED_EXIT_CODE
  assert tpu_vm.PREEMPTED == PREEMPTED_EXIT_CODE  # what main.py exits with after saving on SIGTERM

"""launch/slurm.py: the sbatch script (one process per GPU, the same main.py command) and that the environment
SLURM gives those tasks makes jax.distributed find the right coordinator, process and GPU."""

import io
import re

from jax._src.clusters.cluster import ClusterEnv

from launch import slurm

MAIN = ['--config', 'configs/ddpm_cifar.py', '--workdir', '/shared/runs/ddpm_cifar']


def test_two_nodes_of_eight_gpus_dry_run():
  out = io.StringIO()
  job = slurm.submit_from_argv(['submit', '--nodes', '2', '--gpus_per_node', '8', '--partition', 'gpu',
                                '--job_name', 'ddpm', '--after', '41', '--dry_run', '--', *MAIN], out=out)
  text = out.getvalue()
  assert job == 'DRYRUN-ddpm'
  for line in ['#SBATCH --nodes=2', '#SBATCH --ntasks-per-node=8', '#SBATCH --gpus-per-node=8',
               '#SBATCH --partition=gpu', '#SBATCH --signal=TERM@120', '#SBATCH --requeue',
               'export GEN_JAX_DISTRIBUTED=1',
               'srun --kill-on-bad-exit=1 python3 main.py --config configs/ddpm_cifar.py --workdir '
               '/shared/runs/ddpm_cifar && status=0 || status=$?']:
    assert line in text.splitlines() or any(ln.startswith(line) for ln in text.splitlines()), line
  assert 'scontrol requeue "$SLURM_JOB_ID"' in text and 'if [ "$status" -eq 75 ]' in text  # saved at SIGTERM
  from gen_jax.preemption import PREEMPTED_EXIT_CODE
  assert slurm.PREEMPTED_EXIT_CODE == PREEMPTED_EXIT_CODE  # what main.py exits with after saving on SIGTERM
  assert '--gpus-per-task' not in text and '--gpu-bind' not in text  # each task must see all GPUs of its node
  assert re.search(r'^sbatch --parsable --dependency=afterok:41 \S+/slurm_jobs/ddpm\.sbatch$', text, re.M)


def test_slurm_task_environment_gives_jax_its_process_and_gpu(monkeypatch):
  """Task 9 of 16 (second node, local task 1), as srun starts it for the script above."""
  for key in list(__import__('os').environ):
    if key.startswith(('SLURM_', 'OMPI_', 'PMI_', 'TPU_')):
      monkeypatch.delenv(key)
  monkeypatch.setenv('SLURM_JOB_ID', '4242')
  monkeypatch.setenv('SLURM_STEP_NODELIST', 'gpu[07-08]')
  monkeypatch.setenv('SLURM_NTASKS', '16')
  monkeypatch.setenv('SLURM_PROCID', '9')
  monkeypatch.setenv('SLURM_LOCALID', '1')
  monkeypatch.setenv('SLURM_JOB_NODELIST', 'gpu[07-08]')
  coordinator, processes, process, local_devices = ClusterEnv.auto_detect_unset_distributed_params(
      None, None, None, None, None, None)
  assert coordinator.startswith('gpu07:') and processes == 16 and process == 9 and local_devices == [1]

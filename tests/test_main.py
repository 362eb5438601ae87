"""The command line: a real run + resume, and bad invocations that must fail cleanly without harming a workdir."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--config.data.image_size=8', '--config.model.channels=(8,16)', '--config.model.latent_dim=4',
        '--config.global_batch_size=16', '--config.log_every=2', '--config.checkpoint_every=2',
        '--config.sample_every=4', '--config.num_samples=4', '--config.data.num_threads=1']


def run_main(workdir, *flags, env=None):
  cmd = [sys.executable, 'main.py', '--config', 'configs/vae_digits.py', '--workdir', str(workdir), *flags]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, **(env or {})})


def snapshot(workdir):
  """Every file under workdir/checkpoints with its size and mtime: any write shows up."""
  root = os.path.join(workdir, 'checkpoints')
  return {os.path.join(d, f): (os.stat(os.path.join(d, f)).st_size, os.stat(os.path.join(d, f)).st_mtime_ns)
          for d, _, files in os.walk(root) for f in files}


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  first = run_main(workdir, *TINY, '--config.total_steps=4')
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'step 4/4' in first.stdout
  assert 'Type handler registry' not in first.stdout + first.stderr  # Orbax's override warning: registered silently
  assert os.path.exists(os.path.join(workdir, 'samples', 'step_000004.png'))
  return workdir


def test_second_invocation_resumes_from_the_latest_checkpoint(trained_workdir):
  again = run_main(trained_workdir, *TINY, '--config.total_steps=6')
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'Resuming from' in again.stdout and 'at step 4' in again.stdout
  assert 'step 6/6' in again.stdout and 'step 2/' not in again.stdout
  assert sorted(os.listdir(os.path.join(trained_workdir, 'checkpoints')))[-1] == '6'


@pytest.mark.parametrize('flags,message', [
    (['--config.optim.learnig_rate=0.1'], 'learnig_rate'),
    (['--config.global_batch_size=12'], 'multiple of 8'),
    (['--config.data.source=tfds', '--config.data.name=no_such_dataset'], "Unknown TFDS dataset 'no_such_dataset'"),
    (['--config.model.family=gann'], "Unknown model family 'gann'"),
])
def test_bad_invocation_fails_cleanly_and_leaves_checkpoints_alone(trained_workdir, flags, message):
  before = snapshot(trained_workdir)
  result = run_main(trained_workdir, *TINY, '--config.total_steps=8', *flags)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  error_lines = [line for line in result.stderr.splitlines() if message in line]
  assert error_lines and len(error_lines[0]) < 1000  # one paragraph, not a wall of text
  assert snapshot(trained_workdir) == before

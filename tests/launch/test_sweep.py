"""launch/sweep.py on a tiny VAE sweep: a finished member is skipped, a half-trained one resumed and a new one
run (two at a time, in subprocesses), then one table (mean and spread over seeds) and a plot; a second
invocation runs nothing."""

import json
import os
import textwrap

import pytest

from gen_jax.evaluate import evaluate
from gen_jax.train import train
from launch import sweep as sweep_lib
from launch import sweep_report
from tests.gcs_emulator import emulated_gcs

TINY = {'data.image_size': 8, 'data.num_threads': 1, 'model.channels': (8, 16), 'model.latent_dim': 4,
        'optim.warmup_steps': 2, 'global_batch_size': 16, 'total_steps': 4, 'log_every': 2, 'checkpoint_every': 2,
        'sample_every': 0, 'num_samples': 4, 'eval.num_samples': 40, 'eval.batch_size': 16, 'eval.kid_subsets': 4,
        'eval.kid_subset_size': 20, 'eval.is_splits': 4, 'eval.bits_per_dim': False}


def _write_sweep(path, cache):
  common = {**TINY, 'classifier.cache_dir': cache, 'eval.cache_dir': cache}
  path.write_text(textwrap.dedent(f'''\
      CONFIG = 'configs/vae_digits.py'
      METRIC = 'classifier_fd'
      COMMON = {common!r}

      def sweep():
        yield {{'optim.learning_rate': 0.001, 'seed': 0}}
        yield {{'optim.learning_rate': 0.001, 'seed': 1}}
        yield {{'optim.learning_rate': 0.002, 'seed': 0}}
      '''))
  return str(path)


def _config(member):
  from configs import vae_digits
  return sweep_lib._resolved(vae_digits.get_config(), member.overrides, 'test')


def test_sweep_skips_finished_resumes_unfinished_and_tabulates(tmp_path, classifier_cache, capsys):
  path = _write_sweep(tmp_path / 'sweep_tiny.py', classifier_cache)
  root = str(tmp_path / 'runs')
  sweep = sweep_lib.load_sweep(path)
  finished, half, other = sweep.members
  assert [m.name for m in sweep.members] == ['learning_rate=0.001,seed=0', 'learning_rate=0.001,seed=1',
                                             'learning_rate=0.002,seed=0']
  assert sweep_lib.main([path, '--workdir_root', root, '--dry_run', '--parallel', '2']) == 0
  out = capsys.readouterr().out
  assert out.count('python main.py --config configs/vae_digits.py --workdir ') == 6  # train + eval, 3 members
  assert not os.path.exists(root)  # a dry run writes nothing
  assert [sweep_lib.status(root, m) for m in sweep.members] == ['new'] * 3

  train(_config(finished), sweep_lib.workdir_of(root, finished))  # as if an earlier sweep had run it
  evaluate(_config(finished), sweep_lib.workdir_of(root, finished), 'configs/vae_digits.py')
  result_file = os.path.join(sweep_lib.workdir_of(root, finished), 'eval', 'step_000004.json')
  before = os.stat(result_file).st_mtime_ns
  half_config = _config(half)
  half_config.total_steps = 2  # stopped half way (its checkpoint at step 2 stays)
  train(half_config, sweep_lib.workdir_of(root, half))
  assert [sweep_lib.status(root, m) for m in sweep.members] == ['done', 'started', 'new']
  capsys.readouterr()

  assert sweep_lib.main([path, '--workdir_root', root, '--parallel', '2']) == 0  # the other two side by side

  out = capsys.readouterr().out
  assert f'[{finished.name}] done: skipped' in out and f'[{half.name}] started: resume + eval' in out
  assert f'[{other.name}] new: train + eval' in out
  assert os.stat(result_file).st_mtime_ns == before  # the finished member was not touched
  with open(os.path.join(sweep_lib.workdir_of(root, half), 'train.log')) as f:
    assert 'at step 2.' in f.read()  # resumed from its checkpoint, not restarted
  assert [sweep_lib.status(root, m) for m in sweep.members] == ['done'] * 3
  table = open(os.path.join(root, 'results.md')).read().splitlines()
  assert table[0].startswith('| learning_rate | seeds | steps | N |') and len(table) == 4
  row = next(line for line in table if line.startswith('| 0.001 |'))
  values = [json.load(open(os.path.join(sweep_lib.workdir_of(root, m), 'eval', 'step_000004.json')))['metrics']
            ['classifier_fd'] for m in (finished, half)]
  mean, sd = sum(values) / 2, abs(values[0] - values[1]) / 2 ** 0.5
  assert '| 2 | 4 | 40 |' in row and f'{mean:.2f} ± {sd:.2f}' in row  # mean and sample sd over the 2 seeds
  assert '(n=1)' in next(line for line in table if line.startswith('| 0.002 |'))
  assert len(open(os.path.join(root, 'members.csv')).read().splitlines()) == 4
  with open(os.path.join(root, 'sweep.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert sweep_report.training_curve(sweep_lib.workdir_of(root, half))[0] == [2, 4]  # both invocations' logs

  def no_runs(*args, **kwargs):
    raise AssertionError('a finished member was run again')
  sweep_lib.run_local, original = no_runs, sweep_lib.run_local
  try:
    assert sweep_lib.main([path, '--workdir_root', root]) == 0  # everything done: just the table again
  finally:
    sweep_lib.run_local = original


@pytest.mark.parametrize('body, message', [
    ("CONFIG = 'configs/vae_digits.py'\ndef sweep():\n  yield {'optim.learning_rat': 0.1}\n",
     "no config key 'optim.learning_rat'"),
    ("CONFIG = 'configs/vae_digits.py'\ndef sweep():\n  yield {'seed': 0}\n  yield {'seed': 0}\n",
     "two members are named 'seed=0'"),
    ("CONFIG = 'configs/vae_digits.py'\ndef sweep():\n  yield {'total_steps': 'many'}\n", 'total_steps'),
    ("def sweep():\n  yield {}\n", 'defines no CONFIG'),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys, body, message):
  path = tmp_path / 'sweep_bad.py'
  path.write_text(body)
  assert sweep_lib.main([str(path), '--workdir_root', str(tmp_path / 'runs'), '--dry_run']) == 2
  assert message in capsys.readouterr().err


def test_remote_members_go_through_the_launchers(tmp_path, classifier_cache, capsys):
  path = _write_sweep(tmp_path / 'sweep_tiny.py', classifier_cache)
  with emulated_gcs(str(tmp_path / 'gcs')) as gcs:  # member status is read from the bucket
    gcs.create_bucket('bucket')
    _remote_dry_runs(path, capsys)


def _remote_dry_runs(path, capsys):
  assert sweep_lib.main([path, '--workdir_root', 'gs://bucket/abl', '--where', 'tpu', '--parallel', '2', '--dry_run',
                         '--launcher_flag=--name=abl', '--launcher_flag=--zone=us-central2-b',
                         '--launcher_flag=--accelerator=v4-8']) == 0
  out = capsys.readouterr().out
  assert 'gcloud compute tpus tpu-vm ssh abl-0 ' in out and 'gcloud compute tpus tpu-vm ssh abl-1 ' in out
  assert '--workdir gs://bucket/abl/learning_rate=0.002,seed=0' in out
  assert sweep_lib.main([path, '--workdir_root', '/shared/abl', '--where', 'slurm', '--dry_run',
                         '--launcher_flag=--nodes=1', '--launcher_flag=--gpus_per_node=2']) == 0
  out = capsys.readouterr().out
  assert out.count('#SBATCH --nodes=1') == 6  # train + eval per member, eval after its training job
  assert 'sbatch --parsable --dependency=afterok:DRYRUN-learning_rate=0.001,seed=0.train' in out

"""Damaged checkpoints (what preempted spot slices and dying hosts leave behind): a restart warns, moves the
damaged step aside and resumes exactly from the previous good one; when none restores it is a clear error."""

import os
import shutil

import jax
import numpy as np
import pytest

from gen_jax.checkpoint import CORRUPT_DIR
from gen_jax.errors import UserError
from gen_jax.evaluate import evaluate
from gen_jax.sample import sample
from gen_jax.train import train
from tests.helpers import apply_overrides, host_tree, tiny_vae_config


def _config():
  return tiny_vae_config(total_steps=12, checkpoint_every=4)  # checkpoints at 4, 8, 12


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('vae'))
  return workdir, train(_config(), workdir)


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def _largest_array_file(workdir, step):
  """The biggest file under checkpoints/<step>/state/: TensorStore's array data."""
  files = [os.path.join(root, f) for root, _, names in os.walk(os.path.join(workdir, 'checkpoints', str(step), 'state'))
           for f in names]
  return max(files, key=os.path.getsize)


def _damage(path, how):
  if how == 'truncated':
    os.truncate(path, 1000)  # as `truncate -s 1000 FILE` would
  else:
    os.remove(path)


@pytest.mark.parametrize('how', ['truncated', 'missing'])
def test_damaged_latest_checkpoint_is_moved_aside_and_training_resumes_from_the_previous(trained, tmp_path, capsys,
                                                                                          how):
  original, uninterrupted = trained
  workdir = str(tmp_path / 'run')
  shutil.copytree(original, workdir)
  damaged = _largest_array_file(workdir, 12)
  relative = os.path.relpath(damaged, os.path.join(workdir, 'checkpoints', '12'))
  _damage(damaged, how)
  capsys.readouterr()

  resumed = train(_config(), workdir)

  out = capsys.readouterr().out
  assert 'checkpoint 12' in out and 'does not restore' in out and 'Resuming from' in out and 'at step 8' in out
  assert sorted(resumed.history) == [9, 10, 11, 12]  # retrained from the good step 8
  kept = os.path.join(workdir, CORRUPT_DIR, '12')
  assert os.path.isdir(kept) and os.path.exists(os.path.join(kept, relative)) == (how == 'truncated')  # not deleted
  assert _steps(workdir) == [4, 8, 12]  # 12 is the new good one
  for x, y in zip(jax.tree.leaves(host_tree(uninterrupted.state)), jax.tree.leaves(host_tree(resumed.state)),
                  strict=True):
    np.testing.assert_array_equal(x, y)  # the same as if nothing had happened


def test_sampling_reads_past_a_damaged_checkpoint_without_moving_it(trained, tmp_path):
  original, _ = trained
  workdir = str(tmp_path / 'run')
  shutil.copytree(original, workdir)
  _damage(_largest_array_file(workdir, 12), 'truncated')
  assert sample(_config(), workdir).endswith('sample_000008.npz')
  assert _steps(workdir) == [4, 8, 12] and not os.path.exists(os.path.join(workdir, CORRUPT_DIR))


def test_no_checkpoint_restores_is_a_clear_error_and_nothing_is_moved(trained, tmp_path):
  original, _ = trained
  workdir = str(tmp_path / 'run')
  shutil.copytree(original, workdir)
  for step in (4, 8, 12):
    _damage(_largest_array_file(workdir, step), 'missing')
  with pytest.raises(UserError, match=r'No checkpoint in .* restores \(step 12: .*step 8: .*step 4: .*Nothing was'):
    train(_config(), workdir)
  assert _steps(workdir) == [4, 8, 12] and not os.path.exists(os.path.join(workdir, CORRUPT_DIR))


@pytest.mark.parametrize('how', ['truncated', 'missing'])
def test_eval_skips_a_damaged_latest_checkpoint_for_the_previous_one(trained, tmp_path, classifier_cache, capsys, how):
  original, _ = trained
  workdir = str(tmp_path / 'run')
  shutil.copytree(original, workdir)
  _damage(_largest_array_file(workdir, 12), how)
  config = apply_overrides(_config(), {
      'eval.num_samples': 16, 'eval.batch_size': 16, 'eval.kid_subsets': 2, 'eval.kid_subset_size': 8,
      'eval.is_splits': 2, 'eval.bits_per_dim': False, 'classifier.cache_dir': classifier_cache,
      'eval.cache_dir': classifier_cache})
  [report] = evaluate(config, workdir)
  assert report['step'] == 8
  assert 'checkpoint 12 does not restore' in capsys.readouterr().out
  assert _steps(workdir) == [4, 8, 12]  # a reader moves nothing

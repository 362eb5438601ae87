"""`--mode sample`: sharded sampling from the latest checkpoint to .npz + PNG, reproducible from a seed."""

import os

import numpy as np
import pytest

from gen_jax.errors import UserError
from gen_jax.sample import sample
from gen_jax.train import train
from tests.helpers import tiny_vae_config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('trained'))
  train(tiny_vae_config(total_steps=4), workdir)
  return workdir


def test_sample_mode_writes_uint8_samples_and_a_grid(trained):
  config = tiny_vae_config(**{'sample.num_samples': 10, 'sample.batch_size': 8})
  path = sample(config, trained)
  with np.load(path) as data:
    samples = data['images']
  assert samples.shape == (10, 8, 8, 1) and samples.dtype == np.uint8
  assert os.path.exists(path.replace('.npz', '.png'))
  assert samples.std() > 0 and len({s.tobytes() for s in samples}) == 10  # distinct images, not one repeated

  again = np.load(sample(config, trained))['images']
  np.testing.assert_array_equal(samples, again)
  other = np.load(sample(tiny_vae_config(**{'sample.num_samples': 10, 'sample.batch_size': 8,
                                             'sample.seed': 1}), trained))['images']
  assert not np.array_equal(samples, other)


def test_sample_without_checkpoint_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match='train first'):
    sample(tiny_vae_config(), str(tmp_path))


def test_sample_batch_must_divide_by_devices(trained):
  with pytest.raises(UserError, match='multiple of the 8 devices'):
    sample(tiny_vae_config(**{'sample.batch_size': 12}), trained)

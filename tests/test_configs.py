"""Every shipped config loads, and its family accepts it (a broken config file fails here, not at run time)."""

import glob
import importlib
import os

import jax
import pytest

from gen_jax.families import get_family
from gen_jax.train import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not p.endswith(('__init__.py', 'default.py')))


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_its_family(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  validate_config(config)
  assert get_family(config).config is config
  doc = importlib.import_module(f'configs.{name}').__doc__
  assert 'Command:' in doc and 'Expected:' in doc and ('Runtime:' in doc or 'Hardware:' in doc), name
  assert config.global_batch_size % jax.device_count() == 0
  assert config.eval.batch_size % jax.device_count() == 0 and config.sample.batch_size % jax.device_count() == 0


def test_ddpm_cifar_has_the_papers_settings():
  from configs import ddpm_cifar
  c = ddpm_cifar.get_config()
  assert (c.model.ch, tuple(c.model.ch_mult), c.model.num_res_blocks, tuple(c.model.attn_resolutions),
          c.model.dropout) == (128, (1, 2, 2, 2), 2, (16,), 0.1)
  assert (c.optim.learning_rate, c.optim.warmup_steps, c.optim.grad_clip_norm, c.global_batch_size,
          c.ema.decay, c.total_steps, c.data.random_flip) == (2e-4, 5000, 1.0, 128, 0.9999, 800_000, True)
  assert (c.diffusion.schedule, c.diffusion.num_timesteps, c.diffusion.prediction) == ('linear', 1000, 'eps')

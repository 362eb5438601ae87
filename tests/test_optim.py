"""Optimizer construction from config: schedules have the documented shape; clipping bounds the update."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from gen_jax.errors import UserError
from gen_jax.optim import make_optimizer, make_schedule


def optim_config(**overrides):
  config = default.get_config().optim
  for key, value in overrides.items():
    config[key] = value
  return config


def test_linear_warmup_then_constant():
  schedule = make_schedule(optim_config(learning_rate=2e-4, warmup_steps=100), total_steps=1000)
  np.testing.assert_allclose([schedule(0), schedule(50), schedule(100), schedule(999)],
                             [0.0, 1e-4, 2e-4, 2e-4], rtol=1e-6)


def test_warmup_then_cosine_decays_to_zero():
  schedule = make_schedule(optim_config(learning_rate=1.0, warmup_steps=10, schedule='cosine'), total_steps=110)
  np.testing.assert_allclose([schedule(10), schedule(60), schedule(110)], [1.0, 0.5, 0.0], atol=1e-6)


def test_global_norm_clipping_bounds_the_gradient():
  # With a huge eps, Adam's first update is -lr * m_hat / eps = -lr * g / eps: linear in the (clipped) gradient.
  def update_norm(clip):
    optimizer = make_optimizer(optim_config(learning_rate=1.0, eps=1e6, grad_clip_norm=clip), total_steps=10)
    params = {'w': jnp.zeros(4)}
    updates, _ = optimizer.update({'w': jnp.full(4, 5.0)}, optimizer.init(params), params)  # |g| = 10
    return float(optax.tree.norm(updates)) * 1e6

  np.testing.assert_allclose(update_norm(0.0), 10.0, rtol=1e-4)  # no clipping
  np.testing.assert_allclose(update_norm(1.0), 1.0, rtol=1e-4)


def test_adamw_applies_weight_decay():
  optimizer = make_optimizer(optim_config(name='adamw', learning_rate=0.1, weight_decay=0.5), total_steps=10)
  params = {'w': jnp.ones(3)}
  updates, _ = optimizer.update({'w': jnp.zeros(3)}, optimizer.init(params), params)
  np.testing.assert_allclose(updates['w'], -0.1 * 0.5 * np.ones(3), rtol=1e-6)  # zero grad: decay only


@pytest.mark.parametrize('key,value', [('name', 'sgdd'), ('schedule', 'linear_cosine')])
def test_unknown_names_are_user_errors(key, value):
  with pytest.raises(UserError):
    make_optimizer(optim_config(**{key: value}), total_steps=10)

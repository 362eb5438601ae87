"""Data parallelism: an 8-device step must compute exactly what a 1-device step computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from gen_jax import parallel
from gen_jax.errors import UserError
from gen_jax.train import train
from tests.helpers import host_tree, tiny_vae_config


def test_has_eight_forced_cpu_devices():
  assert jax.device_count() == 8, 'tests/conftest.py must force 8 CPU devices before jax is imported'


def test_global_mean_grad_is_not_n_times_too_large():
  """Known answer: d/dw mean((x w)^2) over the global batch, whatever the number of devices."""
  x = jnp.arange(16.0).reshape(16, 1)
  w = jnp.ones((1,))
  expected = jax.grad(lambda w: jnp.mean((x @ w) ** 2))(w)  # 2 * mean(x^2) * w
  np.testing.assert_allclose(expected, [2 * np.mean(np.arange(16.0) ** 2)], rtol=1e-6)

  def per_device(w, x):
    loss, grads = parallel.value_and_global_mean_grad(lambda w: jnp.mean((x @ w) ** 2))(w)
    return loss, grads

  for n in (1, 2, 8):
    mesh = parallel.make_mesh(jax.devices()[:n])
    loss, grads = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(parallel.DATA)),
                                        out_specs=(P(), P())))(w, x)
    np.testing.assert_allclose(grads, expected, rtol=1e-6, err_msg=f'{n} devices')
    np.testing.assert_allclose(loss, np.mean(np.arange(16.0) ** 2), rtol=1e-6)


def test_example_keys_do_not_depend_on_device_count():
  key = jax.random.PRNGKey(3)

  def keys_on(n):
    mesh = parallel.make_mesh(jax.devices()[:n])
    f = jax.shard_map(lambda: parallel.example_keys(key, 8 // n), mesh=mesh, in_specs=(),
                      out_specs=P(parallel.DATA))
    return np.asarray(jax.jit(f)())

  np.testing.assert_array_equal(keys_on(1), keys_on(8))
  assert len(np.unique(keys_on(1), axis=0)) == 8


def test_eight_devices_equal_one_device(tmp_path):
  config = tiny_vae_config(total_steps=6, checkpoint_every=6, sample_every=6)
  one = train(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  eight = train(config, str(tmp_path / 'eight'))
  assert len(eight.state.params) and int(host_tree(eight.state.step)) == 6
  chex_tree_allclose(host_tree(one.state.params), host_tree(eight.state.params), atol=1e-5)
  for step in range(1, 7):
    for name in ('loss', 'grad_norm'):  # Adam is nearly scale-invariant: grad_norm catches N-times gradients
      np.testing.assert_allclose(one.history[step][name], eight.history[step][name], rtol=1e-5)
  # The run really trained: params moved away from their initial values.
  assert one.history[6]['loss'] < one.history[1]['loss']


def test_batch_not_divisible_by_devices_is_a_user_error():
  mesh = parallel.make_mesh()
  with pytest.raises(UserError, match='multiple of 8'):
    parallel.check_batch_divisible(12, mesh)


def chex_tree_allclose(a, b, atol):
  flat_a, tree_a = jax.tree.flatten(a)
  flat_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(x, y, atol=atol, rtol=0)


def test_one_device_step_has_no_all_reduce_and_equals_the_replicated_form():
  """One device: the state enters shard_map as device-varying, so the gradients need no all-reduce (a copy on
  XLA:CPU); same values as the replicated-state form, and the state comes back replicated (no recompile)."""
  x = {'image': jax.random.normal(jax.random.PRNGKey(0), (1, 16, 4))}  # [K b ...]
  state = {'w': jnp.ones((4, 3)), 'step': jnp.zeros((), jnp.int32)}

  def step_fn(state, batch):
    loss, grads = parallel.value_and_global_mean_grad(lambda w: jnp.mean(jnp.tanh(batch['image'] @ w) ** 2))(
        state['w'])
    return {'w': state['w'] - 0.1 * grads, 'step': state['step'] + 1}, {'loss': loss}

  mesh = parallel.make_mesh(jax.devices()[:1])
  step = parallel.make_sharded_train_step(step_fn, mesh)
  reduced = [line for line in step.lower(state, x).compile().as_text().splitlines() if ' all-reduce(' in line]
  assert reduced and all(' = f32[] all-reduce(' in line for line in reduced), reduced  # the loss's mean only
  replicated = jax.jit(jax.shard_map(lambda s, b: step_fn(s, {'image': b['image'][0]}), mesh=mesh,
                                     in_specs=(P(), P(None, parallel.DATA)), out_specs=(P(), P())))
  want_state, want_metrics = replicated(state, x)
  got_state, got_metrics = step(jax.tree.map(jnp.copy, state), x)
  np.testing.assert_allclose(got_state['w'], want_state['w'], rtol=1e-6)
  np.testing.assert_allclose(got_metrics['loss'], [want_metrics['loss']], rtol=1e-6)
  assert got_state['w'].sharding.is_fully_replicated and int(got_state['step']) == 1
  again, _ = step(got_state, x)  # the output feeds the next call as its input
  assert int(again['step']) == 2

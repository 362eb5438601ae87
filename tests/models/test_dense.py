"""models.dense.Dense is flax's nn.Dense (params, values, gradients, devices); token maps and 1x1 convs take oneDNN."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax import onednn, parallel
from gen_jax.models import forms, layers
from gen_jax.models.dense import Dense
from gen_jax.onednn import build

pytestmark = pytest.mark.skipif(not build.supported_platform(), reason='the oneDNN wheels exist for Linux x86-64 only')
ON, OFF = (dataclasses.replace(forms.XLA_CPU, onednn_matmuls=on) for on in (True, False))


@pytest.fixture(autouse=True)
def matmuls_pay_off_here(monkeypatch):
  """Whatever this CPU (an AVX2 host keeps XLA's dots: `onednn.matmuls_pay_off`), test the oneDNN path."""
  monkeypatch.setattr(onednn, 'matmuls_pay_off', lambda: True)


def calls_onednn(fn, *args) -> bool:
  return 'gen_jax_onednn_matmul' in jax.jit(fn).lower(*args).as_text()


def assert_trees_close(a, b, rtol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(y))))


@pytest.mark.parametrize('features', [4, 6])  # 6: a square kernel, where kernel and kernel^T have the same shape
def test_dense_has_flax_params_values_and_gradients(features):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 6))
  ref = nn.Dense(features, bias_init=nn.initializers.normal(1.0))
  params = ref.init(jax.random.PRNGKey(1), x)
  ours = Dense(features, bias_init=nn.initializers.normal(1.0))
  with forms.use_forms(ON):
    ours_params = ours.init(jax.random.PRNGKey(1), x)  # the same names, shapes and initial values
    assert jax.tree.structure(ours_params) == jax.tree.structure(params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ours_params), jax.tree.leaves(params)))
    loss = lambda p, x: jnp.sum(jnp.sin(ours.apply(p, x)))
    assert calls_onednn(jax.grad(loss, argnums=(0, 1)), params, x)
    got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
  want = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(jnp.sin(ref.apply(p, x))), argnums=(0, 1)))(params, x)
  assert_trees_close(got, want)


def test_dense_keeps_flax_for_other_ranks_dtypes_and_with_the_form_off():
  x = jax.random.normal(jax.random.PRNGKey(2), (3, 6))
  params = nn.Dense(4).init(jax.random.PRNGKey(3), x)
  tokens = x[:, None]
  with forms.use_forms(ON):
    assert not calls_onednn(lambda p: Dense(4).apply(p, x), params)  # [b c]: no token axis to batch over
    assert not calls_onednn(lambda p: Dense(4, dtype=jnp.bfloat16).apply(p, tokens), params)
    np.testing.assert_allclose(Dense(4).apply(params, x), nn.Dense(4).apply(params, x), rtol=1e-6)
  with forms.use_forms(OFF):
    assert not calls_onednn(lambda p: Dense(4).apply(p, tokens), params)


def test_replicated_kernel_gradient_is_summed_over_devices():
  """8 devices' shard_map step == one device (the shard_map trap: a device-varying kernel gradient, summed once)."""
  mesh = parallel.make_mesh()
  x = jax.random.normal(jax.random.PRNGKey(4), (mesh.size * 2, 5, 6))
  params = nn.Dense(4).init(jax.random.PRNGKey(5), x)
  loss = lambda p, x: jnp.sum(jnp.sin(Dense(4).apply(p, x)))
  with forms.use_forms(ON):
    per_device = lambda p, x: jax.lax.psum(jax.grad(loss)(p, x), parallel.DATA)
    sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(parallel.DATA)), out_specs=P(),
                                    check_vma=False))
    spread = jax.jit(jax.shard_map(jax.grad(loss), mesh=mesh, in_specs=(P(), P(parallel.DATA)), out_specs=P()))
    placed = jax.device_put(x, NamedSharding(mesh, P(parallel.DATA)))
    single = jax.grad(loss)(params, x)
    assert_trees_close(spread(params, placed), single)  # check_vma: autodiff sums the replicated kernel's gradient
    assert_trees_close(sharded(params, placed), single)


@pytest.mark.parametrize('strides, padding, channels, takes_it', [((1, 1), ((0, 0), (0, 0)), 16, True),
                                                                  ((1, 1), ((0, 0), (0, 0)), 3, False),
                                                                  ((2, 2), ((0, 0), (0, 0)), 16, False),
                                                                  ((1, 1), ((1, 0), (0, 1)), 16, False)])
def test_1x1_convs_are_matmuls_with_laxs_values_and_gradients(strides, padding, channels, takes_it):
  x = jax.random.normal(jax.random.PRNGKey(6), (2, 5, 4, channels))
  kernel = jax.random.normal(jax.random.PRNGKey(7), (1, 1, channels, 3))
  loss = lambda conv: (lambda x, k: jnp.sum(jnp.sin(conv(x, k, strides, padding))))
  lax_conv = lambda x, k, s, p: lax.conv_general_dilated(x, k, s, p, dimension_numbers=layers.DIMS)
  with forms.use_forms(ON):
    assert calls_onednn(jax.grad(loss(layers.conv2d), argnums=(0, 1)), x, kernel) == takes_it
    got = jax.jit(jax.value_and_grad(loss(layers.conv2d), argnums=(0, 1)))(x, kernel)
  assert_trees_close(got, jax.value_and_grad(loss(lax_conv), argnums=(0, 1))(x, kernel))


def test_a_gradient_penalty_through_a_1x1_conv_has_laxs_gradients():
  """d/dkernel of |d critic / dx|^2 (WGAN-GP's penalty) differentiates the custom VJP's backward: lax's values."""
  x = jax.random.normal(jax.random.PRNGKey(8), (2, 4, 4, 16))
  kernel = jax.random.normal(jax.random.PRNGKey(9), (1, 1, 16, 6)) * 0.3
  lax_conv = lambda x, k, s, p: lax.conv_general_dilated(x, k, s, p, dimension_numbers=layers.DIMS)

  def penalty_grad(conv):
    critic = lambda x, k: jnp.sum(jnp.tanh(conv(x, k, (1, 1), ((0, 0), (0, 0)))) ** 2)
    return jax.jit(jax.grad(lambda k: jnp.sum(jax.grad(critic)(x, k) ** 2)))(kernel)

  with forms.use_forms(ON):
    got = penalty_grad(layers.conv2d)
    assert calls_onednn(lambda k: penalty_grad(layers.conv2d), kernel)
  assert_trees_close(got, penalty_grad(lax_conv))

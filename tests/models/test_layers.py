"""Faster conv and GroupNorm forms must equal lax's / flax's, incl. the second derivatives a gradient penalty takes."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax import parallel
from gen_jax.models import layers
from gen_jax.models.layers import (
  DIMS,
  Conv,
  ConvTranspose,
  DownConv4x4,
  GroupNorm,
  conv2d,
  conv_4x4_s2,
  conv_transpose,
  conv_transpose_4x4_s2,
  transposed_4x4_s2,
)


def reference_conv(x, k):
  return lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)


def reference_transpose(x, k):
  return lax.conv_transpose(x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=DIMS)


def sin_loss(conv, x, k):
  return jnp.sum(jnp.sin(conv(x, k)))


def penalty(conv, x, k):  # what WGAN-GP differentiates: a function of the input gradient
  return jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, k))))(x)))


def compiled_grad(f, argnum):  # compiled: eager is slow on 8 devices
  return jax.jit(jax.grad(f, argnum), static_argnums=0)


@pytest.mark.parametrize('cin,cout', [(3, 8), (20, 24)])
def test_strided_conv_values_gradients_and_penalty_gradients_match_xla(cin, cout):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, cin))
  k = jax.random.normal(jax.random.PRNGKey(1), (4, 4, cin, cout)) * 0.3
  np.testing.assert_allclose(conv_4x4_s2(x, k), reference_conv(x, k), atol=1e-4)
  for argnum in (0, 1):
    np.testing.assert_allclose(jax.grad(sin_loss, argnum + 1)(conv_4x4_s2, x, k),
                               jax.grad(sin_loss, argnum + 1)(reference_conv, x, k), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(jax.grad(penalty, 2)(conv_4x4_s2, x, k), jax.grad(penalty, 2)(reference_conv, x, k),
                             rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('cout', [3, 24])
def test_phase_transposed_conv_equals_xla(cout):
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 5, 6))
  k = jax.random.normal(jax.random.PRNGKey(3), (4, 4, 6, cout))
  with layers.use_forms(dataclasses.replace(layers.XLA_CPU, phase_transposed_convs=True)):
    np.testing.assert_allclose(conv_transpose_4x4_s2(x, k), reference_transpose(x, k), atol=1e-4)
    np.testing.assert_allclose(transposed_4x4_s2(x, k), reference_transpose(x, k), atol=1e-4)


@pytest.mark.parametrize('size', [7, 8])  # odd sizes fall back to XLA's conv (floor(7/2) = 3 outputs)
def test_down_conv_module_matches_flax_conv_with_the_same_params(size):
  x = jax.random.normal(jax.random.PRNGKey(4), (2, size, size, 4))
  ref = nn.Conv(6, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
  params = ref.init(jax.random.PRNGKey(5), x)
  for double_backward in (False, True):
    got = DownConv4x4(6, double_backward=double_backward).apply(params, x)
    np.testing.assert_allclose(got, ref.apply(params, x), atol=1e-5)
    assert got.shape == (2, size // 2, size // 2, 6)


@pytest.mark.parametrize('kernel,stride,size', [(3, 1, 6), (3, 2, 6), (3, 2, 7), (1, 1, 5), (4, 2, 8), (2, 1, 5)])
def test_conv2d_values_and_both_gradients_match_xla(kernel, stride, size):
  """conv2d's backward (stride-1 input gradients as conv2d) against XLA's, incl. a penalty's second derivative."""
  x = jax.random.normal(jax.random.PRNGKey(6), (2, size, size, 5))
  k = jax.random.normal(jax.random.PRNGKey(7), (kernel, kernel, 5, 7)) * 0.3
  pads = tuple(map(tuple, lax.padtype_to_pads((size, size), (kernel, kernel), (stride, stride), 'SAME')))
  ours = lambda x, k: conv2d(x, k, (stride, stride), pads)
  ref = lambda x, k: lax.conv_general_dilated(x, k, (stride, stride), pads, dimension_numbers=DIMS)
  np.testing.assert_allclose(jax.jit(ours)(x, k), ref(x, k), atol=1e-5)
  for argnum in (1, 2):
    np.testing.assert_allclose(compiled_grad(sin_loss, argnum)(ours, x, k), compiled_grad(sin_loss, argnum)(ref, x, k),
                               rtol=1e-5, atol=1e-5)
  for argnum in (1, 2):  # the critic's params (WGAN-GP), and the input (a penalty's own input gradient)
    np.testing.assert_allclose(compiled_grad(penalty, argnum)(ours, x, k), compiled_grad(penalty, argnum)(ref, x, k),
                               rtol=1e-4, atol=1e-4)


def test_conv_module_is_flax_conv_with_the_same_params_and_dtype():
  x = jax.random.normal(jax.random.PRNGKey(8), (2, 8, 8, 3))
  for kwargs in ({}, {'strides': (2, 2)}, {'kernel_size': (1, 1)}, {'dtype': jnp.bfloat16}):
    ref = nn.Conv(4, **{'kernel_size': (3, 3), **kwargs})
    params = ref.init(jax.random.PRNGKey(9), x)
    got = Conv(4, **kwargs).apply(params, x)
    assert got.dtype == ref.apply(params, x).dtype
    np.testing.assert_allclose(got.astype(jnp.float32), ref.apply(params, x).astype(jnp.float32), atol=2e-2)


def test_kernel_gradient_of_a_replicated_kernel_is_summed_over_devices():
  """Under shard_map a replicated kernel's gradient must be the sum over the 8 devices' shards, as lax's conv."""
  mesh = parallel.make_mesh()
  x = jax.random.normal(jax.random.PRNGKey(10), (mesh.size * 2, 6, 6, 3))
  k = jax.random.normal(jax.random.PRNGKey(11), (3, 3, 3, 4))
  pads = ((1, 1), (1, 1))

  def grads(conv):
    per_device = lambda k, x: jax.grad(lambda k: jnp.sum(jnp.sin(conv(x, k, (1, 1), pads))))(k)
    return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(parallel.DATA)), out_specs=P()))(
        k, jax.device_put(x, NamedSharding(mesh, P(parallel.DATA))))

  xla = lambda x, k, s, p: lax.conv_general_dilated(x, k, s, p, dimension_numbers=DIMS)
  single = jax.grad(lambda k: jnp.sum(jnp.sin(xla(x, k, (1, 1), pads))))(k)
  # float32 sums of 576 terms, gradients up to ~40: within 1e-6 of the largest (an unsummed or N-times gradient is
  # off by a factor of 8); the oneDNN forward conv capped at AVX2 gave 2.1e-5 where XLA's gave 6.7e-6
  atol = 1e-6 * float(jnp.max(jnp.abs(single)))
  np.testing.assert_allclose(grads(conv2d), single, rtol=1e-5, atol=atol)
  np.testing.assert_allclose(grads(conv2d), grads(xla), rtol=1e-5, atol=atol)


@pytest.mark.parametrize('kernel,stride,padding,size', [(3, 2, 'SAME', 4), (3, 2, 'VALID', 4), (4, 2, 'SAME', 5),
                                                        (1, 2, 'SAME', 3), (5, 3, 'SAME', 3), (3, 1, 'SAME', 5)])
@pytest.mark.parametrize('phases', [False, True])
def test_phase_conv_transpose_values_and_gradients_match_lax(kernel, stride, padding, size, phases):
  """Every output phase's conv, interleaved, is lax.conv_transpose; the gradients from the adjoint (both forwards)
  are lax's autodiff gradients, penalty gradients (differentiating the adjoint) too."""
  x = jax.random.normal(jax.random.PRNGKey(12), (2, size, size + 1, 3))
  k = jax.random.normal(jax.random.PRNGKey(13), (kernel, kernel, 3, 5)) * 0.3
  forms = dataclasses.replace(layers.XLA_CPU, phase_transposed_convs=phases)

  def ours(x, k):
    with layers.use_forms(forms):
      return conv_transpose(x, k, (stride, stride), padding)

  ref = lambda x, k: lax.conv_transpose(x, k, (stride, stride), padding, dimension_numbers=DIMS)
  assert jax.jit(ours)(x, k).shape == ref(x, k).shape
  np.testing.assert_allclose(jax.jit(ours)(x, k), ref(x, k), atol=1e-5)
  for f in (sin_loss, penalty):
    for argnum in (1, 2):
      np.testing.assert_allclose(compiled_grad(f, argnum)(ours, x, k), compiled_grad(f, argnum)(ref, x, k),
                                 rtol=1e-4, atol=1e-4)


def test_conv_transpose_module_is_flax_conv_transpose_with_the_same_params_and_dtype():
  x = jax.random.normal(jax.random.PRNGKey(14), (2, 4, 4, 3))
  for kwargs in ({'strides': (2, 2)}, {'strides': (2, 2), 'padding': 'VALID'}, {'dtype': jnp.bfloat16}):
    ref = nn.ConvTranspose(6, (3, 3), **kwargs)
    params = ref.init(jax.random.PRNGKey(15), x)
    got, want = ConvTranspose(6, (3, 3), **kwargs).apply(params, x), ref.apply(params, x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), atol=2e-2)


def perturbed(params, seed):  # away from the ones/zeros init, so scale and bias matter
  return jax.tree.map(lambda v: v + 0.3 * jax.random.normal(jax.random.PRNGKey(seed), v.shape), params)


@pytest.mark.parametrize('shape,groups', [((3, 6, 5, 12), 4), ((2, 7, 16), 1)])
def test_group_norm_values_gradients_and_penalty_gradients_match_flax(shape, groups):
  x = jax.random.normal(jax.random.PRNGKey(16), shape) * 3 + 1
  ref, ours = nn.GroupNorm(groups), GroupNorm(groups)
  params = ref.init(jax.random.PRNGKey(17), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(17), x)) == jax.tree.map(jnp.shape, params)
  params = perturbed(params, 18)
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), atol=2e-5)
  loss = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)) * x)
  pen = lambda module: lambda p, x: jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(p, x))))(x)))
  for f, tol in ((loss, 1e-4), (pen, 1e-3)):
    got, want = (jax.jit(jax.grad(f(module), (0, 1)))(params, x) for module in (ours, ref))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_group_norm_rejects_channels_that_do_not_split_into_groups():
  with pytest.raises(ValueError, match='divisible'):
    GroupNorm(32).init(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 48)))


def test_group_norm_param_gradients_are_summed_over_devices():
  """Replicated scale and bias meet per-device maps: their gradients must be the 8 shards' sum, as flax's."""
  mesh = parallel.make_mesh()
  x = jax.random.normal(jax.random.PRNGKey(19), (mesh.size * 2, 4, 4, 8))
  params = perturbed(nn.GroupNorm(4).init(jax.random.PRNGKey(20), x), 21)
  per_device = lambda p, x: jax.grad(lambda p: jnp.sum(jnp.sin(GroupNorm(4).apply(p, x))))(p)
  sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(parallel.DATA)), out_specs=P()))(
      params, jax.device_put(x, NamedSharding(mesh, P(parallel.DATA))))
  single = jax.grad(lambda p: jnp.sum(jnp.sin(nn.GroupNorm(4).apply(p, x))))(params)
  for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _all_forms_net(x, k3, k4, kt, scale, bias):
  """Every layer with two forms: stride-1 and 4x4 stride-2 convs, both transposed convs, GroupNorm."""
  h = group_norm_fn(conv2d(x, k3, (1, 1), ((1, 1), (1, 1))), scale, bias)
  h = conv_4x4_s2(jnp.tanh(h), k4)
  h = transposed_4x4_s2(jnp.tanh(h), kt)
  return conv_transpose(h, kt[:3, :3], (2, 2), 'SAME')


def group_norm_fn(x, scale, bias):
  return layers.group_norm(x, scale, bias, 4)


def test_the_lax_forms_give_the_same_values_gradients_and_penalty_gradients():
  keys = jax.random.split(jax.random.PRNGKey(30), 6)
  args = (jax.random.normal(keys[0], (2, 8, 8, 8)), jax.random.normal(keys[1], (3, 3, 8, 16)) * 0.3,
          jax.random.normal(keys[2], (4, 4, 16, 16)) * 0.2, jax.random.normal(keys[3], (4, 4, 16, 16)) * 0.2,
          1 + 0.2 * jax.random.normal(keys[4], (16,)), 0.2 * jax.random.normal(keys[5], (16,)))
  loss = lambda *a: jnp.sum(jnp.sin(_all_forms_net(*a)))
  pen = lambda *a: jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(_all_forms_net(x, *a[1:]))))(a[0])))
  results = {}
  for name in ('xla_cpu', 'lax'):
    with layers.use_forms(layers.NAMED[name]):  # fresh lambdas: each traced under its forms
      results[name] = (jax.jit(lambda *a: _all_forms_net(*a))(*args), jax.jit(jax.grad(loss, range(6)))(*args),
                       jax.jit(jax.grad(pen, (1, 2, 4)))(*args))
  for got, want in zip(jax.tree.leaves(results['xla_cpu']), jax.tree.leaves(results['lax'])):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(want))))  # float32 sums
  with layers.use_forms(layers.LAX):
    lowered = jax.jit(lambda *a: _all_forms_net(*a)).lower(*args).as_text()
  assert 'custom_vjp' not in lowered
  assert lowered.count('lhs_dilate = [2, 2]') == 2  # both transposed convs are lax's


def test_the_forms_switch_follows_the_backend_the_override_and_the_environment(monkeypatch):
  monkeypatch.delenv('GEN_JAX_LAYER_FORMS', raising=False)
  assert layers.forms() is layers.BY_BACKEND['cpu'] is layers.XLA_CPU
  with layers.use_forms(layers.LAX):
    assert layers.forms() is layers.LAX
  monkeypatch.setenv('GEN_JAX_LAYER_FORMS', 'lax')
  assert layers.forms() is layers.LAX
  monkeypatch.setenv('GEN_JAX_LAYER_FORMS', 'fast')
  with pytest.raises(ValueError, match="GEN_JAX_LAYER_FORMS='fast': use one of"):
    layers.forms()


def test_silu_is_jax_silu_within_a_stated_error_in_both_forms():
  x = jnp.linspace(-30.0, 30.0, 20001)
  want_values, want_grads = jax.nn.silu(x), jax.grad(lambda x: jnp.sum(jax.nn.silu(x)))(x)
  for chosen in (layers.XLA_CPU, layers.LAX):
    with layers.use_forms(chosen):
      values, grads = jax.jit(lambda x: (layers.silu(x), jax.grad(lambda x: jnp.sum(layers.silu(x)))(x)))(x)
    # the tanh form is 1 - (a number near 1) in the negative tail: absolute error <= 2.5e-6 everywhere, relative
    # 1e-5 where x >= -3 (where activations live); jax's own form is exact
    np.testing.assert_allclose(values, want_values, rtol=0, atol=2.5e-6)
    np.testing.assert_allclose(grads, want_grads, rtol=0, atol=2.5e-6)
    near = x >= -3
    np.testing.assert_allclose(values[near], want_values[near], rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(values, want_values)  # LAX: jax.nn.silu itself


def test_convs_and_group_norms_of_one_shape_are_traced_once():
  """conv2d and group_norm are nested jits (jax reuses one trace per shape, XLA inlines them): the step of a large net
  traces faster, the program is the same. Two calls of one shape share one jaxpr; another shape gets its own."""
  x, k = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
  scale, bias = jnp.ones((4,)), jnp.zeros((4,))

  def net(x):
    same = [conv2d(x, k, (1, 1), ((1, 1), (1, 1))) for _ in range(2)]
    norms = [layers.group_norm(h, scale, bias, 2) for h in same]
    return norms, conv2d(x, k, (2, 2), ((1, 1), (1, 1)))

  with layers.use_forms(layers.XLA_CPU):
    eqns = jax.make_jaxpr(net)(x).eqns
  calls = {}
  for eqn in eqns:
    if eqn.primitive.name in ('pjit', 'jit'):
      calls.setdefault(eqn.params['name'], []).append(eqn.params['jaxpr'])
  convs, norms = calls['_conv2d_traced_once'], calls['_group_norm_traced_once']
  assert len(convs) == 3 and convs[0] is convs[1] and convs[2] is not convs[0]  # stride 2: another trace
  assert len(norms) == 2 and norms[0] is norms[1]

"""oneDNN's conv, input and kernel gradients equal XLA's (values, derivatives, vmap, shard_map); fallback without it."""

import os
import pickle
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax import onednn
from gen_jax.onednn import build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(not build.supported_platform(), reason='the oneDNN wheels exist for Linux x86-64 only')

# (batch, h, w, ci, co, kh, kw, strides, padding): odd batches split into unequal chunks over XLA's threads.
GEOMETRIES = [
    (4, 8, 8, 5, 6, 3, 3, (1, 1), ((1, 1), (1, 1))),
    (3, 7, 9, 4, 3, 3, 3, (1, 1), ((0, 2), (2, 0))),
    (5, 8, 8, 6, 4, 1, 1, (1, 1), ((0, 0), (0, 0))),
    (2, 8, 8, 3, 5, 4, 4, (2, 2), ((1, 1), (1, 1))),
    (1, 9, 6, 2, 3, 3, 2, (2, 1), ((1, 1), (0, 1))),
]


def operands(b, h, w, ci, co, kh, kw, strides, padding, seed=0):
  rng = np.random.default_rng(seed)
  oh = (h + sum(padding[0]) - kh) // strides[0] + 1
  ow = (w + sum(padding[1]) - kw) // strides[1] + 1
  x = jnp.asarray(rng.standard_normal((b, h, w, ci)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((b, oh, ow, co)), jnp.float32)
  return x, g, (kh, kw, ci, co)


def close(got, want, rtol=2e-6):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=rtol * np.abs(want).max())


def test_it_builds_and_loads_here():
  assert build.load(), build.unavailable_reason()
  assert os.path.basename(build.loaded_library()).startswith('onednn_kernels_')


@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_kernel_gradient_equals_xlas(geometry):
  *_, strides, padding = geometry
  x, g, shape = operands(*geometry)
  got = jax.jit(lambda x, g: onednn.kernel_grad(x, g, shape, strides, padding))(x, g)
  close(got, onednn.xla_kernel_grad(x, g, shape, strides, padding))
  assert 'gen_jax_onednn_kernel_grad' in jax.jit(
      lambda x, g: onednn.kernel_grad(x, g, shape, strides, padding)).lower(x, g).as_text()


def conv_operands(b, h, w, ci, co, kh, kw, strides, padding, seed=0):
  x, _, shape = operands(b, h, w, ci, co, kh, kw, strides, padding, seed)
  return x, jnp.asarray(np.random.default_rng(seed + 1).standard_normal(shape) * 0.3, jnp.float32)


@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_conv_equals_xlas(geometry):
  *_, strides, padding = geometry
  x, kernel = conv_operands(*geometry)
  got = jax.jit(lambda x, k: onednn.conv(x, k, strides, padding))(x, kernel)
  close(got, onednn.xla_conv(x, kernel, strides, padding))
  assert 'gen_jax_onednn_conv' in jax.jit(lambda x, k: onednn.conv(x, k, strides, padding)).lower(x, kernel).as_text()


def test_conv_derivatives_and_vmap_are_xlas():
  geometry = GEOMETRIES[1]
  *_, strides, padding = geometry
  x, kernel = conv_operands(*geometry)
  loss = lambda conv: (lambda x, k: jnp.sum(jnp.sin(conv(x, k, strides, padding))))
  got = jax.jit(jax.grad(loss(onednn.conv), argnums=(0, 1)))(x, kernel)
  want = jax.jit(jax.grad(loss(onednn.xla_conv), argnums=(0, 1)))(x, kernel)
  for a, b in zip(got, want):
    close(a, b, rtol=1e-5)
  per_example = lambda conv: jax.jit(jax.vmap(lambda x: conv(x[None], kernel, strides, padding)))
  close(per_example(onednn.conv)(x), per_example(onednn.xla_conv)(x))  # folded into the batch: one custom call
  assert 'gen_jax_onednn_conv' in per_example(onednn.conv).lower(x).as_text()
  kernels = jnp.stack([kernel, -2 * kernel])
  per_kernel = lambda conv: jax.jit(jax.vmap(lambda k: conv(x, k, strides, padding)))
  close(per_kernel(onednn.conv)(kernels), per_kernel(onednn.xla_conv)(kernels))


def test_conv_under_shard_map_is_per_device():
  geometry = (8, 6, 6, 3, 4, 3, 3, (1, 1), ((1, 1), (1, 1)))
  *_, strides, padding = geometry
  x, kernel = conv_operands(*geometry)
  mesh = jax.make_mesh((8,), ('data',))
  sharded = jax.jit(jax.shard_map(lambda x, k: onednn.conv(x, k, strides, padding), mesh=mesh,
                                  in_specs=(P('data'), P()), out_specs=P('data')))
  got = sharded(jax.device_put(x, NamedSharding(mesh, P('data'))), jax.device_put(kernel, NamedSharding(mesh, P())))
  close(got, onednn.xla_conv(x, kernel, strides, padding))


def test_forward_convs_take_onednn_only_where_it_pays_off(monkeypatch):
  x, kernel = conv_operands(*GEOMETRIES[0])  # 3x3, an 8x8 output map
  same = ((1, 1), (1, 1))
  onednn.forward_convs_pay_off.cache_clear()
  try:
    assert onednn.usable_conv(x, kernel, (1, 1), same) == onednn.forward_convs_pay_off()
    assert not onednn.usable_conv(x, kernel[1:2, 1:2], (1, 1), ((0, 0), (0, 0)))  # 1x1: no gain in the UNet step
    assert not onednn.usable_conv(x, kernel, (2, 2), same)  # 4x4 output map
    with open('/proc/cpuinfo') as f:
      has_avx2 = ' avx2 ' in f.read()
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')  # as on an AVX2 EPYC: oneDNN's AVX2 convs gain there too
    onednn.forward_convs_pay_off.cache_clear()
    assert onednn.usable_conv(x, kernel, (1, 1), same) == has_avx2
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'SSE41')  # oneDNN capped below AVX2: not measured there
    onednn.forward_convs_pay_off.cache_clear()
    assert not onednn.usable_conv(x, kernel, (1, 1), same)
  finally:
    onednn.forward_convs_pay_off.cache_clear()


@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_input_gradient_equals_xlas(geometry):
  *_, strides, padding = geometry
  x, kernel = conv_operands(*geometry)
  g = operands(*geometry)[1]
  want = jax.vjp(lambda x: onednn.xla_conv(x, kernel, strides, padding), x)[1](g)[0]  # what autodiff makes
  close(onednn.xla_input_grad(g, kernel, x.shape, strides, padding), want)
  grad = lambda g, k: onednn.input_grad(g, k, x.shape, strides, padding)
  close(jax.jit(grad)(g, kernel), want)
  assert 'gen_jax_onednn_input_grad' in jax.jit(grad).lower(g, kernel).as_text()


def test_input_gradient_derivatives_vmap_and_shard_map_are_xlas():
  geometry = (8, 9, 8, 3, 4, 4, 4, (2, 2), ((1, 2), (1, 1)))
  *_, strides, padding = geometry
  x, kernel = conv_operands(*geometry)
  g = operands(*geometry)[1]
  loss = lambda grad: (lambda g, k: jnp.sum(jnp.sin(grad(g, k, x.shape, strides, padding))))
  got = jax.jit(jax.grad(loss(onednn.input_grad), argnums=(0, 1)))(g, kernel)
  want = jax.jit(jax.grad(loss(onednn.xla_input_grad), argnums=(0, 1)))(g, kernel)
  for a, b in zip(got, want):
    close(a, b, rtol=1e-5)
  per_example = lambda grad: jax.jit(jax.vmap(lambda g: grad(g[None], kernel, (1, *x.shape[1:]), strides, padding)))
  close(per_example(onednn.input_grad)(g), per_example(onednn.xla_input_grad)(g))
  assert 'gen_jax_onednn_input_grad' in per_example(onednn.input_grad).lower(g).as_text()  # folded into the batch
  kernels = jnp.stack([kernel, -2 * kernel])
  per_kernel = lambda grad: jax.jit(jax.vmap(lambda k: grad(g, k, x.shape, strides, padding)))
  close(per_kernel(onednn.input_grad)(kernels), per_kernel(onednn.xla_input_grad)(kernels))
  mesh = jax.make_mesh((8,), ('data',))
  sharded = jax.jit(jax.shard_map(lambda g, k: onednn.input_grad(g, k, (1, *x.shape[1:]), strides, padding),
                                  mesh=mesh, in_specs=(P('data'), P()), out_specs=P('data')))
  got = sharded(jax.device_put(g, NamedSharding(mesh, P('data'))), jax.device_put(kernel, NamedSharding(mesh, P())))
  close(got, onednn.xla_input_grad(g, kernel, x.shape, strides, padding))


def test_strided_convs_input_gradients_and_transposed_convs_take_it_in_the_layers():
  """conv2d's strided input gradient and conv_transpose's forward (the same map) go through it where it pays off,
  conv_transpose's gradients through oneDNN's kernel gradient (and forward conv where that pays off), with lax's
  values, gradients and gradient-penalty gradients."""
  from jax import lax

  from gen_jax.models import layers
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 6))
  k = jax.random.normal(jax.random.PRNGKey(1), (4, 4, 6, 5)) * 0.3
  t = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 6))
  kt = jax.random.normal(jax.random.PRNGKey(3), (3, 3, 6, 5)) * 0.3
  same = ((1, 1), (1, 1))
  nets = {'xla_cpu': (lambda x, k: layers.conv2d(x, k, (2, 2), same), lambda t, k: layers.conv_transpose(
              t, k, (2, 2), 'SAME')),
          'lax': (lambda x, k: lax.conv_general_dilated(x, k, (2, 2), same, dimension_numbers=layers.DIMS),
                  lambda t, k: lax.conv_transpose(t, k, (2, 2), 'SAME', dimension_numbers=layers.DIMS))}
  penalty = lambda f: (lambda x, k: jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, k))))(x))))
  results = {}
  for name, (strided, transposed) in nets.items():
    with layers.use_forms(layers.NAMED[name]):
      results[name] = [(jax.jit(f)(a, kernel), jax.jit(jax.grad(penalty(f), (0, 1)))(a, kernel))
                       for f, a, kernel in ((strided, x, k), (transposed, t, kt))]
      lowered = [jax.jit(jax.grad(lambda x, k: jnp.sum(strided(x, k)))).lower(x, k).as_text(),
                 jax.jit(transposed).lower(t, kt).as_text()]
    assert all(('gen_jax_onednn_input_grad' in text) == (name == 'xla_cpu') for text in lowered), name
    transposed_grads = jax.jit(jax.grad(lambda t, k: jnp.sum(jnp.sin(transposed(t, k))), (0, 1))).lower(
        t, kt).as_text()
    assert ('gen_jax_onednn_kernel_grad' in transposed_grads) == (name == 'xla_cpu'), name
    assert ('gen_jax_onednn_conv' in transposed_grads) == (name == 'xla_cpu' and onednn.forward_convs_pay_off())
  for got, want in zip(jax.tree.leaves(results['xla_cpu']), jax.tree.leaves(results['lax'])):
    close(got, want, rtol=1e-5)


def test_its_derivatives_are_xlas_so_a_gradient_penalty_can_take_them():
  geometry = GEOMETRIES[1]
  *_, strides, padding = geometry
  x, g, shape = operands(*geometry)

  def loss(kernel_grad):
    return lambda x, g: jnp.sum(jnp.sin(kernel_grad(x, g, shape, strides, padding)))

  got = jax.jit(jax.grad(loss(onednn.kernel_grad), argnums=(0, 1)))(x, g)
  want = jax.jit(jax.grad(loss(onednn.xla_kernel_grad), argnums=(0, 1)))(x, g)
  for a, b in zip(got, want):
    close(a, b, rtol=1e-5)


def test_under_vmap_each_example_gets_its_own_kernel_gradient():
  geometry = GEOMETRIES[0]
  *_, strides, padding = geometry
  x, g, shape = operands(*geometry)
  per_example = lambda kg, g_batched: jax.jit(jax.vmap(
      lambda x, g: kg(x[None], g[None], shape, strides, padding), in_axes=(0, 0 if g_batched else None)))
  for g_batched in (True, False):
    g_in = g if g_batched else g[0]
    got = per_example(onednn.kernel_grad, g_batched)(x, g_in)
    assert got.shape == (x.shape[0], *shape)
    close(got, per_example(onednn.xla_kernel_grad, g_batched)(x, g_in))


def test_under_shard_map_each_device_gets_the_kernel_gradient_of_its_shard():
  geometry = (8, 6, 6, 3, 4, 3, 3, (1, 1), ((1, 1), (1, 1)))
  *_, strides, padding = geometry
  x, g, shape = operands(*geometry)
  mesh = jax.make_mesh((8,), ('data',))
  per_device = jax.jit(jax.shard_map(
      lambda x, g: onednn.kernel_grad(x, g, shape, strides, padding)[None], mesh=mesh,
      in_specs=(P('data'), P('data')), out_specs=P('data')))
  sharded = [jax.device_put(a, NamedSharding(mesh, P('data'))) for a in (x, g)]
  got = per_device(*sharded)
  want = jnp.stack([onednn.xla_kernel_grad(x[i:i + 1], g[i:i + 1], shape, strides, padding) for i in range(8)])
  close(got, want)


def test_other_dtypes_empty_operands_and_small_output_maps_stay_with_xla():
  x, g, _ = operands(*GEOMETRIES[0])  # an 8x8 output map
  assert onednn.usable_kernel_grad(x, g)
  assert not onednn.usable_kernel_grad(x.astype(jnp.bfloat16), g.astype(jnp.bfloat16))
  assert not onednn.usable_kernel_grad(x[:0], g[:0])
  assert not onednn.usable_kernel_grad(x, g[:, :4, :4])  # 16 output positions: XLA's is faster there
  kernel = jnp.ones((3, 3, x.shape[-1], g.shape[-1]))
  same = ((1, 1), (1, 1))
  assert onednn.usable_input_grad(g, kernel, x.shape, same)
  assert not onednn.usable_input_grad(g.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), x.shape, same)
  assert not onednn.usable_input_grad(g, kernel, (x.shape[0], 4, 4, x.shape[-1]), same)  # a result of 16
  assert not onednn.usable_input_grad(g, kernel, x.shape, ((-1, 1), (1, 1)))  # oneDNN takes no negative padding
  assert not onednn.usable_input_grad(g, kernel[:1, :1], x.shape, same)  # 1x1: a matmul


def test_without_a_compiler_the_layers_keep_xlas_kernel_gradient_and_say_why(tmp_path):
  script = textwrap.dedent('''
      import jax, jax.numpy as jnp
      from gen_jax import onednn
      from gen_jax.models import layers
      x = jnp.ones((2, 6, 6, 3)); k = jnp.ones((3, 3, 3, 4))
      grad = jax.grad(lambda k: jnp.sum(jnp.sin(layers.conv2d(x, k, (1, 1), ((1, 1), (1, 1))))))
      got = jax.jit(grad)(k)
      with layers.use_forms(layers.LAX):
        want = jax.jit(grad)(k)
      assert not onednn.build.load()
      assert float(jnp.max(jnp.abs(got - want))) <= 1e-5 * float(jnp.max(jnp.abs(want))), (got, want)
      print('REASON', onednn.build.unavailable_reason())
  ''')
  env = {**os.environ, 'CXX': 'no-such-compiler', 'GEN_JAX_CACHE': str(tmp_path), 'PYTHONPATH': ROOT,
         'XLA_FLAGS': ''}
  done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "no C++ compiler 'no-such-compiler'" in done.stdout
  assert 'CPU convolutions and matmuls stay with XLA' in done.stderr  # the one-line warning
  assert not list(tmp_path.iterdir())  # nothing half-built left behind


def test_a_kept_step_that_calls_onednn_loads_in_a_fresh_process_once_its_key_is_built(tmp_path):
  """step_cache loads a step without tracing it, so nothing else would register the custom call's target first:
  building the step's key does (without it the executable does not load: 'No FFI handler registered')."""
  from jax.experimental import serialize_executable
  shape, strides, padding = (3, 3, 4, 5), (1, 1), ((1, 1), (1, 1))
  x, g = jnp.ones((2, 6, 6, 4)), jnp.ones((2, 6, 6, 5))
  compiled = jax.jit(lambda x, g: onednn.kernel_grad(x, g, shape, strides, padding)).lower(x, g).compile()
  path = tmp_path / 'step.jaxstep'
  path.write_bytes(pickle.dumps(serialize_executable.serialize(compiled)))
  script = textwrap.dedent(f'''
      import jax, jax.numpy as jnp
      from gen_jax import parallel, step_cache
      from etils import epath
      mesh = parallel.make_mesh()
      assert step_cache._custom_calls(mesh).startswith('onednn_kernels_')
      loaded = step_cache._load(epath.Path({str(path)!r}), [jax.devices()[0]])
      assert loaded is not None
      print('SUM', float(loaded(jnp.ones((2, 6, 6, 4)), jnp.ones((2, 6, 6, 5))).sum()))
  ''')
  env = {**os.environ, 'PYTHONPATH': ROOT, 'XLA_FLAGS': ''}
  done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'SUM {float(compiled(x, g).sum())}' in done.stdout


def test_the_step_key_loads_the_library_whenever_a_form_calls_it():
  import dataclasses

  from gen_jax import parallel, step_cache
  from gen_jax.models import layers
  mesh = parallel.make_mesh()
  forward_only = dataclasses.replace(layers.XLA_CPU, onednn_kernel_grads=False)
  input_grads_only = dataclasses.replace(layers.LAX, onednn_input_grads=True)
  matmuls_only = dataclasses.replace(layers.LAX, onednn_matmuls=True)
  for chosen, named in ((layers.XLA_CPU, True), (forward_only, True), (input_grads_only, True), (matmuls_only, True),
                        (layers.LAX, False)):
    with layers.use_forms(chosen):
      assert bool(step_cache._custom_calls(mesh)) == named, chosen

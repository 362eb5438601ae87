"""oneDNN's batched matmul equals XLA's dot (values, derivatives, vmap, shard_map), and attention takes it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax import onednn
from gen_jax.models import attention, forms
from gen_jax.onednn import build
from tests.onednn.test_convolutions import close

pytestmark = pytest.mark.skipif(not build.supported_platform(), reason='the oneDNN wheels exist for Linux x86-64 only')


def operands(batch, m, k, n, trans_a, trans_b, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((batch, k, m) if trans_a else (batch, m, k))
  b = rng.standard_normal((batch, n, k) if trans_b else (batch, k, n))
  return jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)


@pytest.mark.parametrize('trans_a, trans_b', [(False, False), (False, True), (True, False), (True, True)])
def test_matmul_equals_xlas_dot_for_every_transpose(trans_a, trans_b):
  a, b = operands(5, 7, 9, 6, trans_a, trans_b)  # 5: unequal chunks over XLA's threads
  got = jax.jit(lambda a, b: onednn.matmul(a, b, trans_a, trans_b))(a, b)
  assert got.shape == (5, 7, 6)
  want = np.einsum('bmk,bkn->bmn', np.swapaxes(a, 1, 2) if trans_a else a, np.swapaxes(b, 1, 2) if trans_b else b)
  close(got, want)
  close(onednn.xla_matmul(a, b, trans_a, trans_b), want)
  assert 'gen_jax_onednn_matmul' in jax.jit(lambda a, b: onednn.matmul(a, b, trans_a, trans_b)).lower(a, b).as_text()


@pytest.mark.parametrize('trans_b', [False, True])
def test_a_shared_operand_is_every_examples(trans_b):
  a, b = operands(5, 7, 9, 6, False, trans_b)
  shared = b[:1]  # [1 K N]: a Dense layer's kernel, not broadcast
  got = jax.jit(lambda a, b: onednn.matmul(a, b, False, trans_b))(a, shared)
  want = np.einsum('bmk,kn->bmn', a, np.swapaxes(shared[0], 0, 1) if trans_b else shared[0])
  close(got, want)
  close(onednn.xla_matmul(a, shared, False, trans_b), want)
  loss = lambda mm: (lambda a, b: jnp.sum(jnp.sin(mm(a, b, False, trans_b))))
  for x, y in zip(jax.grad(loss(onednn.matmul), argnums=(0, 1))(a, shared),
                  jax.grad(loss(onednn.xla_matmul), argnums=(0, 1))(a, shared)):
    close(x, y, rtol=1e-5)


@pytest.mark.parametrize('batch', [1, 5, 8])  # 5: unequal chunks, each summing its examples, then the chunks added
def test_sum_batch_is_the_kernel_gradient_over_every_example(batch):
  x, g = operands(batch, 6, 7, 4, True, False)  # x [b n i] stored as a [B K M], g [b n o]
  got = jax.jit(lambda x, g: onednn.matmul(x, g, trans_a=True, sum_batch=True))(x, g)
  want = np.einsum('bki,bko->io', x, g)[None]
  close(got, want)
  close(onednn.xla_matmul(x, g, True, False, sum_batch=True), want)
  with pytest.raises(ValueError, match='trans_a=True'):
    onednn.matmul(x, g, trans_a=False, sum_batch=True)


def test_matmul_derivatives_vmap_and_shard_map_are_xlas():
  a, b = operands(8, 5, 4, 3, True, False)
  loss = lambda mm: (lambda a, b: jnp.sum(jnp.sin(mm(a, b, True, False))))
  got = jax.jit(jax.grad(loss(onednn.matmul), argnums=(0, 1)))(a, b)
  want = jax.jit(jax.grad(loss(onednn.xla_matmul), argnums=(0, 1)))(a, b)
  for x, y in zip(got, want):
    close(x, y, rtol=1e-5)
  both = lambda mm: jax.jit(jax.vmap(lambda a, b: mm(a, b, True, False)))  # folded into the batch: one call
  stacked = a.reshape(2, 4, *a.shape[1:]), b.reshape(2, 4, *b.shape[1:])
  close(both(onednn.matmul)(*stacked), both(onednn.xla_matmul)(*stacked))
  assert 'gen_jax_onednn_matmul' in both(onednn.matmul).lower(*stacked).as_text()
  one = lambda mm: jax.jit(jax.vmap(lambda a: mm(a, stacked[1][0], True, False)))  # a per example, b shared: XLA's
  close(one(onednn.matmul)(stacked[0]), one(onednn.xla_matmul)(stacked[0]))
  mesh = jax.make_mesh((8,), ('data',))
  sharded = jax.jit(jax.shard_map(lambda a, b: onednn.matmul(a, b, True, False), mesh=mesh,
                                  in_specs=(P('data'), P('data')), out_specs=P('data')))
  shard = NamedSharding(mesh, P('data'))
  close(sharded(jax.device_put(a, shard), jax.device_put(b, shard)), onednn.xla_matmul(a, b, True, False))


def test_other_dtypes_and_empty_operands_stay_with_xla():
  a, b = operands(2, 3, 4, 5, False, False)
  assert onednn.usable_matmul(a, b) == onednn.matmuls_pay_off()
  assert not onednn.usable_matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
  assert not onednn.usable_matmul(a[:0], b[:0])


def test_matmuls_are_taken_only_where_they_pay_off(monkeypatch):
  a, b = operands(2, 3, 4, 5, False, False)
  for cap in ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA'):
    monkeypatch.delenv(cap, raising=False)
  onednn.matmuls_pay_off.cache_clear()
  try:
    with open('/proc/cpuinfo') as f:
      has_avx512 = ' avx512f ' in f.read()
    assert onednn.usable_matmul(a, b) == has_avx512
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')  # as on an AVX2 EPYC: the UNet step lost there (1.02x)
    onednn.matmuls_pay_off.cache_clear()
    assert not onednn.usable_matmul(a, b)
    assert 'gen_jax_onednn_matmul' in jax.jit(onednn.matmul).lower(a, b).as_text()  # asked for directly: still there
  finally:
    onednn.matmuls_pay_off.cache_clear()


@pytest.mark.parametrize('masked', [False, True])
def test_attention_takes_it_with_the_same_values_and_gradients(masked, monkeypatch):
  monkeypatch.setattr(onednn, 'matmuls_pay_off', lambda: True)  # whatever this CPU: test the oneDNN path
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.standard_normal((2, 6, 8)), jnp.float32)
  k, v = (jnp.asarray(rng.standard_normal((2, 5, 8)), jnp.float32) for _ in range(2))
  mask = jnp.asarray([[True] * 5, [True, False, True, False, False]]) if masked else None
  loss = lambda q, k, v: jnp.sum(jnp.sin(attention.attention(q, k, v, mask, heads=2)))
  results = {}
  for on in (False, True):
    with forms.use_forms(dataclasses.replace(forms.XLA_CPU, onednn_matmuls=on)):
      fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
      assert ('gen_jax_onednn_matmul' in fn.lower(q, k, v).as_text()) == on
      results[on] = fn(q, k, v)
  for x, y in zip(jax.tree.leaves(results[True]), jax.tree.leaves(results[False])):
    close(x, y, rtol=1e-5)

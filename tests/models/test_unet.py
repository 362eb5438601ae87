"""DDPM UNet: paper parameter count (abstract init), shapes, zero init, conditioning on t/x, dropout, bf16, context.

Real forwards use tiny configs (ch 32); the zero-initialised layers make a fresh net ignore t (every residual branch
ends in a zero conv), so behaviour tests first perturb all parameters.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.models.unet import UNet, timestep_embedding

TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), dropout=0.1, num_groups=8)


def num_params(model, shape, **kwargs):
  init = lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), jnp.zeros((1,), jnp.int32), train=False,
                            **kwargs)
  return sum(leaf.size for leaf in jax.tree.leaves(jax.eval_shape(init)['params']))


def perturb(params, seed, scale=0.05, skip=lambda path: False):
  """Adds Gaussian noise to every leaf whose path (tuple of names) isn't skipped; numpy, so no per-shape compiles."""
  rng = np.random.default_rng(seed)
  noise = lambda path, leaf: leaf if skip(tuple(k.key for k in path)) else (
      np.asarray(leaf) + scale * rng.standard_normal(leaf.shape, dtype=np.float32))
  return jax.tree_util.tree_map_with_path(noise, params)


def batch(shape, b=2, seed=0):
  x = np.random.default_rng(seed).standard_normal((b, *shape), dtype=np.float32)
  t = np.arange(b, dtype=np.int32) * 100 + 7
  return x, t


@functools.partial(jax.jit, static_argnames=('model', 'train'))
def forward(model, params, x, t, *, train=False, context=None, context_mask=None, dropout_key=None):
  """Jitted `model.apply` (modules hash by config): one ~1 s compile per variant instead of slow eager op dispatch."""
  rngs = None if dropout_key is None else {'dropout': dropout_key}
  return model.apply(params, x, t, train=train, context=context, context_mask=context_mask, rngs=rngs)


@functools.cache
def tiny():
  """A real init of the tiny 32x32x3 net with cross-attention, shared by the tests that need values.

  Jitted, with an 'rbg' key: an eager init dispatches (and compiles) hundreds of small random ops, ~4x slower on a
  small CPU. `unconditional` drops the cross-attention params.
  """
  model = UNet(**TINY)
  x, t = batch((32, 32, 3))
  context = np.random.default_rng(5).standard_normal((2, 6, 12), dtype=np.float32)
  mask = np.array([[True] * 6, [True] * 3 + [False] * 3])
  init = jax.jit(lambda key: model.init(key, x, t, train=False, context=context, context_mask=mask))
  return model, init(jax.random.key(0, impl='rbg')), (x, t, context, mask)


def unconditional(params):
  return {'params': {name: p for name, p in params['params'].items() if not name.startswith('cross_')}}


def test_param_count_matches_paper_cifar10():
  model = UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1)
  assert num_params(model, (32, 32, 3)) == 35_746_307


def test_param_count_small_config():
  # Mirrors diffusers UNet2DModel(block_out_channels=(64, 128, 128), layers_per_block=2), which has ~6.47M.
  assert num_params(UNet(ch=64, ch_mult=(1, 2, 2), attn_resolutions=(16,)), (32, 32, 3)) == 6_472_195


def test_context_adds_params_only_when_given():
  model = UNet(**TINY)
  init = lambda **kwargs: jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                            jnp.zeros((1,)), train=False, **kwargs))['params']
  plain, conditional = init(), init(context=jnp.zeros((1, 5, 12)))
  assert not [name for name in plain if name.startswith('cross_')]
  assert set(conditional) - set(plain) == {'cross_down_1_attn_0', 'cross_mid_attn_1', 'cross_up_1_attn_0',
                                           'cross_up_1_attn_1'}


@pytest.mark.parametrize('shape, attn, out_channels', [((32, 32, 3), 16, None), ((28, 28, 1), 14, None),
                                                      ((28, 28, 1), 14, 2)])
def test_output_shape(shape, attn, out_channels):
  model = UNet(**{**TINY, 'attn_resolutions': (attn,), 'out_channels': out_channels})
  x, t = jnp.zeros((2, *shape)), jnp.zeros((2,), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, t, train=False))
  assert any('attn' in name for name in params['params'])  # the attention resolution was hit
  out = jax.eval_shape(lambda p: model.apply(p, x, t, train=False), params)
  assert out.shape == (*x.shape[:-1], out_channels or shape[-1]) and out.dtype == jnp.float32


def test_zero_output_and_float32_params_at_init():
  model, params, (x, t, context, mask) = tiny()
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  out = forward(model, unconditional(params), x, t, train=False)
  assert out.shape == x.shape and not np.any(np.asarray(out))  # zero-initialised conv_out
  assert not np.any(np.asarray(forward(model, params, x, t, train=False, context=context, context_mask=mask)))


def test_output_depends_on_t_and_x():
  model, params, (x, t, _, _) = tiny()
  params = perturb(unconditional(params), 1)
  out = forward(model, params, x, t, train=False)
  assert np.all(np.isfinite(out)) and np.abs(out).mean() > 1e-3
  assert np.abs(out - forward(model, params, x, t + 50, train=False)).mean() > 1e-4
  assert np.abs(out - forward(model, params, x + 0.5, t, train=False)).mean() > 1e-4
  # float timesteps (e.g. continuous time) go through the same embedding
  np.testing.assert_allclose(forward(model, params, x, t.astype(np.float32), train=False), out, atol=1e-6)


def test_dropout_only_in_training():
  model, params, (x, t, _, _) = tiny()
  params = perturb(unconditional(params), 1)
  eval_out = forward(model, params, x, t, train=False)
  np.testing.assert_array_equal(forward(model, params, x, t, train=False, dropout_key=jax.random.key(3)),
                                eval_out)
  train = lambda seed: forward(model, params, x, t, train=True, dropout_key=jax.random.key(seed))
  a, b = train(1), train(2)
  np.testing.assert_array_equal(train(1), a)
  assert np.abs(a - b).mean() > 1e-4 and np.abs(a - eval_out).mean() > 1e-4


def test_bfloat16_computation_float32_params():
  model, params, (x, t, _, _) = tiny()
  params = perturb(unconditional(params), 1)
  bf16 = UNet(**TINY, dtype=jnp.bfloat16)
  out, ref = forward(bf16, params, x, t, train=False), forward(model, params, x, t, train=False)
  assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
  assert np.abs(out - ref).mean() < 0.05 * np.abs(ref).mean()  # same function, bf16 rounding only
  jaxpr = str(jax.make_jaxpr(functools.partial(bf16.apply, train=False))(params, x, t))
  assert 'bf16' in jaxpr


def test_cross_attention_starts_as_identity_and_respects_mask():
  model, params, (x, t, context, mask) = tiny()
  cross_out = lambda path: path[1].startswith('cross_') and path[2] == 'proj_out'
  params = perturb(params, 1, skip=cross_out)  # everything but the cross-attention output projections
  plain = forward(model, unconditional(params), x, t, train=False)
  out = forward(model, params, x, t, train=False, context=context, context_mask=mask)
  np.testing.assert_allclose(out, plain, atol=1e-5)

  params = perturb(params, 2, skip=lambda path: not cross_out(path))
  out = forward(model, params, x, t, train=False, context=context, context_mask=mask)
  assert np.abs(out - plain).mean() > 1e-4
  masked_changed = context.copy()
  masked_changed[1, 3:] += 10.0  # only tokens the mask hides
  np.testing.assert_allclose(forward(model, params, x, t, train=False, context=masked_changed, context_mask=mask),
                             out, atol=1e-5)


def test_timestep_embedding():
  emb = timestep_embedding(jnp.array([0, 10]), 7)
  assert emb.shape == (2, 7)
  np.testing.assert_allclose(emb[0], [0, 0, 0, 1, 1, 1, 0])  # sin half, cos half, zero pad for odd dim
  np.testing.assert_allclose(emb[1, 0], np.sin(10.0), rtol=1e-6)  # first frequency is 1


def test_rejects_indivisible_size():
  model = UNet(**{**TINY, 'ch_mult': (1, 2, 2)})
  with pytest.raises(ValueError, match='divisible'):
    model.init(jax.random.key(0), jnp.zeros((1, 30, 30, 1)), jnp.zeros((1,)), train=False)


def test_pooled_embedding_and_context_projection_condition_the_output():
  model = UNet(**TINY, cross_attn_heads=2, context_dim=16)
  x, t = batch((32, 32, 3))
  context = np.random.default_rng(5).standard_normal((2, 6, 12), dtype=np.float32)
  pooled = np.random.default_rng(6).standard_normal((2, 12), dtype=np.float32)
  kwargs = dict(context=context, context_mask=np.ones((2, 6), bool), pooled=pooled)
  params = jax.jit(lambda key: model.init(key, x, t, train=False, **kwargs))(jax.random.key(0, impl='rbg'))
  assert params['params']['context_proj']['kernel'].shape == (12, 16)
  assert params['params']['pooled_proj']['kernel'].shape == (12, 4 * TINY['ch'])
  params = perturb(params, 1)
  out = forward_pooled(model, params, x, t, **kwargs)
  other = forward_pooled(model, params, x, t, **{**kwargs, 'pooled': pooled[::-1]})
  assert np.abs(out - other).mean() > 1e-4


@functools.partial(jax.jit, static_argnames=('model',))
def forward_pooled(model, params, x, t, context, context_mask, pooled):
  return model.apply(params, x, t, train=False, context=context, context_mask=context_mask, pooled=pooled)


def test_remat_gives_the_same_params_values_and_gradients():
  """Per-block rematerialisation recomputes activations in the backward pass: same parameter tree, and gradients
  (dropout on, cross-attention in use) equal to the plain net's within float32 rounding (XLA may fuse the
  recomputed blocks differently)."""
  model, params, (x, t, context, mask) = tiny()
  params = perturb(params, 3)
  remat = UNet(**TINY, remat=True)
  assert jax.tree.structure(jax.eval_shape(lambda: remat.init(
      jax.random.key(0), x, t, train=False, context=context, context_mask=mask))) == jax.tree.structure(params)

  @functools.partial(jax.jit, static_argnames='net')
  def grads(net, params):
    loss = lambda p: jnp.mean(net.apply(p, x, t, train=True, context=context, context_mask=mask,
                                        rngs={'dropout': jax.random.key(1)}) ** 2)
    return jax.value_and_grad(loss)(params)

  (loss, g), (loss_remat, g_remat) = grads(model, params), grads(remat, params)
  np.testing.assert_allclose(loss_remat, loss, rtol=1e-6)  # the same dropout masks
  scale = max(np.abs(a).max() for a in jax.tree.leaves(g))
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_remat), strict=True):  # biases before a GroupNorm: ~1e-10
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * scale)
  jaxpr = str(jax.make_jaxpr(lambda p: jax.grad(lambda q: jnp.sum(remat.apply(q, x, t, train=False)))(p))(
      unconditional(params)))
  assert 'checkpoint' in jaxpr or 'remat' in jaxpr

"""GAN networks (DCGAN, MLP GAN, WGAN-GP ResNet): shapes, exact parameter counts, BatchNorm (running averages,
cross-device statistics under shard_map), normalisation choices, dropout.

Shapes and counts come from jax.eval_shape (no compilation); real forwards use small widths and jitted functions.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from gen_jax.models import dcgan
from gen_jax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gen_jax.models.layers import UpConv4x4
from gen_jax.models.mlp_gan import MLPDiscriminator, MLPGenerator
from gen_jax.models.resnet_gan import ResNetCritic, ResNetGenerator

KEY = jax.random.key(0)


def abstract_variables(model, x, **kwargs):
  return jax.eval_shape(lambda: model.init(KEY, x, train=False, **kwargs))


def num_params(variables):
  return sum(leaf.size for leaf in jax.tree.leaves(variables['params']))


@functools.partial(jax.jit, static_argnames=('model',))
def init(model, x):
  """Real init, jitted with an 'rbg' key: eager init dispatches (and compiles) many small random ops."""
  return model.init(jax.random.key(0, impl='rbg'), x, train=False)


@functools.partial(jax.jit, static_argnames=('model', 'train'))
def forward(model, variables, x, *, train=False, dropout_key=None):
  """Jitted apply; with train=True also returns the updated batch_stats (empty for models without BatchNorm)."""
  rngs = None if dropout_key is None else {'dropout': dropout_key}
  if train:
    return model.apply(variables, x, train=True, rngs=rngs, mutable=['batch_stats'])
  return model.apply(variables, x, train=False, rngs=rngs)


def normal(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


# --- shapes ---------------------------------------------------------------------------------------------------
GENERATORS = [
    (DCGANGenerator, (28, 28, 1), 100),
    (DCGANGenerator, (32, 32, 3), 100),
    (DCGANGenerator, (64, 64, 3), 100),
    (MLPGenerator, (28, 28, 1), 100),
    (MLPGenerator, (32, 32, 3), 100),
    (ResNetGenerator, (32, 32, 3), 128),
]


@pytest.mark.parametrize('cls,image_shape,latent_dim', GENERATORS)
def test_generator_shapes(cls, image_shape, latent_dim):
  model = cls(image_shape=image_shape, latent_dim=latent_dim)
  z = jnp.zeros((3, latent_dim))
  variables = abstract_variables(model, z)
  for train in (False, True):
    out = jax.eval_shape(lambda v: model.apply(v, z, train=train, mutable=['batch_stats'])[0], variables)
    assert out.shape == (3, *image_shape) and out.dtype == jnp.float32


@pytest.mark.parametrize('model,image_shape', [
    (DCGANDiscriminator(), (28, 28, 1)),
    (DCGANDiscriminator(norm='layer'), (32, 32, 3)),
    (DCGANDiscriminator(norm='none'), (64, 64, 3)),
    (MLPDiscriminator(), (28, 28, 1)),
    (MLPDiscriminator(), (32, 32, 3)),
    (ResNetCritic(), (32, 32, 3)),
])
def test_discriminator_shapes(model, image_shape):
  x = jnp.zeros((3, *image_shape))
  variables = abstract_variables(model, x)
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert out.shape == (3,) and out.dtype == jnp.float32


@pytest.mark.parametrize('model,latent_dim', [
    (DCGANGenerator((28, 28, 1), latent_dim=8, ngf=4), 8),
    (DCGANGenerator((32, 32, 3), latent_dim=8, ngf=4), 8),
    (DCGANGenerator((64, 64, 3), latent_dim=8, ngf=4), 8),
    (MLPGenerator((28, 28, 1), latent_dim=8, widths=(16, 32)), 8),
    (MLPGenerator((32, 32, 3), latent_dim=8, widths=(16, 32)), 8),
    (ResNetGenerator((32, 32, 3), latent_dim=8, ch=8), 8),
])
def test_generator_outputs_lie_in_tanh_range(model, latent_dim):
  z = normal((4, latent_dim))
  variables = init(model, z)
  # Parameters x10 push pre-tanh values far past [-1, 1] (train mode: BatchNorm rescales the hidden layers anyway).
  variables = {**variables, 'params': jax.tree.map(lambda p: 10.0 * p, variables['params'])}
  out = np.asarray(forward(model, variables, z, train=True)[0])
  assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1.0)
  assert np.abs(out).max() > 0.99 and out.std() > 0.1  # saturated somewhere, yet not a constant image


def test_unsupported_image_sizes_are_value_errors():
  for shape in [(16, 16, 3), (28, 32, 1), (48, 48, 3), (128, 128, 3)]:
    with pytest.raises(ValueError, match='DCGAN supports square images'):
      abstract_variables(DCGANGenerator(shape), jnp.zeros((1, 100)))
    with pytest.raises(ValueError, match='DCGAN supports square images'):
      abstract_variables(DCGANDiscriminator(), jnp.zeros((1, *shape)))
  with pytest.raises(ValueError, match='32x32 images only'):
    abstract_variables(ResNetGenerator((28, 28, 1)), jnp.zeros((1, 128)))
  with pytest.raises(ValueError, match="norm must be 'batch', 'layer' or 'none'"):
    abstract_variables(DCGANDiscriminator(norm='group'), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize('out', [5, 20])  # UpConv4x4: one transposed conv below 16 channels, 4 phase convs above
@pytest.mark.parametrize('impl', ['flax', 'up_conv'])
def test_up_layer_is_pytorchs_conv_transpose_k4_s2_p1(impl, out):
  """The generator's up-layer gives PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1) exactly, with the
  kernel flipped (Flax correlates the dilated input; PyTorch scatters): a PyTorch checkpoint ports over."""
  x, w = normal((2, 3, 3, 2)), normal((4, 4, 2, out), seed=1)  # w: PyTorch's weight as [kh kw in out]
  expected = np.zeros((2, 8, 8, out), np.float32)  # out[2i - 1 + k] += x[i] w[k], cropped to [0, 6)
  for n, i1, i2, k1, k2 in np.ndindex(2, 3, 3, 4, 4):
    o1, o2 = 2 * i1 - 1 + k1, 2 * i2 - 1 + k2
    expected[n, o1 + 1, o2 + 1] += x[n, i1, i2] @ w[k1, k2]
  if impl == 'flax':
    layer = nn.ConvTranspose(out, (4, 4), strides=(2, 2), padding=dcgan.UP_PADDING, use_bias=False)
  else:
    layer = UpConv4x4(out)
  got = layer.apply({'params': {'kernel': w[::-1, ::-1]}}, x)
  np.testing.assert_allclose(got, expected[:, 1:7, 1:7], rtol=1e-5, atol=1e-5)


# --- parameter counts -----------------------------------------------------------------------------------------
def linear(n_in, n_out, bias=True):
  return n_in * n_out + (n_out if bias else 0)


def bn(c):  # scale + bias; the running mean/var are batch_stats, not params (PyTorch: buffers)
  return 2 * c


def test_mlp_gan_parameter_counts_exact():
  widths_g, widths_d, pixels = (256, 512, 1024), (1024, 512, 256), 28 * 28 * 1
  generator = sum(linear(n_in, n_out) + bn(n_out) for n_in, n_out in zip((100, *widths_g[:-1]), widths_g))
  generator += linear(widths_g[-1], pixels)
  discriminator = sum(linear(n_in, n_out) for n_in, n_out in zip((pixels, *widths_d), (*widths_d, 1)))
  # 100*256+256 + 512 + 256*512+512 + 1024 + 512*1024+1024 + 2048 + 1024*784+784
  assert generator == 1_489_936
  # 784*1024+1024 + 1024*512+512 + 512*256+256 + 256*1+1
  assert discriminator == 1_460_225
  assert num_params(abstract_variables(MLPGenerator((28, 28, 1)), jnp.zeros((1, 100)))) == generator
  assert num_params(abstract_variables(MLPDiscriminator(), jnp.zeros((1, 28, 28, 1)))) == discriminator


def pytorch_dcgan_counts(size, nz=100, ngf=64, ndf=64, nc=3):
  """The PyTorch DCGAN example's layers, generalised to 32x32 by dropping its widest layer: every conv has a 4x4
  kernel and no bias, so a layer holds in*out*16 weights, and each BatchNorm 2*channels.

  G: ConvT(nz, ngf*2**(n-1), 4, 1, 0) BN, then ConvT(ngf*2**k, ngf*2**(k-1), 4, 2, 1) BN down to ngf, ConvT(ngf, nc).
  D: Conv(nc, ndf), then Conv(ndf*2**(k-1), ndf*2**k) BN up to ndf*2**(n-1), Conv(ndf*2**(n-1), 1, 4, 1, 0).
  """
  n = {32: 3, 64: 4}[size]
  g_widths = [ngf * 2 ** k for k in reversed(range(n))]  # 32x32: 256, 128, 64
  g = sum(16 * c_in * c_out for c_in, c_out in zip([nz, *g_widths], [*g_widths, nc])) + sum(map(bn, g_widths))
  d_widths = [ndf * 2 ** k for k in range(n)]  # 32x32: 64, 128, 256
  d = sum(16 * c_in * c_out for c_in, c_out in zip([nc, *d_widths], [*d_widths, 1])) + sum(map(bn, d_widths[1:]))
  return g, d


@pytest.mark.parametrize('size', [32, 64])
def test_dcgan_parameter_counts_match_pytorch_example(size):
  g, d = pytorch_dcgan_counts(size)
  if size == 64:  # the example as published (nz=100, ngf=ndf=64, nc=3)
    assert (g, d) == (3_576_704, 2_765_568)
  else:
    assert (g, d) == (1_068_928, 663_296)
  shape = (size, size, 3)
  assert num_params(abstract_variables(DCGANGenerator(shape), jnp.zeros((1, 100)))) == g
  assert num_params(abstract_variables(DCGANDiscriminator(), jnp.zeros((1, *shape)))) == d


def test_resnet_gan_parameter_counts_exact():
  ch, nz, nc = 128, 128, 3
  conv3 = lambda c_in, c_out: 9 * c_in * c_out + c_out
  up_block = bn(ch) + conv3(ch, ch) + bn(ch) + conv3(ch, ch) + linear(ch, ch)  # shortcut: 1x1 conv
  generator = linear(nz, 16 * ch) + 3 * up_block + bn(ch) + conv3(ch, nc)
  critic = (conv3(nc, ch) + conv3(ch, ch) + linear(nc, ch)  # optimised block
            + conv3(ch, ch) + conv3(ch, ch) + linear(ch, ch)  # down-block
            + 2 * 2 * conv3(ch, ch)  # two plain blocks, identity shortcuts
            + linear(ch, 1))
  assert (generator, critic) == (1_204_483, 1_053_825)
  assert num_params(abstract_variables(ResNetGenerator(), jnp.zeros((1, nz)))) == generator
  assert num_params(abstract_variables(ResNetCritic(), jnp.zeros((1, 32, 32, nc)))) == critic


# --- BatchNorm ------------------------------------------------------------------------------------------------
def test_batchnorm_updates_running_stats_in_train_and_uses_them_in_eval():
  model = MLPGenerator((4, 4, 1), latent_dim=6, widths=(8, 16))
  z = normal((5, 6))
  variables = init(model, z)
  _, updated = forward(model, variables, z, train=True)
  # First BatchNorm: running stats start at (0, 1) and move 10% towards the batch's (biased) mean and variance.
  dense = variables['params']['dense_0']
  pre = np.asarray(z, np.float64) @ np.asarray(dense['kernel'], np.float64) + np.asarray(dense['bias'])
  stats = updated['batch_stats']['bn_0']
  np.testing.assert_allclose(stats['mean'], 0.1 * pre.mean(0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * pre.var(0), rtol=1e-4)
  assert not np.allclose(updated['batch_stats']['bn_1']['mean'], 0.0)

  other = z.copy()
  other[1:] = normal((4, 6), seed=1)  # same first example, different rest of the batch
  eval_a, eval_b = forward(model, variables, z), forward(model, variables, other)
  np.testing.assert_array_equal(eval_a[0], eval_b[0])  # running averages: each example on its own
  train_a, train_b = forward(model, variables, z, train=True)[0], forward(model, variables, other, train=True)[0]
  assert not np.allclose(train_a[0], train_b[0], atol=1e-3)  # batch statistics couple the examples


@pytest.mark.parametrize('bn_axis_name', ['data', None])
def test_cross_device_batchnorm_matches_the_global_batch(bn_axis_name):
  """Under shard_map over 8 devices (2 examples each), BatchNorm with bn_axis_name='data' normalises with the global
  batch's statistics: outputs and updated running stats equal one device's on all 16. Without it each device
  normalises with its own 2 examples and the outputs differ (the comparison can fail)."""
  mesh = Mesh(np.array(jax.devices()), ('data',))
  assert mesh.size == 8
  sharded_model = DCGANGenerator((28, 28, 1), latent_dim=8, ngf=4, bn_axis_name=bn_axis_name)
  reference = DCGANGenerator((28, 28, 1), latent_dim=8, ngf=4)
  z = normal((16, 8))
  variables = init(reference, z)  # same parameter tree: the axis name only changes how statistics are averaged
  expected, expected_stats = forward(reference, variables, z, train=True)

  def step(variables, z):
    out, updated = sharded_model.apply(variables, z, train=True, mutable=['batch_stats'])
    return (out, updated['batch_stats']) if bn_axis_name else out

  out_specs = (P('data'), P()) if bn_axis_name else P('data')
  sharded = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P('data')), out_specs=out_specs))
  if bn_axis_name:
    out, stats = sharded(variables, z)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), stats, expected_stats['batch_stats'])
  else:
    out = sharded(variables, z)
    assert out.shape == expected.shape
    assert not np.allclose(out, expected, atol=1e-3)


# --- normalisation choices, dropout ---------------------------------------------------------------------------
def test_only_batch_norm_creates_batch_stats():
  x = jnp.zeros((2, 32, 32, 3))
  assert 'batch_stats' in abstract_variables(DCGANDiscriminator(), x)
  layer = abstract_variables(DCGANDiscriminator(norm='layer'), x)
  assert 'batch_stats' not in layer
  assert layer['params']['down_1_ln']['scale'].shape == (128,)  # affine per channel, statistics over h w c
  assert 'batch_stats' not in abstract_variables(DCGANDiscriminator(norm='none'), x)
  assert 'batch_stats' not in abstract_variables(ResNetCritic(), x)
  assert 'batch_stats' not in abstract_variables(MLPDiscriminator(), x)


@pytest.mark.parametrize('model', [DCGANDiscriminator(ndf=4, norm='layer'), ResNetCritic(ch=8)])
def test_wgan_gp_critics_score_each_example_on_its_own(model):
  """The gradient penalty is per example, so in train mode a critic's score must not depend on the rest of the batch."""
  x = normal((3, 32, 32, 3))
  other = x.copy()
  other[1:] = normal((2, 32, 32, 3), seed=1)
  variables = init(model, x)
  a, b = forward(model, variables, x, train=True)[0], forward(model, variables, other, train=True)[0]
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)


def test_mlp_discriminator_dropout_only_in_train():
  model = MLPDiscriminator(widths=(32, 16))
  x = normal((4, 28, 28, 1))
  variables = init(model, x)
  key_a, key_b = jax.random.key(1), jax.random.key(2)
  eval_a = forward(model, variables, x, dropout_key=key_a)
  np.testing.assert_array_equal(eval_a, forward(model, variables, x, dropout_key=key_b))
  np.testing.assert_array_equal(eval_a, forward(model, variables, x))
  train_a = forward(model, variables, x, train=True, dropout_key=key_a)[0]
  train_b = forward(model, variables, x, train=True, dropout_key=key_b)[0]
  np.testing.assert_array_equal(train_a, forward(model, variables, x, train=True, dropout_key=key_a)[0])
  assert not np.allclose(train_a, train_b)
  assert not np.allclose(train_a, eval_a)

"""A conv's kernel gradient (dL/dkernel) on the CPU through oneDNN, the library PyTorch's CPU convolutions use.

Why: on a 2-core Intel Sapphire Rapids the DDPM UNet step (ch 64, batch 16) spent 260 ms in XLA:CPU's
kernel-gradient convolutions against 211 ms in PyTorch's, the whole of its 2% gap to the PyTorch peer: XLA's
(Eigen's) version first copies x to [c h w b], and no jnp form of it was faster (README). oneDNN's own, alone, batch
16: 3x3 64->64 at 32x32 4.1 vs 9.1 ms, 192->64 12.6 vs 26.1 ms, 128->128 at 16x16 4.1 vs 6.3 ms, 1x1 128->64 at 32x32
1.2 vs 4.5 ms.

It runs as an XLA FFI custom call (`kernel_grad.cc`, built by `build.py` against the `onednn-cpu-gomp` wheel), for
float32 on the CPU only: `kernel_grad` lowers to XLA's own convolution on other platforms, for other dtypes and
where oneDNN is unavailable. Its derivatives (a gradient penalty differentiates a kernel gradient again) are lax's.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from gen_jax import parallel
from gen_jax.onednn import build

DIMS = ('NHWC', 'HWIO', 'NHWC')


def xla_kernel_grad(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], strides, padding) -> jax.Array:
  """dL/dkernel of conv(x, kernel) given dL/dout g: XLA's own kernel-gradient convolution (linear in x and in g)."""
  conv = lambda k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DIMS)
  kernel = parallel.varying_like(jnp.zeros(kernel_shape, x.dtype), x, g)  # else autodiff sums it over devices
  return jax.vjp(conv, kernel)[1](g)[0]


# oneDNN's kernel gradient loses where the conv's output map is small (its kernels work over output positions):
# batch 64, 2-core Sapphire Rapids, oneDNN / XLA time: 4x4 s2 128->256 from 8x8 (4x4 out) 1.32-1.39, from 7x7 (3x3)
# 1.69, 256->512 from 4x4 (2x2) 3.78, 3x3 256->256 at 4x4 1.18; at 7x7 and more it wins (0.43-0.89: 3x3 128->128 at
# 7x7 0.70, at 8x8 256->256 0.88, 4x4 s2 128->256 from 16x16 0.89).
MIN_OUTPUT_POSITIONS = 32


def usable(x: jax.Array, g: jax.Array) -> bool:
  """Whether `kernel_grad` should take these operands (float32, non-empty, an output map of at least
  MIN_OUTPUT_POSITIONS, the CPU the default backend: a GPU host neither builds nor loads it) and oneDNN loads here
  (built once)."""
  return (x.dtype == g.dtype == jnp.float32 and x.size > 0 and g.size > 0
          and g.shape[1] * g.shape[2] >= MIN_OUTPUT_POSITIONS and jax.default_backend() == 'cpu' and build.load())


def kernel_grad(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """dL/dkernel [kh kw ci co] of an NHWC/HWIO conv with x [b h w ci] and g = dL/dout [b oh ow co]: oneDNN's on the
  CPU, XLA's elsewhere and where oneDNN does not load (`usable` says where oneDNN is worth taking)."""
  args = tuple(kernel_shape), tuple(strides), tuple(map(tuple, padding))
  return _kernel_grad(x, g, *args) if build.load() else xla_kernel_grad(x, g, *args)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _kernel_grad(x, g, kernel_shape, strides, padding):
  on_cpu = functools.partial(_onednn_call, kernel_shape=kernel_shape, strides=strides, padding=padding)
  elsewhere = functools.partial(xla_kernel_grad, kernel_shape=kernel_shape, strides=strides, padding=padding)
  return lax.platform_dependent(x, g, cpu=on_cpu, default=elsewhere)


@_kernel_grad.defjvp
def _kernel_grad_jvp(kernel_shape, strides, padding, primals, tangents):
  # Bilinear in (x, g); the tangent map stays lax's, so reverse mode can transpose it.
  (x, g), (dx, dg) = primals, tangents
  tangent = (xla_kernel_grad(dx, g, kernel_shape, strides, padding)
             + xla_kernel_grad(x, dg, kernel_shape, strides, padding))
  return _kernel_grad(x, g, kernel_shape, strides, padding), tangent


def _onednn_call(x, g, *, kernel_shape, strides, padding):
  return _onednn_fn(kernel_shape, strides, padding)(x, g)


@functools.cache
def _onednn_fn(kernel_shape, strides, padding):
  """The custom call for one conv geometry. Under vmap (e.g. the VAE's per-example losses) each example has its own
  kernel gradient: that stays XLA's own batched convolution, as before oneDNN."""
  (top, bottom), (left, right) = padding
  call = jax.ffi.ffi_call(build.TARGET, jax.ShapeDtypeStruct(kernel_shape, jnp.float32))

  @jax.custom_batching.custom_vmap
  def onednn_kernel_grad(x, g):
    result = call(x, g, stride_h=int(strides[0]), stride_w=int(strides[1]), pad_top=int(top),
                  pad_bottom=int(bottom), pad_left=int(left), pad_right=int(right))
    return parallel.varying_like(result, x, g)  # per device under shard_map, as XLA's own would be

  @onednn_kernel_grad.def_vmap
  def per_example(axis_size, in_batched, x, g):
    x, g = (a if batched else jnp.broadcast_to(a, (axis_size, *a.shape)) for a, batched in zip((x, g), in_batched))
    one = functools.partial(xla_kernel_grad, kernel_shape=kernel_shape, strides=strides, padding=padding)
    return jax.vmap(one)(x, g), True

  return onednn_kernel_grad

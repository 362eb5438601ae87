"""Convolutions and batched matmuls on the CPU through oneDNN, the library PyTorch's CPU convolutions use: the forward
conv, dL/dx and dL/dkernel, and attention's matmuls.

Why: on a 2-core Intel Sapphire Rapids the DDPM UNet step (ch 64, batch 16) spent 260 ms in XLA:CPU's kernel-gradient
convolutions against 211 ms in PyTorch's, the whole of its 2% gap to the PyTorch peer: XLA's (Eigen's) version first
copies x to [c h w b], and no jnp form of it was faster (benchmarks/RESULTS.md). oneDNN's own, alone, batch 16: 3x3
64->64 at 32x32 4.1 vs 9.1 ms, 192->64 12.6 vs 26.1 ms, 128->128 at 16x16 4.1 vs 6.3 ms, 1x1 128->64 at 32x32 1.2 vs
4.5 ms. Its 3x3 forward conv took 0.70-0.83x XLA's time (64->64 at 32x32 3.9 vs 5.6 ms, 256->128 at 16x16 7.2 vs 9.2
ms); its 1x1 forward conv then 2.9x (5.0 vs 1.75 ms; later 0.84-0.88x, no gain in the step), so 1x1 convs keep XLA's.
In the step (`ab_step.py`, same host): kernel gradients B/A 0.897, then forward convs 0.903. With both sides limited
to AVX2 (`xla_cpu_max_isa`, ONEDNN_MAX_CPU_ISA) the kernel gradients still gained (0.943) and the forward convs lost
(1.187) while their kernel was in XLA's HWIO (oneDNN then took its im2col + GEMM form); with the kernel in the layout
oneDNN picks (reordered in each call; brgconv:avx2) they gain there too (0.936; 0.905 uncapped, as with HWIO), so
forward convs go through oneDNN on CPUs with AVX2 or more (`forward_convs_pay_off`). The input gradient of a strided
conv (also a transposed conv's forward: the same map) took 0.45-0.72x XLA's time alone (4x4 stride 2 at 8x8 to 32x32,
3x3 stride 2; the kernel in oneDNN's own layout where dx has 16+ channels), so it goes through oneDNN on every x86-64
CPU: DCGAN D+G step B/A 0.815 (AVX2 cap 0.906), WGAN-GP 5:1 iteration (DCGAN-style nets) 0.922
(benchmarks/RESULTS.md).

Batched matmuls (`matmul`: attention's q k^T, w v and the four of the backward; `models/dense.py`'s Dense layers and
1x1 convs) ran 1.5-2.7x faster alone than XLA's dots (YNNPACK: slowest where an operand is read transposed); the UNet
step took 0.969x the time with them, on AVX-512 CPUs (`matmuls_pay_off`; benchmarks/RESULTS.md).

All four run as XLA FFI custom calls (`convolutions.cc`, `matmul.cc`, built by `build.py` against the
`onednn-cpu-gomp` wheel), for float32 on the CPU only: they lower to XLA's own convolutions and dots on other
platforms, under vmap (except a forward conv vmapped over its input only, or a matmul over both operands, folded into
the batch) and where oneDNN is unavailable (`usable_*` say where oneDNN is worth taking). Their derivatives (autodiff
of the forward conv outside a custom_vjp; a gradient penalty differentiating a kernel gradient) are lax's: all are
bilinear.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from gen_jax import parallel
from gen_jax.onednn import build

DIMS = ('NHWC', 'HWIO', 'NHWC')
# oneDNN loses where the conv's output map is small (its kernels work over output positions): kernel gradients,
# batch 64, 2-core Sapphire Rapids, oneDNN / XLA time: 4x4 s2 128->256 from 8x8 (4x4 out) 1.32-1.39, from 7x7 (3x3)
# 1.69, 256->512 from 4x4 (2x2) 3.78, 3x3 256->256 at 4x4 1.18; at 7x7 and more it wins (0.43-0.89: 3x3 128->128 at
# 7x7 0.70, at 8x8 256->256 0.88, 4x4 s2 128->256 from 16x16 0.89).
MIN_OUTPUT_POSITIONS = 32


def xla_conv(x: jax.Array, kernel: jax.Array, strides, padding) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMS)


def xla_kernel_grad(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], strides, padding) -> jax.Array:
  """dL/dkernel of conv(x, kernel) given dL/dout g: XLA's own kernel-gradient convolution (linear in x and in g)."""
  kernel = parallel.varying_like(jnp.zeros(kernel_shape, x.dtype), x, g)  # else autodiff sums it over devices
  return jax.vjp(lambda k: xla_conv(x, k, strides, padding), kernel)[1](g)[0]


def xla_input_grad(g: jax.Array, kernel: jax.Array, x_shape: tuple[int, ...], strides, padding) -> jax.Array:
  """dL/dx [b h w ci] of conv(x, kernel) given dL/dout g: XLA's own, the input-dilated conv of g with the kernel
  flipped and its in/out channels swapped that autodiff makes (linear in g and in the kernel)."""
  (kh, kw), ((top, _), (left, _)) = kernel.shape[:2], padding
  high = [size + low - (out - 1) * stride - 1
          for size, low, out, stride in zip(x_shape[1:3], (top, left), g.shape[1:3], strides)]
  flipped = jnp.swapaxes(kernel, 2, 3)[::-1, ::-1]
  return lax.conv_general_dilated(g, flipped, (1, 1), ((kh - 1 - top, high[0]), (kw - 1 - left, high[1])),
                                  lhs_dilation=tuple(strides), dimension_numbers=DIMS)


def _worth_it(operands: tuple[jax.Array, ...], output_hw: tuple[int, int]) -> bool:
  return (all(a.dtype == jnp.float32 and a.size > 0 for a in operands)
          and output_hw[0] * output_hw[1] >= MIN_OUTPUT_POSITIONS and jax.default_backend() == 'cpu' and build.load())


def usable_kernel_grad(x: jax.Array, g: jax.Array) -> bool:
  """Whether `kernel_grad` should take these (float32, non-empty, an output map of at least MIN_OUTPUT_POSITIONS,
  the CPU the default backend: a GPU host neither builds nor loads oneDNN) and oneDNN loads here (built once)."""
  return _worth_it((x, g), g.shape[1:3])


def _cpu_has(flags: set[str], onednn_isas: tuple[str, ...]) -> bool:
  """Whether this CPU has all `flags` (/proc/cpuinfo) and ONEDNN_MAX_CPU_ISA (if set) allows one of `onednn_isas`."""
  cap = os.environ.get('ONEDNN_MAX_CPU_ISA', os.environ.get('DNNL_MAX_CPU_ISA', 'ALL')).upper()
  if cap != 'ALL' and not any(isa in cap for isa in onednn_isas):
    return False
  try:
    with open('/proc/cpuinfo') as f:
      found = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
  except OSError:
    return False
  return flags <= set(found)


@functools.cache
def forward_convs_pay_off() -> bool:
  """Whether this CPU runs oneDNN's forward convs faster than XLA's: where it has AVX2 and FMA (and
  ONEDNN_MAX_CPU_ISA does not cap oneDNN below them): measured with AVX2 (0.936 in the UNet step) and AVX-512, not
  on older vector units."""
  return _cpu_has({'avx2', 'fma'}, ('AVX2', 'AVX512', 'AMX'))


@functools.cache
def matmuls_pay_off() -> bool:
  """Whether this CPU runs the UNet step faster with oneDNN's matmuls: where it has AVX-512 (step B/A 0.955-0.977 on
  the Sapphire Rapids); capped at AVX2 the step lost (1.009, 1.021) though each matmul alone still gained."""
  return _cpu_has({'avx512f'}, ('AVX512', 'AMX'))


def usable_conv(x: jax.Array, kernel: jax.Array, strides, padding) -> bool:
  """Whether `conv` should take these: as `usable_kernel_grad`, a kernel larger than 1x1 (1x1 convs through oneDNN
  were no faster in the UNet step: B/A 0.988, inside the noise), and a CPU where oneDNN's forward convs pay off."""
  out_hw = lax.conv_general_shape_tuple(x.shape, kernel.shape, strides, padding, DIMS)[1:3]
  return kernel.shape[0] * kernel.shape[1] > 1 and forward_convs_pay_off() and _worth_it((x, kernel), out_hw)


def usable_input_grad(g: jax.Array, kernel: jax.Array, x_shape: tuple[int, ...], padding) -> bool:
  """Whether `input_grad` should take these: as `usable_kernel_grad` (on every x86-64 CPU: with AVX2 only, alone,
  0.51-0.74x XLA's time too) for its result's map, a kernel larger than 1x1 and paddings oneDNN takes (not
  negative)."""
  return (kernel.shape[0] * kernel.shape[1] > 1 and min(min(p) for p in padding) >= 0
          and _worth_it((g, kernel), tuple(x_shape[1:3])))


def kernel_grad(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """dL/dkernel [kh kw ci co] of an NHWC/HWIO conv with x [b h w ci] and g = dL/dout [b oh ow co]: oneDNN's on the
  CPU, XLA's elsewhere and where oneDNN does not load."""
  params = tuple(strides), tuple(map(tuple, padding))
  if not build.load():
    return xla_kernel_grad(x, g, tuple(kernel_shape), *params)
  return _bilinear(x, g, build.KERNEL_GRAD, tuple(kernel_shape), params)


def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
         padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """conv(x [b h w ci], kernel [kh kw ci co]) -> [b oh ow co], as `lax.conv_general_dilated` with NHWC/HWIO/NHWC:
  oneDNN's on the CPU, XLA's elsewhere and where oneDNN does not load."""
  params = tuple(strides), tuple(map(tuple, padding))
  if not build.load():
    return xla_conv(x, kernel, *params)
  return _bilinear(x, kernel, build.CONV, lax.conv_general_shape_tuple(x.shape, kernel.shape, *params, DIMS), params)


def input_grad(g: jax.Array, kernel: jax.Array, x_shape: tuple[int, ...], strides: tuple[int, int],
               padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """dL/dx [b h w ci] of an NHWC/HWIO conv of x [b h w ci] with kernel [kh kw ci co], given g = dL/dout [b oh ow co]
  (a strided conv's input gradient is a transposed conv): oneDNN's on the CPU, XLA's elsewhere and where oneDNN does
  not load."""
  params = tuple(strides), tuple(map(tuple, padding))
  if not build.load():
    return xla_input_grad(g, kernel, tuple(x_shape), *params)
  return _bilinear(g, kernel, build.INPUT_GRAD, tuple(x_shape), params)


def xla_matmul(a: jax.Array, b: jax.Array, trans_a: bool, trans_b: bool, sum_batch: bool = False) -> jax.Array:
  """[B M N] = op(a) op(b), op(a) = a [B M K] or, with trans_a, a [B K M] transposed (likewise b [B K N] / [B N K]);
  b [1 K N] is shared by every example; with sum_batch, [1 M N]: the products summed over the batch."""
  spec_a, spec_b = ('bkm' if trans_a else 'bmk'), ('nk' if trans_b else 'kn')
  shared = b.shape[0] == 1 and a.shape[0] > 1
  b, spec_b = (b[0], spec_b) if shared else (b, 'b' + spec_b)
  out = jnp.einsum(f'{spec_a},{spec_b}->{"mn" if sum_batch else "bmn"}', a, b)
  return out[None] if sum_batch else out


def usable_matmul(a: jax.Array, b: jax.Array) -> bool:
  """Whether `matmul` should take these: float32, non-empty, the CPU the default backend, one where oneDNN's matmuls
  pay off (`matmuls_pay_off`), oneDNN loads here."""
  return (all(v.dtype == jnp.float32 and v.size > 0 and v.ndim == 3 for v in (a, b))
          and jax.default_backend() == 'cpu' and matmuls_pay_off() and build.load())


def matmul(a: jax.Array, b: jax.Array, trans_a: bool = False, trans_b: bool = False,
           sum_batch: bool = False) -> jax.Array:
  """Batched matmul as `xla_matmul` (operands stored transposed where trans_a / trans_b: no copy made; a shared b
  [1 K N] is not broadcast; sum_batch takes trans_a and a plain b): oneDNN's on the CPU, XLA's elsewhere and where
  oneDNN does not load."""
  params = bool(trans_a), bool(trans_b), bool(sum_batch)
  if sum_batch and not (trans_a and not trans_b and a.shape[0] == b.shape[0]):
    raise ValueError('matmul(sum_batch=True) contracts x^T g over the batch: give trans_a=True, trans_b=False and '
                     f'operands of one batch (got {a.shape}, {b.shape}, trans_a={trans_a}, trans_b={trans_b})')
  if not build.load():
    return xla_matmul(a, b, *params)
  rows, cols = a.shape[2] if trans_a else a.shape[1], b.shape[1] if trans_b else b.shape[2]
  return _bilinear(a, b, build.MATMUL, (1 if sum_batch else a.shape[0], rows, cols), params)


def _xla_twin(target: str, out_shape: tuple[int, ...], params) -> Callable:
  """(a, b) -> XLA's own result for the custom call `target` of this geometry (each is bilinear in a and b)."""
  if target == build.MATMUL:
    return lambda a, b: xla_matmul(a, b, *params)
  if target == build.CONV:
    return lambda x, kernel: xla_conv(x, kernel, *params)
  if target == build.KERNEL_GRAD:
    return lambda x, g: xla_kernel_grad(x, g, out_shape, *params)
  return lambda g, kernel: xla_input_grad(g, kernel, out_shape, *params)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _bilinear(a, b, target, out_shape, params):
  """The custom call `target` (result shape `out_shape`; `params`: a conv's (strides, padding) or a matmul's
  (trans_a, trans_b, sum_batch)) on the CPU, its XLA twin elsewhere."""
  fallback = _xla_twin(target, out_shape, params)
  onednn = _custom_call(target, out_shape, params, fallback)
  return lax.platform_dependent(a, b, cpu=onednn, default=fallback)


@_bilinear.defjvp
def _bilinear_jvp(target, out_shape, params, primals, tangents):
  (a, b), (da, db) = primals, tangents  # bilinear; the tangent map stays XLA's, so reverse mode can transpose it
  twin = _xla_twin(target, out_shape, params)
  return _bilinear(a, b, target, out_shape, params), twin(da, b) + twin(a, db)


def _ffi_attributes(target: str, params) -> dict[str, int]:
  if target == build.MATMUL:
    return {'trans_a': int(params[0]), 'trans_b': int(params[1])}  # sum_batch: the result's batch of 1 says it
  (stride_h, stride_w), ((top, bottom), (left, right)) = params
  return dict(stride_h=int(stride_h), stride_w=int(stride_w), pad_top=int(top), pad_bottom=int(bottom),
              pad_left=int(left), pad_right=int(right))


def _custom_call(target: str, out_shape: tuple[int, ...], params, fallback: Callable) -> Callable:
  """(a, b) -> the custom call's result for one geometry, with a vmap rule: a forward conv (or input gradient)
  vmapped over its first operand only (the samplers run one example at a time under vmap) folds the vmapped axis into
  the batch and stays one custom call, as lax's own batching rule does, and so does a matmul vmapped over both
  operands; anything else (per-example kernel gradients, the VAE's per-example losses; per-example kernels) gets
  XLA's own batched op (`fallback`), as before oneDNN."""
  call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(tuple(out_shape), jnp.float32))
  attributes = _ffi_attributes(target, params)

  @jax.custom_batching.custom_vmap
  def onednn(a, b):
    return parallel.varying_like(call(a, b, **attributes), a, b)  # per device under shard_map, as XLA's own would be

  @onednn.def_vmap
  def batched(axis_size, in_batched, a, b):
    plain_matmul = target == build.MATMUL and a.shape[1] == b.shape[1] and out_shape[0] == a.shape[1]
    folds = ([True, False] if target in (build.CONV, build.INPUT_GRAD) else [True, True] if plain_matmul else None)
    if list(in_batched) == folds:
      a = a.reshape(-1, *a.shape[2:])  # [(n b) ...]
      b = b.reshape(-1, *b.shape[2:]) if target == build.MATMUL else b
      y = _bilinear(a, b, target, (a.shape[0], *out_shape[1:]), params)
      return y.reshape(axis_size, -1, *y.shape[1:]), True
    a, b = (v if batched else jnp.broadcast_to(v, (axis_size, *v.shape)) for v, batched in zip((a, b), in_batched))
    return jax.vmap(fallback)(a, b), True

  return onednn

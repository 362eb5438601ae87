"""Layers shared by several networks: conv and GroupNorm forms with the values of lax/flax that XLA:CPU runs faster
(GroupNorm and SiLU in `gen_jax.models.norms`, re-exported here).

Each such form has a plain twin (lax's conv and transposed conv and their autodiff, GroupNorm by autodiff,
jax.nn.silu) with the same values and gradients (tests/models/test_layers.py; silu within 2.5e-6). `forms()` says
which the layers trace: one switch per backend (`BY_BACKEND`), overridden by `use_forms` or the environment
variable GEN_JAX_LAYER_FORMS ('lax' or 'xla_cpu'), e.g. for `benchmarks/gpu_suite.sh` to time both. On the CPU,
float32 convs' kernel gradients, strided convs' input gradients, transposed convs and (with AVX2 or more) forward
convs larger than 1x1 go through oneDNN where it loads (`gen_jax.onednn`; the same values as XLA's).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gen_jax import onednn, parallel
from gen_jax.models import dense
from gen_jax.models.forms import BY_BACKEND, LAX, NAMED, XLA_CPU, Forms, forms, use_forms  # noqa: F401  (the switch)
from gen_jax.models.norms import GroupNorm, group_norm, silu  # noqa: F401  (re-exported: layers.group_norm etc.)

DIMS = ('NHWC', 'HWIO', 'NHWC')


def conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1) = flax ConvTranspose(padding ((2,2),(2,2))).

  With the phase forms: four 2x2 stride-1 convs, one per output phase (row parity a, column parity b), interleaved
  by depth-to-space: y[2m+a, 2n+b] = sum_{t,u} x[m+a+t-1, n+b+u-1] K[a+2t, b+2u]. x [b h w i], kernel [4 4 i o].
  """
  return conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)))


def transposed_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_transpose_4x4_s2`; phase forward (if the forms choose phases) only for 16 or more output channels (16->32
  spatial, 64->3 channels: lax's forward 2.8 ms, the phases' 9.6 ms)."""
  return conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)), phases=kernel.shape[-1] >= 16)


def conv_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's Conv2d(kernel 4, stride 2, padding 1) on even h, w, its input gradient a `transposed_4x4_s2`.

  The input gradient of a strided conv is a transposed conv; WGAN-GP's penalty differentiates it again, and
  XLA:CPU's own second derivative (a kernel-dilated conv) is ~8x slower than `conv_transpose`'s adjoint gradients.
  """
  if not forms().custom_conv_vjps:
    return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)
  return _conv_4x4_s2(x, parallel.varying_like(kernel, x), forms().onednn_kernel_grads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_4x4_s2(x, kernel, use_onednn):
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)


def _conv_4x4_s2_fwd(x, kernel, use_onednn):
  return _conv_4x4_s2(x, kernel, use_onednn), (x, kernel)


def _conv_4x4_s2_bwd(use_onednn, residuals, g):
  x, kernel = residuals
  # dx[i] = sum_{2m + k = i + 1} g[m] K[k]^T: PyTorch's ConvTranspose2d(4, 2, 1) with weight K^T, i.e. the flax
  # form with the kernel flipped and its in/out channels swapped.
  dx = transposed_4x4_s2(g, jnp.swapaxes(kernel, 2, 3)[::-1, ::-1])
  return dx, kernel_grad(x, g, kernel, (2, 2), ((1, 1), (1, 1)), use_onednn)


_conv_4x4_s2.defvjp(_conv_4x4_s2_fwd, _conv_4x4_s2_bwd)


class DownConv4x4(nn.Module):
  """4x4 stride-2 conv with padding 1 (halves h and w); params as flax's Conv ('kernel', 'bias').

  `double_backward=True` (for gradient penalties) uses `conv_4x4_s2` on even sizes: slower first derivatives
  (DCGAN D+G step 179 vs 147 ms) but much faster second ones (WGAN-GP 5:1 iteration 868 vs 1643 ms).
  """
  features: int
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  double_backward: bool = False
  dtype: Any = None  # computation dtype (params stay float32); None: promoted from the input

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    if not self.double_backward or x.shape[1] % 2 or x.shape[2] % 2:
      y = conv2d(x, kernel, (2, 2), ((1, 1), (1, 1)))
    else:
      y = conv_4x4_s2(x, kernel)
    if self.use_bias:
      y = add_bias(y, self.param('bias', nn.initializers.zeros, (self.features,)))
    return y


class UpConv4x4(nn.Module):
  """Bias-free 4x4 stride-2 transposed conv (doubles h and w); params as flax's ConvTranspose ('kernel')."""
  features: int
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = None  # computation dtype (params stay float32); None: promoted from the input

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features))
    return transposed_4x4_s2(*nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype))


def kernel_grad(x: jax.Array, g: jax.Array, kernel: jax.Array, strides, padding, use_onednn: bool) -> jax.Array:
  """dL/dkernel of conv(x, kernel) given dL/dout g: oneDNN's kernel-gradient convolution where `use_onednn` and it
  can (float32 on the CPU, gen_jax.onednn: ~2x faster there), else XLA's own.

  (Through YNNPACK, jaxlib 0.10's default CPU conv library, XLA's ran at 1..4 GFLOP/s; `gen_jax.compiler` keeps
  convolutions out of YNNPACK, and XLA's Eigen kernel gradient is the faster of its two.)
  """
  if use_onednn and onednn.usable_kernel_grad(x, g):
    return onednn.kernel_grad(x, g, kernel.shape, strides, padding)
  return onednn.xla_kernel_grad(x, g, kernel.shape, strides, padding)


def forward_conv(x: jax.Array, kernel: jax.Array, strides, padding, use_onednn: bool) -> jax.Array:
  """conv(x, kernel): oneDNN's where `use_onednn` and it pays off (`onednn.usable_conv`), else lax's."""
  if use_onednn and onednn.usable_conv(x, kernel, strides, padding):
    return onednn.conv(x, kernel, strides, padding)
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMS)


def input_grad(g: jax.Array, kernel: jax.Array, x_shape: tuple[int, ...], strides, padding,
               use_onednn: bool) -> jax.Array:
  """dL/dx of conv(x, kernel) given dL/dout g (a transposed conv): oneDNN's backward-data conv where `use_onednn` and
  it pays off (float32 on x86-64: 0.45-0.72x XLA's time for the strided convs of DCGAN and the UNet, alone),
  else XLA's own (the input-dilated conv autodiff makes)."""
  if use_onednn and onednn.usable_input_grad(g, kernel, x_shape, padding):
    return onednn.input_grad(g, kernel, x_shape, strides, padding)
  return onednn.xla_input_grad(g, kernel, x_shape, strides, padding)


def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: tuple) -> jax.Array:
  """NHWC/HWIO convolution, explicit padding ((top, bottom), (left, right)): `lax.conv_general_dilated` with the
  same values and gradients, but a stride-1 conv's input gradient is itself a `conv2d` (see `_conv2d_bwd`)."""
  if not forms().custom_conv_vjps:
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMS)
  chosen = forms()
  if chosen.onednn_matmuls and kernel.shape[:2] == (1, 1) and tuple(strides) == (1, 1) and not any(map(any, padding)):
    b, h, w, ci = x.shape
    tokens = x.reshape(b, h * w, ci)
    # a 1x1 conv is a matmul over the channels (dense.py); not from a few channels (WGAN-GP's ResNet critic, 1x1
    # shortcuts from the 3-channel image under a gradient penalty: step 1.012x XLA's time)
    if ci >= 16 and onednn.usable_matmul(tokens, kernel[0]):
      y = dense.shared_kernel_matmul(tokens, parallel.varying_like(kernel[0, 0], x))
      return y.reshape(b, h, w, -1)
  return _conv2d_traced_once(x, kernel, tuple(strides), tuple(map(tuple, padding)),
                             (chosen.onednn_forward_convs, chosen.onednn_kernel_grads, chosen.onednn_input_grads))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _conv2d_traced_once(x, kernel, strides, padding, use_onednn):
  """A nested jit: jax traces it (and differentiates it) once per shape and reuses that for every call of the same
  shape; XLA inlines it, so the compiled program is the same. The `ddpm_cifar` step traced and lowered 13% faster
  with this and `_group_norm_traced_once` (9.3-10.1 -> 8.0-8.7 s, 2-core AVX2 EPYC). The forms switch is read
  outside it: a cached trace never mixes forms."""
  return _conv2d(x, parallel.varying_like(kernel, x), strides, padding, use_onednn)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv2d(x, kernel, strides, padding, use_onednn):
  """use_onednn: (for the forward conv, for the kernel gradient, for a strided conv's input gradient), read from the
  forms where the trace began."""
  return forward_conv(x, kernel, strides, padding, use_onednn[0])


def _conv2d_fwd(x, kernel, strides, padding, use_onednn):
  return _conv2d(x, kernel, strides, padding, use_onednn), (x, kernel)


def _conv2d_bwd(strides, padding, use_onednn, residuals, g):
  x, kernel = residuals
  if tuple(strides) != (1, 1):
    return input_grad(g, kernel, x.shape, strides, padding, use_onednn[2]), kernel_grad(
        x, g, kernel, strides, padding, use_onednn[1])
  # dx of a stride-1 conv is a stride-1 conv of g with the kernel flipped and its in/out channels swapped. Going
  # through _conv2d again (same speed as XLA's own input gradient) makes a gradient penalty's second derivative a
  # plain forward/backward conv pair: WGAN-GP 5:1 iteration (DCGAN-style nets, b64, 2-core EPYC) 1.47 s, against
  # 1.82 s with lax's own second derivative.
  (kh, kw), ((top, bottom), (left, right)) = kernel.shape[:2], padding
  flipped = jnp.swapaxes(kernel, 2, 3)[::-1, ::-1]
  dx = _conv2d(g, flipped, (1, 1), ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)), use_onednn)
  return dx, kernel_grad(x, g, kernel, strides, padding, use_onednn[1])


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y + bias [c], added in float32 when y is lower precision: the bias gradient is a sum over every position
  (b h w), and a bfloat16 sum of 4096 terms lost ~90% of it (ResNet generator, 32x32, batch 4)."""
  if y.dtype == jnp.float32:
    return y + bias
  return (y.astype(jnp.float32) + bias.astype(jnp.float32)).astype(y.dtype)


class _ConvBase(nn.Module):
  """Fields and params as flax's Conv / ConvTranspose name them ('kernel' [kh kw i o], 'bias' [o]), dtype promoted."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'
  dtype: Any = None
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros

  def _promoted_params(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    kernel = self.param('kernel', self.kernel_init, (*self.kernel_size, x.shape[-1], self.features))
    bias = self.param('bias', self.bias_init, (self.features,))
    return nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)


class Conv(_ConvBase):
  """Drop-in for `nn.Conv` (same 'kernel'/'bias' params and dtype handling, NHWC) built on `conv2d`."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = self._promoted_params(x)
    padding = lax.padtype_to_pads(x.shape[1:3], self.kernel_size, self.strides, self.padding)
    return add_bias(conv2d(x, kernel, tuple(self.strides), tuple(map(tuple, padding))), bias)


def _transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  """Padding of the input-dilated form that `lax.conv_transpose` uses for 'SAME' / 'VALID' (flax ConvTranspose)."""
  if padding == 'SAME':
    before = k - 1 if s > k - 1 else (k + s - 1) // 2
    return before, k + s - 2 - before
  if padding == 'VALID':
    return k - 1, s - 1 + max(k - s, 0)
  raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding,
                   phases: bool = True) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, padding)` (flax ConvTranspose's op) with gradients from its adjoint.

  The input gradient of a transposed conv is a strided conv of the output gradient g (its adjoint T*), and
  <T_K x, g> = <x, T*_K g> makes the kernel gradient that strided conv's kernel gradient with x as the cotangent.
  XLA:CPU's own kernel gradient of a transposed conv is a kernel-dilated conv, 7-27x slower (2-core Sapphire
  Rapids, batch 64, 4x4 stride 2: 128->64 channels 8->16 spatial 413 vs 15 ms, 64->3 16->32 34 vs 5.8 ms; faster
  than the phase form's backward too: 28 / 43 ms). Steps (A/B, same CPU): DCGAN D+G 0.93x the time of the phase
  form with autodiff (and 0.93x again with lax's forward), WGAN-GP 5:1 iteration 0.82x (both changes). On the CPU
  the forward, T* g and the kernel gradient go through oneDNN where `conv2d`'s would (A/B of the last two, same CPU:
  WGAN-GP with DCGAN-style nets 0.964, DCGAN 0.974).
  padding: 'SAME', 'VALID' or lax's explicit ((top, bottom), (left, right)) of the input-dilated form.
  phases: forward as per-phase stride-1 convs when the forms allow it. x [b h w i], kernel [kh kw i o].
  """
  padding = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
  if forms().adjoint_transposed_vjps:
    return _adjoint_conv_transpose(x, parallel.varying_like(kernel, x), tuple(strides), padding, phases)
  return _conv_transpose_forward(x, kernel, strides, padding, phases)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _adjoint_conv_transpose(x, kernel, strides, padding, phases):
  return _conv_transpose_forward(x, kernel, strides, padding, phases)


def _adjoint_conv_transpose_fwd(x, kernel, strides, padding, phases):
  return _adjoint_conv_transpose(x, kernel, strides, padding, phases), (x, kernel)


def _adjoint_conv_transpose_bwd(strides, padding, phases, residuals, g):
  del phases
  x, kernel = residuals
  conv_pads = _as_conv_pads(kernel.shape[:2], strides, padding)
  if min(min(p) for p in conv_pads) >= 0:
    # T_K = conv_W^T with W = K flipped, channels swapped (`_conv_transpose_forward`), so T*_K g = conv_W(g) and
    # dL/dW is conv_W's kernel gradient with g as its input and x as its cotangent: both as `conv2d` takes them
    # (oneDNN where the forms allow and it pays off).
    chosen = forms()
    flipped = jnp.swapaxes(kernel, 2, 3)[::-1, ::-1]
    dx = forward_conv(g, flipped, strides, conv_pads, chosen.onednn_forward_convs)
    d_flipped = kernel_grad(g, x, flipped, strides, conv_pads, chosen.onednn_kernel_grads)
    return dx, jnp.swapaxes(d_flipped, 2, 3)[::-1, ::-1]

  def adjoint(k):  # T*_k g: a strided conv of g, linear in k
    forward = lambda x_: lax.conv_transpose(x_, k, strides, padding, dimension_numbers=DIMS)
    return jax.linear_transpose(forward, x)(g)[0]

  dx, pull_kernel = jax.vjp(adjoint, kernel)
  return dx, pull_kernel(x)[0]


_adjoint_conv_transpose.defvjp(_adjoint_conv_transpose_fwd, _adjoint_conv_transpose_bwd)


def _as_conv_pads(kernel_hw, strides, padding) -> list[tuple[int, int]]:
  """The paddings of the conv whose input gradient a transposed conv is: k - 1 - the input-dilated form's."""
  if isinstance(padding, str):
    padding = [_transpose_pads(k, s, padding) for k, s in zip(kernel_hw, strides)]
  return [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel_hw, padding)]


def _conv_transpose_forward(x, kernel, strides, padding, phases):
  """lax's transposed conv, or the same map as one small conv per output phase (`phases`, when the forms allow).

  Output row s*m + a only meets the kernel rows t = t0(a), t0 + s, ...: phase a is a stride-1 conv of the undilated
  input with kernel[t0::s], and depth-to-space interleaves the phases. Same FLOPs, no zeros inserted. Lax's form
  when the output size is not a multiple of the stride.
  """
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  if isinstance(padding, str):
    pads = [_transpose_pads(k, s, padding) for k, s in zip((kh, kw), strides)]
  else:
    pads = [tuple(p) for p in padding]
  out = [(n - 1) * s + 1 + lo + hi - k + 1 for n, s, (lo, hi), k in zip(x.shape[1:3], strides, pads, (kh, kw))]
  if out[0] % sh or out[1] % sw or not (phases and forms().phase_transposed_convs):
    # lax's transposed conv of x with K is the input gradient of a conv with K flipped and its in/out channels
    # swapped, whose paddings are k - 1 - the input-dilated form's
    return input_grad(x, jnp.swapaxes(kernel, 2, 3)[::-1, ::-1], (x.shape[0], *out, kernel.shape[-1]), strides,
                      _as_conv_pads((kh, kw), strides, pads), forms().onednn_input_grads)

  def phase_window(a, s, k, lo, n, m):  # taps of phase a, and the input padding that yields its m outputs
    t0 = (lo - a) % s
    taps = len(range(t0, k, s))
    first = (a + t0 - lo) // s  # input offset met by tap t0 at output m = 0
    return t0, taps, (-first, m + first + taps - 1 - n)

  rows = []
  for a in range(sh):
    row = []
    for b in range(sw):
      (t0, nt, ph), (u0, nu, pw) = (phase_window(a, sh, kh, pads[0][0], x.shape[1], out[0] // sh),
                                    phase_window(b, sw, kw, pads[1][0], x.shape[2], out[1] // sw))
      if nt == 0 or nu == 0:  # kernel smaller than the stride: no tap reaches this phase
        row.append(jnp.zeros((x.shape[0], out[0] // sh, out[1] // sw, kernel.shape[-1]), x.dtype))
        continue
      window = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*ph, 0), (*pw, 0), (0, 0, 0)))
      row.append(conv2d(window, kernel[t0::sh, u0::sw], (1, 1), ((0, 0), (0, 0))))
    rows.append(jnp.stack(row))
  return einops.rearrange(jnp.stack(rows), 'a b n h w c -> n (h a) (w b) c')


class ConvTranspose(_ConvBase):
  """Drop-in for `nn.ConvTranspose` ('SAME'/'VALID' padding, no kernel dilation; same params and dtype handling)
  built on `conv_transpose` (adjoint gradients)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = self._promoted_params(x)
    return add_bias(conv_transpose(x, kernel, tuple(self.strides), self.padding), bias)

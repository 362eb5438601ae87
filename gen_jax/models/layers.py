"""Layers shared by several networks."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

DIMS = ('NHWC', 'HWIO', 'NHWC')


def conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1) = flax ConvTranspose(padding ((2,2),(2,2))).

  Computed as four 2x2 stride-1 convs, one per output phase (row parity a, column parity b), interleaved by
  depth-to-space: y[2m+a, 2n+b] = sum_{t,u} x[m+a+t-1, n+b+u-1] K[a+2t, b+2u]. Same FLOPs, no zeros inserted,
  and no input-dilated conv in the backward pass, which XLA:CPU runs ~8x slower (measured: 256->128 channels,
  4->8, batch 64: backward 111 ms as one transposed conv, 13 ms as phases). x [b h w i], kernel [4 4 i o].
  """
  return conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)))


def transposed_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The faster of the two equal forms: phases, or one transposed conv when there are few output channels
  (16->32 spatial, 64->3 channels: 21 ms vs 11 ms backward)."""
  if kernel.shape[-1] < 16:
    return lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)), dimension_numbers=DIMS)
  return conv_transpose_4x4_s2(x, kernel)


def conv_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's Conv2d(kernel 4, stride 2, padding 1) on even h, w, with an input gradient in phase form.

  The input gradient of a strided conv is a transposed conv; WGAN-GP's penalty differentiates it again, and
  XLA:CPU runs that second derivative (an input-dilated conv) ~8x slower than the equal phase form.
  """
  return _conv_4x4_s2(x, _varying_like(kernel, x))


@jax.custom_vjp
def _conv_4x4_s2(x, kernel):
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)


def _conv_4x4_s2_fwd(x, kernel):
  return _conv_4x4_s2(x, kernel), (x, kernel)


def _conv_4x4_s2_bwd(residuals, g):
  x, kernel = residuals
  # dx[i] = sum_{2m + k = i + 1} g[m] K[k]^T: PyTorch's ConvTranspose2d(4, 2, 1) with weight K^T, i.e. the flax
  # form with the kernel flipped and its in/out channels swapped.
  dx = transposed_4x4_s2(g, jnp.swapaxes(kernel, 2, 3)[::-1, ::-1])
  return dx, kernel_grad(x, g, kernel, (2, 2), ((1, 1), (1, 1)))


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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features))
    if not self.double_backward or x.shape[1] % 2 or x.shape[2] % 2:
      y = conv2d(x, kernel, (2, 2), ((1, 1), (1, 1)))
    else:
      y = conv_4x4_s2(x, kernel)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    return y


class UpConv4x4(nn.Module):
  """Bias-free 4x4 stride-2 transposed conv (doubles h and w); params as flax's ConvTranspose ('kernel')."""
  features: int
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features))
    return transposed_4x4_s2(x, kernel)


# Below this many output positions (b*h*w) XLA's kernel gradient is as fast as the dots (measured: UNet 8x8 at
# batch 16) and compiles faster.
MIN_ROWS_FOR_DOTS = 4096


def _shifted_windows(x: jax.Array, window: Sequence[int], strides: Sequence[int], padding, out_hw) -> list[jax.Array]:
  """The kh*kw strided views of padded x [b h w i] that meet each kernel tap: each [b ho wo i]."""
  (kh, kw), (sh, sw), (ho, wo) = window, strides, out_hw
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  return [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] for i in range(kh) for j in range(kw)]


def _kernel_grad_by_dots(x, g, kernel_shape, strides, padding):
  """dL/dkernel as one [o b*h*w] x [b*h*w i] dot per kernel tap. Inside the DDPM UNet's train step XLA:CPU's own
  kernel-gradient convolutions took 57% of the op time (up to 600 ms for one 3x3 conv at 32x32, 250 ms for a 1x1);
  these dots cut the step from 3.7-6.3 s to 2.9-3.4 s on a 2-core EPYC (see README)."""
  taps = _shifted_windows(x, kernel_shape[:2], strides, padding, g.shape[1:3])
  # g^T tap ([o i] per tap) keeps each tap in its natural layout; tap^T g would transpose every tap.
  grads = [jnp.einsum('bhwo,bhwi->oi', g, tap, preferred_element_type=jnp.float32) for tap in taps]
  return einops.rearrange(jnp.stack(grads), '(kh kw) o i -> kh kw i o', kh=kernel_shape[0])


def kernel_grad(x: jax.Array, g: jax.Array, kernel: jax.Array, strides, padding) -> jax.Array:
  """dL/dkernel of conv(x, kernel) given dL/dout g: dots on CPU for large convs, XLA's convolution otherwise."""
  if jax.default_backend() == 'cpu' and g.shape[0] * g.shape[1] * g.shape[2] >= MIN_ROWS_FOR_DOTS:
    return _kernel_grad_by_dots(x, g, kernel.shape, strides, padding).astype(kernel.dtype)
  conv = lambda k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DIMS)
  return jax.vjp(conv, kernel)[1](g)[0]


def _vma(x: jax.Array) -> frozenset:
  """The mesh axes x varies over inside shard_map (empty outside it); jax 0.10 keeps them in manual_axis_type."""
  aval = jax.typeof(x)
  if hasattr(aval, 'vma'):
    return frozenset(aval.vma)
  manual = getattr(aval, 'manual_axis_type', None)
  return frozenset(manual.varying) if manual is not None else frozenset()


def _varying_like(kernel: jax.Array, x: jax.Array) -> jax.Array:
  """Under shard_map a replicated kernel meets per-device images: mark it device-varying before a custom_vjp, as
  lax's own conv does, so the transpose of this cast sums the kernel gradient over devices."""
  spread = tuple(_vma(x) - _vma(kernel))
  return lax.pcast(kernel, spread, to='varying') if spread else kernel


def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: tuple) -> jax.Array:
  """NHWC/HWIO convolution, explicit padding ((top, bottom), (left, right)); the same values and gradients as
  `lax.conv_general_dilated`, but with the kernel gradient as dots when the default backend is the CPU (XLA's
  convolution elsewhere, where cuDNN and the TPU compiler do this well)."""
  return _conv2d(x, _varying_like(kernel, x), strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMS)


def _conv2d_fwd(x, kernel, strides, padding):
  return _conv2d(x, kernel, strides, padding), (x, kernel)


def _conv2d_bwd(strides, padding, residuals, g):
  x, kernel = residuals
  if tuple(strides) == (1, 1):
    # dx of a stride-1 conv is a stride-1 conv of g with the kernel flipped and its in/out channels swapped. Going
    # through _conv2d again (same speed as XLA's own input gradient) gives gradient penalties, which differentiate
    # dx w.r.t. the kernel, the dot-per-tap kernel gradient too: XLA:CPU's took 5 s per 3x3 128-channel conv at
    # 64x32x32 in the WGAN-GP ResNet critic's second derivative.
    (kh, kw), ((top, bottom), (left, right)) = kernel.shape[:2], padding
    flipped = jnp.swapaxes(kernel, 2, 3)[::-1, ::-1]
    dx = _conv2d(g, flipped, (1, 1), ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)))
  else:
    conv = lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DIMS)
    dx = jax.vjp(lambda x: conv(x, kernel), x)[1](g)[0]
  return dx, kernel_grad(x, g, kernel, strides, padding)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


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
    return conv2d(x, kernel, tuple(self.strides), tuple(map(tuple, padding))) + bias


def _transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  """Padding of the input-dilated form that `lax.conv_transpose` uses for 'SAME' / 'VALID' (flax ConvTranspose)."""
  if padding == 'SAME':
    before = k - 1 if s > k - 1 else (k + s - 1) // 2
    return before, k + s - 2 - before
  if padding == 'VALID':
    return k - 1, s - 1 + max(k - s, 0)
  raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, padding)` (flax ConvTranspose's op) as one small conv per output phase.

  Output row s*m + a only meets the kernel rows t = t0(a), t0 + s, ...: phase a is a stride-1 conv of the undilated
  input with kernel[t0::s], and depth-to-space interleaves the phases. Same FLOPs as the transposed conv, no zeros
  inserted, and every piece goes through `conv2d` (no input-dilated conv for XLA:CPU to differentiate slowly).
  Falls back to lax's form when the output size is not a multiple of the stride. padding: 'SAME', 'VALID' or lax's
  explicit ((top, bottom), (left, right)) of the input-dilated form. x [b h w i], kernel [kh kw i o].
  """
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  if isinstance(padding, str):
    pads = [_transpose_pads(k, s, padding) for k, s in zip((kh, kw), strides)]
  else:
    pads = [tuple(p) for p in padding]
  out = [(n - 1) * s + 1 + lo + hi - k + 1 for n, s, (lo, hi), k in zip(x.shape[1:3], strides, pads, (kh, kw))]
  if out[0] % sh or out[1] % sw:
    return lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=DIMS)

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
  built on the phase form `conv_transpose`."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = self._promoted_params(x)
    return conv_transpose(x, kernel, tuple(self.strides), self.padding) + bias

"""flax's `nn.Dense` whose matmuls over token maps [b n c] go through oneDNN on the CPU (`forms().onednn_matmuls`).

Why: XLA:CPU's dots for the UNet attention's q / k / v / output projections ([16 256 128] x [128 128], batch 16) ran
y, dx and dkernel in 3.0-3.9 ms, oneDNN's batched matmul (`gen_jax.onednn.matmul`, one call per example chunk, the
kernel shared) in 1.9-2.1 ms: XLA copies x transposed for the kernel gradient, oneDNN reads it in place. Same
parameters, same values (tested); everything else (other ranks, bfloat16, other backends) is `nn.Dense` itself.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax import onednn, parallel
from gen_jax.models.forms import forms


class Dense(nn.Dense):
  """`nn.Dense` (same fields, parameters and values); [b n c] float32 inputs take oneDNN's matmuls where they can."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    takes_onednn = (forms().onednn_matmuls and inputs.ndim == 3 and inputs.dtype == jnp.float32
                    and self.param_dtype == jnp.float32 and self.dtype in (None, jnp.float32)
                    and self.dot_general is None and self.dot_general_cls is None and self.precision is None
                    and onednn.usable_matmul(inputs, inputs))  # the kernel: float32 [i o], made below
    if not takes_onednn:
      return super().__call__(inputs)
    kernel = self.param('kernel', self.kernel_init, (inputs.shape[-1], self.features), self.param_dtype)
    y = shared_kernel_matmul(inputs, parallel.varying_like(kernel, inputs))  # dkernel: summed over devices
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), self.param_dtype)
    return y


@jax.custom_vjp
def shared_kernel_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """x [b n i] @ kernel [i o] -> [b n o], every matmul oneDNN's: one per example chunk, the kernel shared (also
  `layers.conv2d`'s 1x1 convs). Under shard_map, pass the kernel through `parallel.varying_like(kernel, x)`."""
  return onednn.matmul(x, kernel[None])


def _matmul_fwd(x, kernel):
  return shared_kernel_matmul(x, kernel), (x, kernel)


def _matmul_bwd(residuals, g):
  x, kernel = residuals
  # g kernel^T as this op again (as conv2d's input gradient is a conv2d): a gradient penalty's second derivative then
  # runs through oneDNN too (WGAN-GP ResNet critic: 1.019x XLA's time with onednn.matmul's own derivative here)
  dx = shared_kernel_matmul(g, kernel.T)
  dkernel = onednn.matmul(x, g, trans_a=True, sum_batch=True)[0]  # x^T g over every example, x read in place
  return dx, dkernel


shared_kernel_matmul.defvjp(_matmul_fwd, _matmul_bwd)

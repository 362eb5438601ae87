"""Which of two equal forms gen_jax's layers trace (`gen_jax.models.layers`): one switch per backend (`BY_BACKEND`),
overridden by `use_forms` or the environment variable GEN_JAX_LAYER_FORMS ('lax' or 'xla_cpu')."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator

import jax


@dataclasses.dataclass(frozen=True)
class Forms:
  """Which of two equal forms the layers trace (read at trace time; the values do not depend on it)."""
  # Transposed convs' forward as per-phase stride-1 convs, else lax's. Off: with the adjoint gradients below, lax's
  # forward made the steps faster (A/B, 2-core Sapphire Rapids: DCGAN D+G 0.93x, VAE 0.97x the phases' time).
  phase_transposed_convs: bool = False
  adjoint_transposed_vjps: bool = True  # transposed convs' gradients from their adjoint (a strided conv), else autodiff
  custom_conv_vjps: bool = True  # conv2d / conv_4x4_s2 input gradients as plain convs, else lax's autodiff
  custom_group_norm: bool = True  # per-channel-then-group statistics, hand-written backward, else autodiff
  tanh_silu: bool = True  # silu(x) = x (1 + tanh(x / 2)) / 2 (XLA's fast tanh, no divide), else jax.nn.silu
  custom_attention_vjp: bool = True  # softmax attention's backward from its saved weights, else autodiff
  subpixel_upsample_convs: bool = True  # upsample-then-conv as per-phase convs of the low-resolution map (resample)
  # conv2d / conv_4x4_s2 kernel gradients (float32, CPU) through oneDNN (gen_jax.onednn) where it loads, else XLA's
  onednn_kernel_grads: bool = True
  onednn_forward_convs: bool = True  # conv2d's forward convs (also its stride-1 input gradients) likewise
  # strided convs' input gradients and transposed convs (the same map) likewise, as oneDNN's backward-data conv
  onednn_input_grads: bool = True
  onednn_matmuls: bool = True  # attention's batched matmuls (float32, CPU) through oneDNN where it loads, else XLA's


XLA_CPU = Forms()
LAX = Forms(phase_transposed_convs=False, adjoint_transposed_vjps=False, custom_conv_vjps=False,
            custom_group_norm=False, tanh_silu=False, subpixel_upsample_convs=False,
            custom_attention_vjp=False, onednn_kernel_grads=False,
            onednn_forward_convs=False, onednn_input_grads=False, onednn_matmuls=False)
NAMED = {'xla_cpu': XLA_CPU, 'lax': LAX}
# The GPU and TPU keep the CPU's forms until they are timed against LAX there (benchmarks/gpu_suite.sh times both).
BY_BACKEND = {'cpu': XLA_CPU}
_override: list[Forms] = []


def forms() -> Forms:
  """The forms to trace now: `use_forms`, else GEN_JAX_LAYER_FORMS, else `BY_BACKEND` for the default backend."""
  if _override:
    return _override[-1]
  name = os.environ.get('GEN_JAX_LAYER_FORMS', '')
  if name:
    if name not in NAMED:
      raise ValueError(f'GEN_JAX_LAYER_FORMS={name!r}: use one of {sorted(NAMED)}')
    return NAMED[name]
  return BY_BACKEND.get(jax.default_backend(), XLA_CPU)


@contextlib.contextmanager
def use_forms(chosen: Forms) -> Iterator[None]:
  """Trace with `chosen` inside the block (functions traced earlier keep the forms they were traced with)."""
  _override.append(chosen)
  try:
    yield
  finally:
    _override.pop()

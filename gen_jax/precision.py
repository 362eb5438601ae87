"""The mixed-precision policy, one key for every family: `model.dtype` is the computation dtype of the nets' matmuls,
convolutions and activations; parameters, optimizer state, norm statistics, attention softmax and every loss stay
float32 (each net casts its input to the dtype and its output back to float32)."""

from __future__ import annotations

import jax.numpy as jnp

from gen_jax.errors import UserError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(model_config):
  """`model.dtype` ('float32' when a config has no such key) as a jnp dtype; a clear error for anything else."""
  name = model_config.get('dtype', 'float32')
  if name not in DTYPES:
    raise UserError(f'Unknown model.dtype {name!r}; use one of {sorted(DTYPES)}.')
  return DTYPES[name]

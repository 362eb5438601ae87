"""Optimizers from config: adam/adamw with linear warm-up into a constant or cosine schedule, and clipping."""

from __future__ import annotations

import optax

from gen_jax.errors import UserError


def make_schedule(optim_config, total_steps: int) -> optax.Schedule:
  lr, warmup = optim_config.learning_rate, int(optim_config.warmup_steps)
  if optim_config.schedule == 'constant':
    after = optax.constant_schedule(lr)
  elif optim_config.schedule == 'cosine':
    after = optax.cosine_decay_schedule(lr, decay_steps=max(1, total_steps - warmup))
  else:
    raise UserError(f"Unknown optim.schedule {optim_config.schedule!r}; use 'constant' or 'cosine'.")
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], boundaries=[warmup])


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  schedule = make_schedule(optim_config, total_steps)
  kwargs = dict(b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps)
  if optim_config.name == 'adam':
    optimizer = optax.adam(schedule, **kwargs)
  elif optim_config.name == 'adamw':
    optimizer = optax.adamw(schedule, weight_decay=optim_config.weight_decay, **kwargs)
  else:
    raise UserError(f"Unknown optim.name {optim_config.name!r}; use 'adam' or 'adamw'.")
  if optim_config.grad_clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), optimizer)
  return optimizer

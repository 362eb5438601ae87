"""The interface every model family implements, and the train state the loop saves whole.

The loop (gen_jax/train.py) only calls `init`, `train_step` and `sample`, and only reads `state.step` and
`state.params`. Everything family-specific (one optimizer or two, EMA, BatchNorm statistics, critic steps,
samplers) lives behind these three methods.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.struct
import jax

Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue bit-exactly; a pytree checkpointed whole.

  step: optimisation steps done (int32 scalar). rng: the run's base key; step `s` uses fold_in(rng, s), so no
  key needs threading through the loop. params / opt_state: dicts when a family has several networks (GAN:
  {'generator', 'discriminator'}). ema_params: EMA copy where used, else None. model_state: non-trained
  collections such as BatchNorm statistics, else None.
  """
  step: jax.Array
  rng: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any = None
  model_state: Any = None


class Family(abc.ABC):
  """A model family: built from the whole config, pure functions of (state, batch, key)."""

  # Global batches each train_step consumes: >1 gives the step a leading axis, batch arrays [n b ...]
  # (e.g. WGAN-GP: one fresh real batch for each of its n_critic critic updates).
  batches_per_step: int = 1

  def __init__(self, config):
    self.config = config

  @abc.abstractmethod
  def init(self, rng: jax.Array, image_shape: tuple[int, int, int]) -> TrainState:
    """Fresh state for images of shape [h w c]. Runs under jit; must not depend on device count."""

  @abc.abstractmethod
  def train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, Metrics]:
    """One optimisation step of per-device code under shard_map (axis `data`).

    `batch['image']` is [b h w c] in [-1, 1] (this device's slice). Use `parallel.value_and_global_mean_grad`
    for gradients and return device-invariant scalar metrics (`parallel.mean_over_devices`); include 'loss'.
    """

  @abc.abstractmethod
  def sample(self, state: TrainState, rng: jax.Array, num_samples: int) -> jax.Array:
    """Images [n h w c] in [-1, 1] for the sample grid. Runs under jit with replicated inputs."""

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> Metrics:
    """Held-out metrics for one batch (per-device code under shard_map, like `train_step`; no update).

    Optional: the loop only calls it when `config.eval_every > 0`. Return device-invariant scalars.
    """
    raise NotImplementedError(f'{type(self).__name__} has no eval_step; set --config.eval_every=0.')

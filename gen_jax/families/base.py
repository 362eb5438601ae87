"""The interface every model family implements, and the train state the loop saves whole.

The loop (gen_jax/train.py) only calls `init`, `train_step` and `sample` (plus the optional hooks below), and only
reads `state.step` and `state.params`. Everything family-specific (one optimizer or two, EMA, BatchNorm statistics,
critic steps, samplers, text encoders) lives behind these methods.

Conditioning is one interface for every family: `sample(state, rng, n, cond)` takes `cond`, a pytree of arrays
with leading axis n (one entry per sample: prompt tokens, guidance scale, ...) or None. Unconditional families
ignore it; conditional ones build it with `prompt_conditioning` (from `fixed_prompts` or the user's).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import flax.struct
import jax

from gen_jax.errors import UserError

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
  frozen: Any = None


@dataclasses.dataclass
class Conditioning:
  """What a conditional family samples from: `inputs` (the `cond` pytree, arrays [n ...]) and the prompt of each
  of the n samples, for file names, grid captions and alignment."""
  inputs: Any
  prompts: list[str]


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
  def sample(self, state: TrainState, rng: jax.Array, num_samples: int, cond: Any = None) -> jax.Array:
    """Images [n h w c] in [-1, 1]. Runs under jit; `cond` (arrays [n ...] or None) as built by the methods below."""

  # --- optional hooks (defaults: an unconditional family) ------------------------------------------------------
  conditional: bool = False
  # False for a representation learner (CLIP): no sample grids while training, no --mode sample; --mode eval
  # reports `representation_metrics` instead of sample quality.
  generative: bool = True

  def representation_metrics(self, state: TrainState, images, labels, mesh) -> dict[str, Any]:
    """Non-generative families: their own quality on a labelled split (uint8 images [n h w c], labels [n])."""
    raise NotImplementedError(f'{type(self).__name__} has no representation metrics.')

  def bind_data(self, source) -> dict[str, Any]:
    """Called once with the training source before `init`; returns extra options for the input pipeline
    (`data.pipeline.make_train_dataset` keywords, e.g. caption ids)."""
    del source
    return {}

  def frozen(self) -> Any:
    """`TrainState.frozen` (host or device arrays), built after `bind_data`; None when the family has none."""
    return None

  def checkpoint_metadata(self) -> dict[str, Any]:
    """Saved with every checkpoint; a restore with different values is refused with a clear message."""
    return {'family': self.config.model.family}

  def image_conditioning(self, images, names: list[str], num_per_image: int, guidance: float) -> Conditioning:
    """Image variations (`--mode sample --image PATH`): uint8 images [m h w c] -> conditioning for
    num_per_image samples of each."""
    raise UserError(f'model.family={self.config.model.family!r} cannot make image variations: --image needs an '
                    f'unCLIP config such as configs/unclip_digits.py.')

  def fixed_prompts(self) -> list[str]:
    """The dataset's fixed prompt per class (sample grids, `--mode sample` without --prompt); [] if unconditional."""
    return []

  def prompt_conditioning(self, prompts: list[str], num_per_prompt: int, guidance: float,
                          negative_prompt: str = '') -> Conditioning:
    raise UserError(f'model.family={self.config.model.family!r} is unconditional: --prompt needs a text-to-image '
                    f'config such as configs/ddpm_text_digits.py.')

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> Metrics:
    """Held-out metrics for one batch (per-device code under shard_map, like `train_step`; no update).

    Optional: the loop only calls it when `config.eval_every > 0`. Return device-invariant scalars.
    """
    raise NotImplementedError(f'{type(self).__name__} has no eval_step; set --config.eval_every=0.')

  # Likelihood families (VAE, DDPM): a bound on -log p(x) per example, for `--mode eval` over a whole split.
  reports_bits_per_dim: bool = False

  def bits_per_dim(self, state: TrainState, batch: dict[str, jax.Array], keys: jax.Array) -> jax.Array:
    """Per-example bound in bits/dim [b] for `batch['image']` [b h w c], noise from `keys` [b] (one per example,
    so each value is independent of device count and batch)."""
    raise NotImplementedError(f'{type(self).__name__} has no likelihood bound.')

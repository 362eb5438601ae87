"""Small configs shared by the loop tests: real digits data, a tiny VAE, a handful of steps, no sample grids."""

import jax
import numpy as np

from configs import clip_digits, ddpm_digits, ddpm_text_digits, unclip_digits, vae_digits


def tiny_vae_config(**overrides):
  return _tiny(vae_digits.get_config(), overrides)


def tiny_ddpm_config(**overrides):
  """ddpm_digits with a one-level UNet of 16 channels (res block, middle res-attention-res, two res blocks up):
  the loop and family tests need a real UNet, not a deep one; the UNet's levels, up/downsampling and attention
  resolutions are tested in tests/models/test_unet.py. Two levels with attention at 4x4 compiled 2x slower (tiny
  DDPM step 12.9 -> 6.0 s, 8 devices 17.1 -> 8.5 s; 2-core AMD EPYC, LLVM level 1)."""
  config = ddpm_digits.get_config()
  config.model.ch = 16
  config.model.ch_mult = (1,)
  config.model.attn_resolutions = ()
  config.model.num_groups = 4
  config.diffusion.num_timesteps = 100
  config.sampler.steps = 5
  return _tiny(config, overrides)


def tiny_text_config(encoder='class', **overrides):
  """The tiny DDPM as a text-to-image model: cross-attention (2 heads) in the middle, at 8x8."""
  config = _tiny_conditional_unet(ddpm_text_digits.get_config())
  config.text.encoder = encoder
  config.text.width = 16
  config.text.layers = 1
  config.text.heads = 2
  config.text.max_length = 12
  return _tiny(config, overrides)


def tiny_clip_config(encoder='transformer', **overrides):
  """CLIP with 8/16/32-channel image stages (one conv each), an 8-d shared space and a 1-layer text transformer."""
  config = clip_digits.get_config()
  config.model.embed_dim = 8
  config.model.image_width = 8
  config.model.blocks_per_stage = 1
  config.model.text_hidden = 16
  config.text.encoder = encoder
  config.text.width = 16
  config.text.layers = 1
  config.text.heads = 2
  config.eval_every = 0
  return _tiny(config, overrides)


def tiny_unclip_config(clip_workdir, **overrides):
  """The tiny DDPM UNet as unCLIP's decoder (2 context tokens of 8), a 1-block prior of width 16 with 100 steps."""
  config = _tiny_conditional_unet(unclip_digits.get_config())
  config.unclip.clip_workdir = clip_workdir
  config.unclip.num_tokens = 2
  config.unclip.token_width = 8
  config.unclip.prior_hidden = 16
  config.unclip.prior_layers = 1
  config.unclip.prior_timesteps = 100
  config.unclip.prior_steps = 5
  return _tiny(config, overrides)


def _tiny_conditional_unet(config):
  """A conditional DDPM config (text_ddpm, unclip) with the tiny UNet, cross-attention of 2 heads over 8-d
  context, and 2 samples per prompt in --mode sample."""
  family, tiny = config.model.family, tiny_ddpm_config()
  config.model, config.diffusion, config.sampler = tiny.model, tiny.diffusion, tiny.sampler
  with config.model.unlocked():
    config.model.family = family
    config.model.cross_attn_heads = 2
    config.model.context_dim = 8
  config.sample.num_samples = 2
  config.sample.batch_size = 8
  return config


def _tiny(config, overrides):
  config.data.image_size = 8
  config.data.num_threads = 1
  if config.model.family == 'vae':
    config.model.channels = (8, 16)
    config.model.latent_dim = 4
  config.optim.warmup_steps = 2
  config.global_batch_size = 16
  config.total_steps = 8
  config.log_every = 2
  config.checkpoint_every = 4
  config.sample_every = 0  # no grids (each compiles a sampler): tests that look at grids ask for them
  config.num_samples = 4
  return apply_overrides(config, overrides)


def apply_overrides(config, overrides):
  """{'a.b': v} -> config.a.b = v, like `--config.a.b=v` on the command line."""
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


def host_tree(tree):
  """Replicated jax arrays -> numpy (first local copy), for comparisons."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if hasattr(x, 'addressable_data') else x, tree)

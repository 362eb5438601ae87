"""A small DDPM on scikit-learn's embedded digits (16x16x1): the README's main job, no download.

Command:  python main.py --config configs/ddpm_digits.py --workdir runs/ddpm_digits
Expected: L_simple (eps MSE) falls below ~0.05; runs/ddpm_digits/samples/step_XXXXXX.png (50-step DDIM from
          the EMA params) shows recognisable digits.
Runtime:  see README (measured on a 2-core CPU).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'digits'
  config.data.name = 'digits'
  config.data.image_size = 16

  config.model.family = 'ddpm'
  config.model.ch = 32
  config.model.ch_mult = (1, 2, 2)
  config.model.num_res_blocks = 1
  config.model.attn_resolutions = (8,)
  config.model.dropout = 0.0
  config.model.num_groups = 8
  config.model.dtype = 'float32'

  config.diffusion = default.diffusion_config()
  config.ema = default.ema_config(decay=0.995)
  config.sampler = default.sampler_config()

  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 200
  config.optim.grad_clip_norm = 1.0

  config.global_batch_size = 64
  config.total_steps = 3000
  config.log_every = 100
  config.checkpoint_every = 1000
  config.sample_every = 1000
  config.num_samples = 64
  return config

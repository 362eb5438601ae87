"""DDPM on MNIST (TFDS `mnist`, 28x28x1); for Fashion-MNIST see configs/ddpm_fashion_mnist.py.

Command:  python main.py --config configs/ddpm_mnist.py --workdir runs/ddpm_mnist
          (TFDS mnist as array_record; or any local MNIST-format copy:
           --config.data.source=idx --config.data.idx_dir=DIR)
Expected: L_simple ~0.03 and clean digits in samples/ (50-step DDIM, EMA) after ~20k steps.
Runtime:  ~1 h on one modern GPU for 50k steps; a CPU manages ~1 step/s (use ddpm_digits on a CPU).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'tfds'
  config.data.name = 'mnist'

  config.model.family = 'ddpm'
  config.model.ch = 64
  config.model.ch_mult = (1, 2, 2)  # 28 -> 14 -> 7
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (14,)
  config.model.dropout = 0.1
  config.model.num_groups = 32
  config.model.dtype = 'float32'

  config.diffusion = default.diffusion_config()
  config.ema = default.ema_config(decay=0.9995)
  config.sampler = default.sampler_config()

  config.optim.learning_rate = 2e-4
  config.optim.warmup_steps = 1000
  config.optim.grad_clip_norm = 1.0

  config.global_batch_size = 128
  config.total_steps = 50_000
  config.log_every = 100
  config.checkpoint_every = 5000
  config.sample_every = 5000
  return config

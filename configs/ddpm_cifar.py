"""DDPM on CIFAR-10 with exactly the settings of Ho et al. 2020 (the headline command).

Command:  python main.py --config configs/ddpm_cifar.py --workdir runs/ddpm_cifar
          (TFDS cifar10, prepared as array_record: downloaded on first use with network, else
          `tfds build cifar10 --file_format=array_record`)
Expected: the paper reports FID 3.17 and Inception Score 9.46 (unconditional, 50k samples, EMA params,
          1000-step ancestral sampling) after 800k steps; its bound is <= 3.75 bits/dim on the test set.
Hardware: the paper trained on a TPU v3-8 for 800k steps at ~21 steps/s (10.6 h per 800k steps per their
          appendix: ~0.05 s/step). Here the UNet has 35,746,307 params and a train step costs ~6 TFLOP at batch
          128 (597 GFLOP at batch 16). Measured on one H200 (2026-11-26): 33.5 ms per step at batch 128, so
          ~7.5 h of step time for 800k steps (plus input pipeline and checkpoints); step compile 43 s cold,
          5 s from the persistent cache. Months on a CPU.
Sample:   python main.py --config configs/ddpm_cifar.py --workdir runs/ddpm_cifar --mode sample
          --config.sample.num_samples=50000 --config.sampler.name=ddpm
Eval:     python main.py --config configs/ddpm_cifar.py --workdir runs/ddpm_cifar --mode eval
          [--config.sampler.name=ddpm for the paper's sampler] [--config.eval.follow=True beside training]:
          FID / IS / KID of 50k samples against all 50k training images (pytorch-fid's Inception weights:
          downloaded once, or --config.eval.inception_weights=PATH), classifier metrics, and bits/dim over
          the whole test split. Not run here (needs a trained checkpoint: TPU/GPU-sized).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'tfds'
  config.data.name = 'cifar10'
  config.data.random_flip = True

  config.model.family = 'ddpm'
  config.model.ch = 128
  config.model.ch_mult = (1, 2, 2, 2)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.1
  config.model.num_groups = 32
  config.model.dtype = 'float32'

  config.diffusion = default.diffusion_config()  # linear 1e-4 .. 0.02, T = 1000, eps prediction, L_simple
  config.ema = default.ema_config(decay=0.9999)
  config.sampler = default.sampler_config()
  config.sampler.name = 'ddpm'  # the paper's 1000-step ancestral sampler
  config.sampler.variance = 'fixed_large'

  config.optim.name = 'adam'
  config.optim.learning_rate = 2e-4
  config.optim.warmup_steps = 5000
  config.optim.schedule = 'constant'
  config.optim.grad_clip_norm = 1.0

  config.global_batch_size = 128
  config.total_steps = 800_000
  config.log_every = 100
  config.checkpoint_every = 10_000
  config.max_checkpoints_to_keep = 3
  config.sample_every = 10_000
  config.num_samples = 64
  config.compilation_cache_dir = 'workdir'
  config.eval.inception = True  # FID / IS / KID as papers report them (pytorch-fid's Inception weights)
  config.eval.num_samples = 50000
  return config

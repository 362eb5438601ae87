"""DCGAN (Radford et al. 2016) on the embedded digits at 28x28 (CPU, no download).

Command:  python main.py --config configs/dcgan_digits.py --workdir runs/dcgan_digits
Expected: D/G losses stay in balance (d_loss ~0.5-1.3, g_loss ~1-3) and samples/step_001000.png shows
          digit-like strokes with varied shapes (not one repeated image).
Runtime:  a few minutes on a 2-core CPU (ngf = ndf = 32, batch 64).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'digits'
  config.data.image_size = 28
  config.model = default.gan_model_config('dcgan', 'dcgan')
  config.model.ngf = config.model.ndf = 32
  config.gan = default.gan_config('nonsaturating')
  config.optim = default.gan_optim(2e-4, 0.5, 0.999)
  config.optim_d = default.gan_optim(2e-4, 0.5, 0.999)
  config.global_batch_size = 64
  config.total_steps = 1000
  config.log_every = 100
  config.checkpoint_every = 500
  config.sample_every = 500
  return config

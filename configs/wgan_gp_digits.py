"""WGAN-GP with DCGAN-style nets (LayerNorm critic) on the embedded digits at 28x28 (CPU, no download).

Command:  python main.py --config configs/wgan_gp_digits.py --workdir runs/wgan_gp_digits
Expected: the Wasserstein estimate falls and the gradient penalty stays small (< 1); samples show digit-like
          strokes after a few hundred generator steps.
Runtime:  a few minutes on a 2-core CPU (5 critic updates per generator update, ngf = ndf = 32).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'digits'
  config.data.image_size = 28
  config.model = default.gan_model_config('dcgan', 'dcgan')
  config.model.ngf = config.model.ndf = 32
  config.model.d_norm = 'layer'
  config.gan = default.gan_config('wasserstein', n_critic=5, gp_weight=10.0)
  config.optim = default.gan_optim(1e-4, 0.0, 0.9)
  config.optim_d = default.gan_optim(1e-4, 0.0, 0.9)
  config.global_batch_size = 64
  config.total_steps = 400
  config.log_every = 50
  config.checkpoint_every = 200
  config.sample_every = 200
  return config

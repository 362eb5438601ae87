"""WGAN-GP with DCGAN-style nets (LayerNorm critic) on the embedded digits at 28x28 (CPU, no download).

Command:  python main.py --config configs/wgan_gp_digits.py --workdir runs/wgan_gp_digits
Expected: the Wasserstein estimate falls (6.6 at step 300 -> 4.5 at step 400), the gradient penalty stays small
          (~0.05-0.09), and samples/step_000400.png shows blurry but varied digit-like images (0, 3, 6, 8, 9).
Runtime:  ~4 minutes on a 2-core CPU (1.8 generator steps/s: 5 critic updates each, ngf = ndf = 32).
Eval:     --mode eval (10k samples; 2-core Sapphire Rapids, 2026-12-02): classifier FD 154 (169 at n=297 vs 63 for
          the real test digits), precision 0.18, recall 0.62; 15 s.
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

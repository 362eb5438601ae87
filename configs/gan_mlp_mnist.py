"""The MLP GAN of our design notes on MNIST (28x28x1): G 100->256->512->1024->784 (BatchNorm, ReLU, tanh),
D 784->1024->512->256->1 (LeakyReLU 0.2, Dropout 0.3), BCE on logits, Adam 2e-4 betas (0.5, 0.999), batch 64.

Command:  python main.py --config configs/gan_mlp_mnist.py --workdir runs/gan_mlp_mnist
Expected: blurry-to-clean digits after ~20k steps (a classic fully connected GAN; no published score).
Runtime:  ~20 minutes on a 2-core CPU for 20k steps.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'tfds'
  config.data.name = 'mnist'
  config.model = default.gan_model_config('mlp', 'mlp')
  config.gan = default.gan_config('nonsaturating')
  config.optim = default.gan_optim(2e-4, 0.5, 0.999)
  config.optim_d = default.gan_optim(2e-4, 0.5, 0.999)
  config.global_batch_size = 64
  config.total_steps = 20_000
  config.log_every = 200
  config.checkpoint_every = 2000
  config.sample_every = 2000
  return config

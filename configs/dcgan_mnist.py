"""DCGAN on MNIST (TFDS `mnist`, 28x28x1), the paper's settings: Adam lr 2e-4, beta1 0.5, batch 128.

Command:  python main.py --config configs/dcgan_mnist.py --workdir runs/dcgan_mnist
Expected: sharp digits after ~10k steps (the paper shows MNIST samples, no score).
Runtime:  ~10 minutes on one GPU; ~1 h on a 2-core CPU.
"""

from configs import dcgan_digits


def get_config():
  config = dcgan_digits.get_config()
  config.data.source = 'tfds'
  config.data.name = 'mnist'
  config.model.ngf = config.model.ndf = 64
  config.global_batch_size = 128
  config.total_steps = 10_000
  config.log_every = 200
  config.checkpoint_every = 2000
  config.sample_every = 1000
  return config

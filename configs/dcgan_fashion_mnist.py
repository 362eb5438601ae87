"""DCGAN on Fashion-MNIST (28x28x1) from local IDX files (Debian's `dataset-fashion-mnist`; works offline): the
CPU-sized Fashion-MNIST run of the results table.

Command:  python main.py --config configs/dcgan_fashion_mnist.py --workdir runs/dcgan_fashion_mnist
          python main.py --config configs/dcgan_fashion_mnist.py --workdir runs/dcgan_fashion_mnist --mode eval
Expected: garment-like samples (shirts, trousers, shoes, bags) in samples/step_003000.png; --mode eval figures in
          the README results table.
Runtime:  see the README results table (train and eval times measured on a 2-core CPU).
"""

from configs import dcgan_digits


def get_config():
  config = dcgan_digits.get_config()
  config.data.source = 'idx'
  config.data.name = 'fashion_mnist'
  config.data.idx_dir = '/usr/share/datasets/fashion-mnist'
  config.total_steps = 3000
  config.checkpoint_every = 1000
  config.sample_every = 1000
  config.log_every = 200
  return config

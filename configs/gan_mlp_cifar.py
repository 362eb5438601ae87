"""The MLP GAN of our design notes on CIFAR-10 (32x32x3): latent 100 -> 256 -> 512 -> 1024 -> 3072.

Command:  python main.py --config configs/gan_mlp_cifar.py --workdir runs/gan_mlp_cifar
Expected: colour blobs with some object structure (fully connected GANs do poorly on CIFAR-10; a baseline).
Runtime:  ~30 minutes on a 2-core CPU for 20k steps (D+G step ~60 ms).
"""

from configs import gan_mlp_mnist


def get_config():
  config = gan_mlp_mnist.get_config()
  config.data.name = 'cifar10'
  config.eval.inception = True  # FID / IS / KID as papers report them (pytorch-fid's Inception weights)
  config.eval.num_samples = 50000
  return config

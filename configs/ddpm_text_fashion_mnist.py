"""Text-to-image DDPM on Fashion-MNIST (28x28x1) from local IDX files, captions from templates, frozen MiniLM.

Command:  python main.py --config configs/ddpm_text_fashion_mnist.py --workdir runs/ddpm_text_fashion
          python main.py --config configs/ddpm_text_fashion_mnist.py --workdir runs/ddpm_text_fashion --mode sample \
              --prompt "a photo of a sneaker" --prompt "a black and white photo of a dress"
          (`apt-get install dataset-fashion-mnist` puts the files in /usr/share/datasets/fashion-mnist)
Expected: prompt grids of the named garment; alignment (fraction of samples our Fashion-MNIST classifier assigns
          to the prompted class) printed by --mode sample; our Fashion-MNIST classifier (1000 steps, 1.7 min on
          2 cores) has 89.2% test accuracy, which bounds what alignment can show. Not yet run to completion
          (checked here: 20 steps on a 2-core Sapphire Rapids, ~1.8 s/step at batch 32); the unconditional
          ddpm_fashion_mnist reaches recognisable garments after ~20k steps.
Runtime:  ~1 h on one modern GPU for 50k steps (as ddpm_fashion_mnist plus cross-attention); a CPU manages
          ~1 step/s.
"""

from configs import ddpm_fashion_mnist, default


def get_config():
  config = default.with_text_conditioning(ddpm_fashion_mnist.get_config(), encoder='minilm', context_dim=128)
  config.text.max_length = 12
  return config

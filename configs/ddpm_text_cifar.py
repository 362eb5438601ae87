"""Text-to-image DDPM on CIFAR-10 (32x32x3): class captions from templates ("a photo of a cat", "a blurry photo
of an airplane"), frozen MiniLM token states through 4-head cross-attention at 16x16 and 8x8, guidance 3.

Command:  python main.py --config configs/ddpm_text_cifar.py --workdir gs://BUCKET/ddpm_text_cifar  (TPU pod)
          python main.py --config configs/ddpm_text_cifar.py --workdir runs/ddpm_text_cifar --mode sample \
              --prompt "a photo of a horse" --config.sample.guidance=3
Expected: not run yet (needs a TPU/GPU): --mode sample prints the alignment of each class prompt (our CIFAR-10
          classifier's verdict); FID comes with the evaluation issue. The UNet is the DDPM paper's (ch 128,
          1-2-2-2) plus cross-attention: TPU-sized. Guidance w here is Ho & Salimans' w + 1 (w = 1: no guidance).
Runtime:  like ddpm_cifar (~7.5 h of step time for 800k steps on one H200 without text) plus ~15-25% for the
          cross-attention; not run here (CPU only). Data: TFDS cifar10 as array_record.
"""

from configs import ddpm_cifar, default


def get_config():
  config = default.with_text_conditioning(ddpm_cifar.get_config(), encoder='minilm', cross_attn_heads=4,
                                          context_dim=256)
  config.model.attn_resolutions = (16, 8)
  config.text.max_length = 16
  return config

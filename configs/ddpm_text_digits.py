"""Text-to-image DDPM on scikit-learn's embedded digits (16x16x1), captioned from templates, frozen MiniLM.

Command:  python main.py --config configs/ddpm_text_digits.py --workdir runs/ddpm_text_digits
          python main.py --config configs/ddpm_text_digits.py --workdir runs/ddpm_text_digits --mode sample \
              --prompt "a handwritten digit three" --prompt "the number 8" --config.sample.guidance=3
Expected: (filled in below from the measured run)
Runtime:  (filled in below)
"""

from configs import ddpm_digits, default


def get_config():
  config = default.with_text_conditioning(ddpm_digits.get_config(), encoder='minilm')
  config.text.max_length = 12  # the longest digit caption has 11 tokens
  config.sample.num_samples = 100  # per prompt in --mode sample
  config.sample.batch_size = 200
  return config

"""unCLIP on scikit-learn's embedded digits (16x16x1): prior + decoder over clip_digits' joint space, the
ddpm_text_digits UNet and training budget (1500 steps at batch 64), so the two text-to-image paths compare at
equal steps.

Command:  python main.py --config configs/clip_digits.py --workdir runs/clip_digits     # the CLIP, ~1.5 min
          python main.py --config configs/unclip_digits.py --workdir runs/unclip_digits
          python main.py --config configs/unclip_digits.py --workdir runs/unclip_digits --mode sample \
              --prompt "a handwritten digit three" --prompt "the number 8"
          python main.py --config configs/unclip_digits.py --workdir runs/unclip_digits --mode sample \
              --image my_digit.png                                   # variations: image -> CLIP -> decoder
          python main.py --config configs/unclip_digits.py --workdir runs/unclip_digits --mode eval \
              --config.eval.num_samples=1000
Expected / Runtime: see README (unCLIP vs ddpm_text_digits).
"""

import ml_collections

from configs import ddpm_text_digits


def get_config():
  config = ddpm_text_digits.get_config()
  del config['text']  # the text side is the CLIP's
  config.model.family = 'unclip'
  config.unclip = ml_collections.ConfigDict({
      'clip_workdir': 'runs/clip_digits',  # a trained CLIP run (configs/clip_digits.py), frozen here
      'p_uncond': 0.1,  # classifier-free guidance: probability of training with the null image embedding
      'num_tokens': 4,  # context tokens the image embedding is projected into (DALL-E 2: 4)
      'token_width': 64,
      'prior': 'diffusion',  # 'diffusion' (DALL-E 2's) | 'regression' (Gaussian mean, the baseline)
      'prior_hidden': 256,
      'prior_layers': 4,
      'prior_schedule': 'cosine',
      'prior_timesteps': 1000,
      'prior_steps': 50,  # DDIM steps when sampling the prior
  })
  config.eval.clip_workdir = config.unclip.get_ref('clip_workdir')  # CLIP score from the same CLIP by default
  return config

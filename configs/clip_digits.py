"""CLIP on scikit-learn's embedded digits (16x16x1) and their templated captions: a small CNN image tower and
frozen MiniLM + a trained MLP head as the text tower, 64-d shared space (the space unclip_digits generates from).

Command:  python main.py --config configs/clip_digits.py --workdir runs/clip_digits
          python main.py --config configs/clip_digits.py --workdir runs/clip_digits --mode eval
Expected: InfoNCE ~4.8 (log 128) at step 0; --mode eval prints zero-shot accuracy with the ten class prompts on
          the 297 test digits (target >= 90%) and retrieval recall@1.
Runtime:  see README (measured on a 2-core Sapphire Rapids).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'digits'
  config.data.name = 'digits'
  config.data.image_size = 16

  config.model.family = 'clip'
  config.model.embed_dim = 64  # the shared space: unit vectors in R^64
  config.model.image_width = 32  # CNN stages of 32, 64, 128 channels
  config.model.blocks_per_stage = 2
  config.model.text_hidden = 256  # the text head's hidden layer (over MiniLM's 384-d sentence embedding)
  config.text = default.text_config('minilm')
  config.text.max_length = 12
  config.text.p_uncond = 0.0  # unused by CLIP (no null conditioning); kept so every text config has the key

  config.optim.name = 'adamw'
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 0.1
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100

  config.global_batch_size = 128
  config.total_steps = 1000
  config.log_every = 100
  config.checkpoint_every = 500
  config.sample_every = 1000  # unused: CLIP draws no samples
  config.eval_every = 500
  config.eval_batches = 2
  config.eval.batch_size = 512
  return config

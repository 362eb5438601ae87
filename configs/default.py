"""Shared defaults for every gen_jax experiment.

Experiment configs call `get_config()` from here and override what differs, so every run has the same set of
keys (a misspelt `--config.x=y` fails because the returned config is locked).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # --- data -----------------------------------------------------------------------------------------------
  config.data = ml_collections.ConfigDict()
  config.data.source = 'digits'  # 'digits' (scikit-learn, embedded) | 'idx' (local MNIST-format files) | 'tfds'
  config.data.name = 'digits'  # TFDS name (mnist, fashion_mnist, cifar10, ...); for 'idx' picks the class names
  config.data.split = 'train'
  config.data.eval_split = 'test'  # held-out split for config.eval_every
  config.data.image_size = 16  # digits only: 8x8 originals are resized to this size
  config.data.idx_dir = '/usr/share/datasets/fashion-mnist'  # 'idx' only: directory of *-idx?-ubyte[.gz] files
  config.data.tfds_data_dir = ''  # '' = TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
  config.data.download = True  # 'tfds' only: download + prepare when not prepared yet (needs network)
  config.data.random_flip = False  # random horizontal flips (CIFAR-10 in DDPM)
  config.data.num_threads = 4  # grain read threads per process
  config.data.caption_key = ''  # text families, tfds only: a text feature used as free-text captions

  # --- model (family-specific keys live in the experiment configs) -----------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.family = 'vae'
  config.model.dtype = 'float32'  # computation dtype: 'bfloat16' = float32 params/norm stats/losses (gen_jax.precision)

  # --- optimisation ---------------------------------------------------------------------------------------
  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adam'  # 'adam' | 'adamw'
  config.optim.learning_rate = 1e-3
  config.optim.schedule = 'constant'  # 'constant' | 'cosine' (both after linear warm-up)
  config.optim.warmup_steps = 0
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.weight_decay = 0.0  # adamw only
  config.optim.grad_clip_norm = 0.0  # 0 disables global-norm clipping

  # --- training loop --------------------------------------------------------------------------------------
  config.global_batch_size = 128  # across all devices of all processes; must divide by the device count
  config.total_steps = 1000
  config.steps_per_call = 1  # K steps per compiled call (lax.scan); K>1 is slow on XLA:CPU (see benchmarks/RESULTS.md)
  config.log_every = 50
  config.checkpoint_every = 500
  config.max_checkpoints_to_keep = 3
  config.sample_every = 500  # a sample grid every N steps and at the end; 0 = none (no sampler compiled)
  config.num_samples = 64  # images in the sample grid
  config.eval_every = 0  # 0 = no held-out evaluation; else every N steps on `eval_batches` batches
  config.eval_batches = 4  # of global_batch_size examples from data.eval_split (the same ones every time)
  # --- --mode sample (from the latest checkpoint) -------------------------------------------------------------
  config.sample = ml_collections.ConfigDict()
  config.sample.num_samples = 64
  config.sample.batch_size = 64  # per call, split over all devices
  config.sample.seed = 0
  config.sample.guidance = 1.0  # text families: classifier-free guidance scale w (1 = conditional model)

  # --- --mode eval: sample-quality metrics of checkpoints (gen_jax/evaluate.py) --------------------------------
  config.eval = ml_collections.ConfigDict()
  config.eval.num_samples = 10000  # images drawn per checkpoint (text families: split evenly over class prompts)
  config.eval.batch_size = 512  # images per sampling call, split over all devices (a multiple of their count)
  config.eval.seed = 1  # sample i uses fold_in(PRNGKey(seed), i): the same images on any device count
  config.eval.reference_split = 'train'  # statistics of every example of this split; the floor uses data.eval_split
  config.eval.classifier = True  # FD / IS / precision-recall on the dataset classifier's features (offline)
  config.eval.inception = False  # FID / IS / KID on the FID Inception network (needs pytorch-fid's weights)
  config.eval.inception_weights = ''  # pt_inception-2015-12-05-6726825d.pth or its .npz; '' = <cache_dir>/...
  config.eval.kid_subsets = 100
  config.eval.kid_subset_size = 1000
  config.eval.is_splits = 10
  config.eval.pr_k = 3  # precision / recall: k of the k-NN balls (Kynkaanniemi et al. 2019)
  config.eval.max_reference_features = 10000  # real features kept for KID / precision-recall (stats use all)
  config.eval.bits_per_dim = True  # VAE / DDPM: the likelihood bound over every example of data.eval_split
  config.eval.clip_workdir = ''  # text families: a trained CLIP run (configs/clip_digits.py) -> CLIP score
  config.eval.cache_dir = ''  # reference statistics + Inception weights; '' = $XDG_CACHE_HOME/gen_jax/eval
  config.eval.follow = False  # wait for new checkpoints of a running training job; evaluate each once
  config.eval.follow_poll_s = 30
  config.eval.follow_timeout_s = 3600  # follow: stop after this long without a new checkpoint

  # --- dataset classifier (alignment of text-to-image samples) ---------------------------------------------
  config.classifier = ml_collections.ConfigDict()
  config.classifier.cache_dir = ''  # '' = $XDG_CACHE_HOME/gen_jax/classifier; trained once per dataset, then reused

  config.remat = False  # DDPM-family UNets: recompute each block in the backward pass (less memory, same result)
  config.compilation_cache_dir = ''  # '' = no persistent XLA cache; 'workdir' = <workdir>/xla_cache
  config.compiled_step_cache = True  # with that cache on, also keep the whole train step (no tracing when cached)

  return config


# Blocks shared by the diffusion configs (attached by the configs that use them, so other families' configs stay
# free of keys they ignore).
def diffusion_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'schedule': 'linear',  # 'linear' (Ho et al.: 1e-4 .. 0.02) | 'cosine' (Nichol & Dhariwal)
      'num_timesteps': 1000,
      'prediction': 'eps',  # what the network predicts: 'eps' (paper) | 'x0' | 'v'
      'eval_bpd': False,  # with eval_every > 0: also the variational bound in bits/dim (T forwards per batch)
  })


def ema_config(decay: float = 0.9999) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'decay': decay})


def sampler_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'name': 'ddim',  # 'ddim' | 'ddpm' (ancestral, all T steps)
      'steps': 50,  # DDIM: respaced steps S
      'eta': 0.0,  # DDIM: 0 deterministic, 1 ~ ancestral
      'variance': 'fixed_large',  # DDPM: 'fixed_large' (beta_t) | 'fixed_small' (posterior variance)
      'clip_x0': True,
      'dynamic_threshold': 0.0,  # percentile p (Imagen: 0.995) replaces the static x0 clip; 0 = off
      'use_ema': True,
  })


def text_config(encoder: str = 'minilm') -> ml_collections.ConfigDict:
  """Text conditioning of the text_ddpm family (attached by the text configs)."""
  return ml_collections.ConfigDict({
      'encoder': encoder,  # 'minilm' (frozen all-MiniLM-L6-v2) | 'transformer' (trained) | 'class' (label embedding)
      'max_length': 16,  # tokens per caption incl. [CLS]/[SEP]; longer prompts are truncated with a warning
      'width': 128,  # transformer / class: embedding width (minilm: 384, fixed)
      'layers': 2,  # transformer only
      'heads': 4,  # transformer only
      'p_uncond': 0.1,  # classifier-free guidance: probability of training with the null conditioning
  })


def gan_model_config(generator: str = 'dcgan', discriminator: str = 'dcgan') -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'family': 'gan',
      'generator': generator,  # 'dcgan' | 'resnet' | 'mlp'
      'discriminator': discriminator,  # 'dcgan' | 'resnet' | 'mlp'
      'latent_dim': 100,
      'ngf': 64,  # generator width (resnet: channels)
      'ndf': 64,  # discriminator width (resnet: channels)
      'd_norm': 'batch',  # dcgan discriminator: 'batch' | 'layer' | 'none' (WGAN-GP needs no BatchNorm)
      'd_dropout': 0.3,  # mlp discriminator
  })


def gan_config(loss: str = 'nonsaturating', n_critic: int = 1, gp_weight: float = 0.0) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'loss': loss,  # 'nonsaturating' (DCGAN, MLP GAN) | 'wasserstein' (WGAN-GP) | 'least_squares' (LSGAN)
      'n_critic': n_critic,  # critic updates per generator update (each on a fresh real batch)
      'gp_weight': gp_weight,  # lambda of the gradient penalty (0 = none)
      'unroll_critic': 'auto',  # 'auto' (unroll on CPU, lax.scan elsewhere) | True | False
  })


def gan_optim(learning_rate: float, b1: float, b2: float) -> ml_collections.ConfigDict:
  optim = get_config().optim
  optim.learning_rate, optim.b1, optim.b2 = learning_rate, b1, b2
  return optim


def with_text_conditioning(config: ml_collections.ConfigDict, encoder: str = 'minilm', cross_attn_heads: int = 4,
                           context_dim: int = 64, guidance: float = 3.0) -> ml_collections.ConfigDict:
  """A DDPM config made text-to-image: the text_ddpm family, its text block and guided sample grids."""
  config.model.family = 'text_ddpm'
  config.model.cross_attn_heads = cross_attn_heads  # heads of the cross-attention to the text tokens
  config.model.context_dim = context_dim  # text token states are projected to this width first (0 = keep)
  config.text = text_config(encoder)
  config.sample.guidance = guidance
  config.num_samples = 80  # training grids: one row of 8 per class prompt (10 classes)
  return config

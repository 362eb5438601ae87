"""unCLIP (Ramesh et al. 2022, "DALL-E 2"), small: a frozen CLIP's joint space, a prior from CLIP text embeddings
to CLIP image embeddings, and a decoder DDPM that turns an image embedding back into an image.

Training (one step trains both, on the same batch): the frozen CLIP (gen_jax/families/clip.py, restored from
`unclip.clip_workdir`) embeds each training image (z_i) and its caption (z_t). The decoder is the DDPM UNet
conditioned on z_i, projected into the timestep embedding and into `unclip.num_tokens` context tokens for its
cross-attention, with z_i replaced by a learned null `unclip.p_uncond` of the time (classifier-free guidance).
The prior learns p(z_i | z_t): a diffusion prior over the embedding vector predicting the clean embedding, or
the Gaussian regression baseline (`unclip.prior='regression'`).

Sampling: prompt -> CLIP text embedding -> prior -> image embedding -> guided decoder (`--prompt`); image
variations skip the prior: image -> CLIP image embedding -> decoder (`--image PATH`). Embeddings live on CLIP's
unit sphere; the networks see them scaled by sqrt(d) (unit-variance components).

The CLIP's weights are not checkpointed with the unCLIP (they are frozen inputs, restored from its workdir at
every start); its step is recorded, so a CLIP trained further later is refused with the step to pin
(`unclip.clip_step`) instead of silently swapping the embedding space.

Config: unclip.{clip_workdir, clip_step, p_uncond, num_tokens, prior, prior_hidden, prior_layers, prior_schedule,
prior_timesteps, prior_steps}, model.{cross_attn_heads, context_dim} on top of the DDPM family's keys.
Shapes: b batch, d CLIP embed_dim, k context tokens, e token width.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import parallel
from gen_jax.contrastive import normalise
from gen_jax.diffusion import GaussianDiffusion
from gen_jax.diffusion.samplers import classifier_free_guidance, ddim_sample
from gen_jax.errors import UserError
from gen_jax.families import register
from gen_jax.families.base import Conditioning, TrainState
from gen_jax.families.ddpm import DDPMFamily
from gen_jax.families.text_ddpm import TextDDPMFamily
from gen_jax.models.prior import DiffusionPrior, RegressionPrior
from gen_jax.text.encoders import TextEmbedding

PRIORS = ('diffusion', 'regression')


@register('unclip')
class UnCLIPFamily(TextDDPMFamily):
  def __init__(self, config):
    DDPMFamily.__init__(self, config)
    m, u = config.model, config.unclip
    if not 0.0 <= u.p_uncond < 1.0:
      raise UserError(f'unclip.p_uncond={u.p_uncond} must be in [0, 1).')
    if u.prior not in PRIORS:
      raise UserError(f'Unknown unclip.prior {u.prior!r}; use one of {PRIORS}.')
    if not u.clip_workdir:
      raise UserError('unclip.clip_workdir is empty: train a CLIP first (python main.py --config '
                      'configs/clip_digits.py --workdir runs/clip_digits) and pass --config.unclip.clip_workdir='
                      'runs/clip_digits.')
    self.p_uncond = u.p_uncond
    self.model = self._cross_attention_unet(m)
    self.tokens = nn.Dense(u.num_tokens * u.token_width)
    if config.data.get('caption_key'):
      raise UserError('unclip trains its prior on the dataset\'s templated captions (those its CLIP embedded); '
                      'data.caption_key (free-text captions) is not supported: set --config.data.caption_key=.')
    if u.prior == 'diffusion':
      self.prior = DiffusionPrior(u.prior_hidden, u.prior_layers)
      try:
        self.prior_diffusion = GaussianDiffusion.create(u.prior_schedule, u.prior_timesteps)
      except ValueError as e:
        raise UserError(f'Bad unclip prior diffusion config: {e}') from None
      if not 1 <= u.prior_steps <= u.prior_timesteps:
        raise UserError(f'unclip.prior_steps={u.prior_steps} must be in [1, unclip.prior_timesteps='
                        f'{u.prior_timesteps}].')
    else:
      self.prior = RegressionPrior(u.prior_hidden, u.prior_layers)
    self.clip = None  # a TrainedCLIP, set by bind_data

  # --- the frozen CLIP -------------------------------------------------------------------------------------------
  def bind_data(self, source):
    from gen_jax.evaluation.clip_score import load_clip
    u = self.config.unclip  # the CLIP is pinned by step: checkpoints record it (checkpoint_metadata)
    self.clip = load_clip(u.clip_workdir, parallel.make_mesh(), u.clip_step or None)
    clip_family = self.clip.family
    if tuple(source.image_shape) != self.clip.image_shape:
      raise UserError(f'The CLIP in {self.config.unclip.clip_workdir} was trained on {self.clip.image_shape} '
                      f'images; this config trains on {tuple(source.image_shape)}. Train the CLIP on the same '
                      f'data and image size.')
    if tuple(source.class_names) != clip_family.captions.class_names:
      raise UserError(f'The CLIP in {self.config.unclip.clip_workdir} was trained on other classes '
                      f'({clip_family.captions.class_names[:3]}...); train it on {self.config.data.name}.')
    self.captions, self.encoder = clip_family.captions, clip_family.encoder
    self.embed_dim = clip_family.config.model.embed_dim
    return {'caption_templates': self.captions.num_templates}

  def frozen(self):
    """The CLIP image tower's weights (the decoder's condition is computed from each batch) and the CLIP text
    embedding of every caption (the prior's condition), embedded once."""
    return {'clip_image': self.clip.state.params['image'],
            'caption_embedding': self.clip.text_embeddings(list(self.captions.captions))}

  def checkpoint_metadata(self):
    return {'family': 'unclip', 'clip_embed_dim': self.embed_dim, 'prior': self.config.unclip.prior,
            'clip_step': self.clip.step}

  def image_embedding(self, frozen, images: jax.Array) -> jax.Array:
    """images [b h w c] in [-1, 1] -> the frozen CLIP's unit image embeddings [b d]."""
    params = {'image': frozen['clip_image']}
    return jax.lax.stop_gradient(self.clip.family.image_embedding(params, images))

  # --- networks --------------------------------------------------------------------------------------------------
  def _scale(self) -> float:
    return math.sqrt(self.embed_dim)

  def _init_params(self, key, x):
    unet_key, token_key, null_key, prior_key = jax.random.split(key, 4)
    u, d = self.config.unclip, self.embed_dim
    emb = jnp.zeros((1, d))
    params = {'unet': self.model.init(unet_key, x, jnp.zeros((1,), jnp.int32), train=False,
                                      context=jnp.zeros((1, u.num_tokens, u.token_width)),
                                      context_mask=jnp.ones((1, u.num_tokens), bool), pooled=emb)['params'],
              'tokens': self.tokens.init(token_key, emb)['params'],
              'null': {'states': 0.02 * jax.random.normal(null_key, (u.token_width,)), 'pooled': jnp.zeros((d,))}}
    if u.prior == 'diffusion':
      params['prior'] = self.prior.init(prior_key, emb, jnp.zeros((1,), jnp.int32), emb)['params']
    else:
      params['prior'] = self.prior.init(prior_key, emb)['params']
    return params

  def _condition(self, params, emb: jax.Array) -> TextEmbedding:
    """Unit image embeddings [b d] -> the decoder's conditioning: k context tokens [b k e] and the pooled [b d]."""
    u = self.config.unclip
    scaled = emb * self._scale()
    tokens = self.tokens.apply({'params': params['tokens']}, scaled).reshape(-1, u.num_tokens, u.token_width)
    return TextEmbedding(tokens, jnp.ones(tokens.shape[:2], bool), scaled)

  def _network(self, params, frozen, batch, drop_key=None):
    emb = self.image_embedding(frozen, batch['image'])
    b = emb.shape[0]
    drop = jnp.zeros((b,), bool) if drop_key is None else self.null_mask(drop_key, b)
    return self._conditioned(params, self._condition(params, emb), drop)

  def _extra_losses(self, params, frozen, batch, key):
    """The prior's loss on this batch: z_t = the caption's CLIP text embedding, z_i the image's."""
    text = frozen['caption_embedding'][batch['caption']] * self._scale()  # [b d]
    target = self.image_embedding(frozen, batch['image']) * self._scale()
    apply = lambda *a: self.prior.apply({'params': params['prior']}, *a)
    if self.config.unclip.prior == 'regression':
      return {'prior_loss': jnp.mean(jnp.square(apply(text) - target))}
    keys = parallel.example_keys(key, target.shape[0])
    diffusion = self.prior_diffusion
    t = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0, diffusion.num_timesteps))(keys)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), target.shape[1:]))(keys)
    predicted = apply(diffusion.q_sample(target, t, noise), t, text)
    return {'prior_loss': jnp.mean(diffusion.training_loss('x0', predicted, target, noise, t))}

  def sample_prior(self, params, text: jax.Array, key: jax.Array) -> jax.Array:
    """Unit text embeddings [b d] -> sampled unit image embeddings [b d] (DDIM over the prior, or its mean)."""
    u, scaled = self.config.unclip, text * self._scale()
    if u.prior == 'regression':
      return normalise(self.prior.apply({'params': params['prior']}, scaled))
    model_fn = lambda z, t: self.prior.apply({'params': params['prior']}, z, t, scaled)
    z = ddim_sample(model_fn, self.prior_diffusion, 'x0', scaled.shape, key, u.prior_steps, 0.0, clip_x0=False)
    return normalise(z)

  # --- sampling --------------------------------------------------------------------------------------------------
  def sample(self, state: TrainState, rng, num_samples: int, cond=None):
    """`cond`: {'text' [n d], 'image' [n d] unit embeddings, 'use_prior' [n], 'guidance' [n]}: rows with
    use_prior draw their image embedding from the prior (prompts), the others use 'image' (variations)."""
    if cond is None:
      raise UserError('unclip samples need prompts or images (Family.prompt_conditioning / image_conditioning).')
    params = state.ema_params if self.config.sampler.use_ema else state.params
    prior_key, decoder_key = jax.random.split(rng)
    from_prior = self.sample_prior(params, cond['text'], prior_key)
    emb = jnp.where(cond['use_prior'][:, None], from_prior, cond['image'])
    condition = self._condition(params, emb)
    both = jax.tree.map(lambda a: jnp.concatenate([a, a]), condition)
    drop = jnp.concatenate([jnp.zeros((num_samples,), bool), jnp.ones((num_samples,), bool)])
    joint = self._conditioned(params, both, drop)
    model_fn = classifier_free_guidance(lambda x, t: joint(x, t), cond['guidance'])
    return self._run_sampler(model_fn, num_samples, decoder_key)

  def _rows(self, text, image, use_prior, guidance, names) -> Conditioning:
    n = len(names)
    return Conditioning(inputs={'text': np.asarray(text, np.float32), 'image': np.asarray(image, np.float32),
                                'use_prior': np.full((n,), use_prior), 'guidance': np.full((n,), guidance,
                                                                                           np.float32)},
                        prompts=list(names))

  def prompt_conditioning(self, prompts, num_per_prompt, guidance, negative_prompt=''):
    if negative_prompt.strip():
      raise UserError('unclip guides with the null image embedding; --negative_prompt is for text_ddpm configs.')
    prompts = self.check_prompts(prompts)
    each = [p for p in prompts for _ in range(num_per_prompt)]
    text = self.clip.text_embeddings(each)
    return self._rows(text, np.zeros_like(text), True, guidance, each)

  def image_conditioning(self, images: np.ndarray, names, num_per_image: int, guidance: float) -> Conditioning:
    """Variations: uint8 images [m h w c] -> their CLIP image embeddings, each repeated num_per_image times."""
    emb = np.repeat(self.clip.image_embeddings(images), num_per_image, axis=0)
    each = [name for name in names for _ in range(num_per_image)]
    return self._rows(np.zeros_like(emb), emb, False, guidance, each)

"""CLIP family (Radford et al. 2021): an image encoder and a text encoder trained into one shared embedding
space, the unit sphere of `model.embed_dim` dimensions, by symmetric InfoNCE with a learned temperature.

Text side: any of gen_jax/text's encoders (frozen MiniLM, the trainable transformer, per-class embeddings) whose
pooled embedding goes through a trained MLP head; image side: the CNN of gen_jax/models/clip.py. Negatives are
global: under shard_map every device scores its pairs against the whole batch (all-gathered embeddings), so N
devices train exactly as one. The family does not generate: `--mode eval` reports its own quality (zero-shot
classification with the class prompts, retrieval recall@1) and other families use a trained CLIP through
gen_jax/evaluation/clip_score.py (CLIP score) and gen_jax/families/unclip.py (the unCLIP decoder and prior).

Config: model.{embed_dim, image_width, blocks_per_stage, text_hidden}, text.* (encoder, ...), optim.*.
Shapes: b batch, d embed_dim, k classes, m captions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen_jax import compiler, parallel
from gen_jax.contrastive import INIT_LOG_SCALE, global_infonce, logit_scale, normalise
from gen_jax.errors import UserError
from gen_jax.families import register
from gen_jax.families.base import Family, TrainState
from gen_jax.families.captioned import Captioned
from gen_jax.models.clip import ImageEncoder, ProjectionHead
from gen_jax.optim import make_optimizer


def to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 (or float 0..255) images -> float32 in [-1, 1], as the training pipeline feeds them."""
  return images.astype(jnp.float32) / 127.5 - 1.0


@register('clip')
class CLIPFamily(Captioned, Family):
  generative = False

  def __init__(self, config):
    super().__init__(config)
    self.check_text_config()
    m = config.model
    self.image_encoder = ImageEncoder(m.embed_dim, m.image_width, m.blocks_per_stage)
    self.text_head = ProjectionHead(m.embed_dim, m.text_hidden)
    self.optimizer = make_optimizer(config.optim, config.total_steps)

  def bind_data(self, source):
    return self.bind_captions(source)

  def frozen(self):
    """Caption table + the class prompts' encoder inputs (zero-shot accuracy in eval_step)."""
    return {**self.caption_frozen(), 'prompts': self.encoded(self.fixed_prompts())}

  def checkpoint_metadata(self):
    return {**super().checkpoint_metadata(), 'text_encoder': self.config.text.encoder}

  def init(self, rng, image_shape):
    self.image_shape = tuple(image_shape)
    image_key, head_key, encoder_key, run_key = jax.random.split(rng, 4)
    params = {'image': self.image_encoder.init(image_key, jnp.zeros((1, *image_shape)))['params'],
              'text_head': self.text_head.init(head_key, jnp.zeros((1, self.encoder.width)))['params'],
              'log_scale': jnp.asarray(INIT_LOG_SCALE, jnp.float32)}
    if self.encoder.trainable:
      params['text_encoder'] = self.encoder.init(encoder_key)
    return TrainState(step=jnp.zeros((), jnp.int32), rng=run_key, params=params,
                      opt_state=self.optimizer.init(params))

  # --- the two towers: unit vectors [b d] ------------------------------------------------------------------------
  def image_embedding(self, params, images: jax.Array) -> jax.Array:
    """images [b h w c] in [-1, 1] -> [b d] on the unit sphere."""
    return normalise(self.image_encoder.apply({'params': params['image']}, images))

  def text_embedding(self, params, frozen, inputs) -> jax.Array:
    """Encoder inputs (from `encoded`) or a frozen encoder's TextEmbedding -> [b d] on the unit sphere."""
    pooled = self.embed_text(params, frozen, inputs).pooled
    return normalise(self.text_head.apply({'params': params['text_head']}, pooled))

  def _batch_text(self, params, frozen, batch) -> jax.Array:
    return self.text_embedding(params, frozen, self.batch_text_embedding(params, frozen, batch))

  # --- training --------------------------------------------------------------------------------------------------
  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      image = self.image_embedding(params, batch['image'])
      text = self._batch_text(params, state.frozen, batch)
      return global_infonce(image, text, params['log_scale'])

    loss, grads = parallel.value_and_global_mean_grad(loss_fn)(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'logit_scale': logit_scale(params['log_scale']), 'grad_norm': optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def eval_step(self, state: TrainState, batch):
    """Held-out InfoNCE (global batch) and zero-shot accuracy with the class prompts."""
    params = state.params
    image = self.image_embedding(params, batch['image'])
    loss = global_infonce(image, self._batch_text(params, state.frozen, batch), params['log_scale'])
    classes = self.text_embedding(params, state.frozen, state.frozen['prompts'])  # [k d]
    accuracy = jnp.mean(jnp.argmax(image @ classes.T, axis=-1) == batch['label'])
    return parallel.mean_over_devices({'loss': loss, 'zero_shot_accuracy': accuracy})

  def sample(self, state, rng, num_samples, cond=None):
    raise UserError('model.family=clip embeds images and text; it does not generate images. Use --mode eval '
                    '(zero-shot accuracy and retrieval), or train configs/unclip_digits.py, which generates from '
                    "this CLIP's embedding space.")

  # --- --mode eval -----------------------------------------------------------------------------------------------
  def representation_metrics(self, state: TrainState, images: np.ndarray, labels: np.ndarray, mesh) -> dict:
    """Zero-shot classification and retrieval on a labelled split (uint8 images [n h w c], labels [n]).

    zero_shot_accuracy: the nearest class prompt ("a handwritten digit seven") is the image's class;
    ..._ensemble: against each class's mean caption embedding over every template (CLIP's prompt ensembling).
    Retrieval recall@1 over the caption table (m = classes x templates captions): image -> text, the nearest
    caption names the image's class; text -> image, each caption's nearest image has its class (templated
    captions repeat, so a pair matches by class). clip_score_real: 100 x cosine of each image and its class
    prompt, the reference for generated images' CLIP score.
    """
    image = embed_images(self, state, images, mesh)  # [n d]
    embed = self.__dict__.setdefault('_embed_text', compiler.jit(self.text_embedding))  # once per family
    prompts = np.asarray(embed(state.params, state.frozen, state.frozen['prompts']))  # [k d]
    captions = np.asarray(embed(state.params, state.frozen, state.frozen['captions']))  # [m d]
    k, templates = len(prompts), self.captions.num_templates
    caption_labels = np.repeat(np.arange(k), templates)
    ensemble = captions.reshape(k, templates, -1).mean(1)
    ensemble /= np.linalg.norm(ensemble, axis=-1, keepdims=True)
    predicted = np.argmax(image @ prompts.T, axis=-1)
    per_class = {p: float(np.mean(predicted[labels == c] == c)) for c, p in enumerate(self.fixed_prompts())
                 if np.any(labels == c)}
    sims = image @ captions.T  # [n m]
    return {
        'zero_shot_accuracy': float(np.mean(predicted == labels)),
        'zero_shot_accuracy_ensemble': float(np.mean(np.argmax(image @ ensemble.T, -1) == labels)),
        'zero_shot_per_prompt': per_class,
        'recall_at_1_image_to_text': float(np.mean(caption_labels[np.argmax(sims, axis=1)] == labels)),
        'recall_at_1_text_to_image': float(np.mean(labels[np.argmax(sims, axis=0)] == caption_labels)),
        'clip_score_real': float(100 * np.mean(np.sum(image * prompts[labels], -1))),
        'logit_scale': float(logit_scale(state.params['log_scale'])),
        'n': int(len(labels)),
    }


def embed_images(family: CLIPFamily, state: TrainState, images: np.ndarray, mesh, batch_size: int = 512,
                 progress=None) -> np.ndarray:
  """uint8 images [n h w c] -> float32 unit vectors [n d], sharded over every device (one image at a time
  semantics: the same on any device count)."""
  devices = mesh.devices.size
  batch_size = max(devices, batch_size // devices * devices)  # map_rows splits each batch over every device
  compiled = family.__dict__.setdefault('_image_rows', {})
  if mesh not in compiled:
    compiled[mesh] = parallel.make_row_fn(
        lambda state, rows: family.image_embedding(state.params, to_unit_range(rows['image'])), mesh)
  return parallel.map_rows(compiled[mesh], mesh, {'image': np.asarray(images)}, batch_size, state,
                           progress=progress)

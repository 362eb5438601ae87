"""CLIP score: 100 x cosine of a generated image's and its prompt's embeddings under a trained CLIP
(gen_jax/families/clip.py), read from that run's workdir (`eval.clip_workdir`).

It judges any prompt, also free text no classifier can (alignment needs a prompt that names a class); its scale
is the CLIP's own, so compare it with the same CLIP's score of real held-out images with their class prompts
(the floor `--mode eval` reports beside it), never across CLIP checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import ml_collections
import numpy as np

from gen_jax import compiler
from gen_jax import workdir as workdir_lib
from gen_jax.data import make_source
from gen_jax.errors import UserError


@dataclasses.dataclass
class TrainedCLIP:
  """A restored CLIP: unit-vector embeddings of uint8 images and of prompts."""
  family: Any  # CLIPFamily
  state: Any
  mesh: Any
  workdir: str
  step: int

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.family.image_shape

  def image_embeddings(self, images: np.ndarray) -> np.ndarray:
    from gen_jax.families.clip import embed_images
    images = np.asarray(images)
    if images.shape[1:] != self.image_shape:
      raise UserError(f'The CLIP in {self.workdir} embeds {self.image_shape} images, not {images.shape[1:]}: '
                      f'give eval.clip_workdir a CLIP trained on the same dataset and image size.')
    return embed_images(self.family, self.state, images, self.mesh)

  def text_embeddings(self, prompts) -> np.ndarray:
    if not hasattr(self, '_embed_text'):
      self._embed_text = compiler.jit(self.family.text_embedding)
    unique = list(dict.fromkeys(prompts))
    emb = np.asarray(self._embed_text(self.state.params, self.state.frozen, self.family.encoded(unique)))
    return emb[[unique.index(p) for p in prompts]]

  def scores(self, images: np.ndarray, prompts) -> np.ndarray:
    """[n] 100 x cosine of image i and prompt i."""
    return 100.0 * np.sum(self.image_embeddings(images) * self.text_embeddings(prompts), axis=-1)


def per_prompt_scores(clip: TrainedCLIP, images: np.ndarray, prompts) -> tuple[float, dict[str, float]]:
  """(mean CLIP score, {prompt: mean score of its images}) of images [n ...] with their prompts [n]."""
  scores = clip.scores(images, prompts)
  prompts = np.asarray(prompts)
  return float(np.mean(scores)), {p: float(np.mean(scores[prompts == p])) for p in dict.fromkeys(prompts.tolist())}


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
  path = workdir_lib.path(workdir, 'config.json')
  if not path.exists():
    raise UserError(f'{path} does not exist: eval.clip_workdir must be the --workdir of a CLIP training run '
                    f'(e.g. python main.py --config configs/clip_digits.py --workdir {workdir}).')
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_clip(workdir: str, mesh, step: int | None = None) -> TrainedCLIP:
  """Checkpoint `step` (default: the latest) of the CLIP run in `workdir`, rebuilt from the config.json it wrote.
  Every process must call it (an Orbax restore onto the global mesh)."""
  from gen_jax.families import get_family
  from gen_jax.sample import restore_latest
  config = read_run_config(workdir)
  if config.model.family != 'clip':
    raise UserError(f'{workdir} holds a model.family={config.model.family!r} run; eval.clip_workdir needs a CLIP '
                    f'run (configs/clip_digits.py).')
  family = get_family(config)
  source = make_source(config.data)
  family.bind_data(source)
  state, step = restore_latest(config, workdir, family, tuple(source.image_shape), mesh, step)
  if jax.process_index() == 0:
    print(f'CLIP: {workdir_lib.path(workdir)} step {step}', flush=True)
  return TrainedCLIP(family, state, mesh, workdir, step)

"""A small CNN classifier per labelled dataset, trained once on its train split and cached: the judge of
text-to-image alignment (does a sample for "a handwritten digit seven" look like a seven?).

Trained on the exact uint8 -> [-1, 1] images the generators see, with 1-pixel random shifts; its test-split
accuracy is stored beside the weights and reported with every alignment figure (it bounds what alignment can
mean). Shapes: n images, h w c, k classes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import filelock
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen_jax import compiler
from gen_jax import workdir as workdir_lib
from gen_jax.data import dataset_id, dataset_name, load_split, make_source


class CNN(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, with_features: bool = False):
    """[n h w c] in [-1, 1] -> logits [n k]; with_features: (penultimate features [n 128], logits)."""
    for features in (32, 64):
      x = nn.relu(nn.Conv(features, (3, 3))(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.Dropout(0.3, deterministic=not train)(x.reshape(x.shape[0], -1))
    head = nn.Dense(self.num_classes)  # built first: it is 'Dense_0' in every cached classifier
    hidden = nn.relu(nn.Dense(128)(x))
    logits = head(hidden)
    return (hidden, logits) if with_features else logits


@dataclasses.dataclass
class Classifier:
  model: CNN
  params: dict
  test_accuracy: float

  def __post_init__(self):
    self._logits = compiler.jit(lambda p, x: self.model.apply({'params': p}, x))

  def logits(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Images [n h w c]: uint8, or floats in [-1, 1] -> logits [n k]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
      images = images.astype(np.float32) / 127.5 - 1.0
    return np.concatenate([np.asarray(self._logits(self.params, images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])

  def predict(self, images: np.ndarray) -> np.ndarray:
    return self.logits(images).argmax(-1)


def alignment(classifier: Classifier, images: np.ndarray, labels: np.ndarray) -> dict[int, float]:
  """Per prompted class: the fraction of its images that the classifier assigns to it."""
  predicted, labels = classifier.predict(images), np.asarray(labels)
  return {int(k): float(np.mean(predicted[labels == k] == k)) for k in np.unique(labels)}


def _arrays(data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
  images, labels = load_split(data_config, split)
  return images.astype(np.float32) / 127.5 - 1.0, labels


def _cache_name(data_config, image_shape, steps: int, seed: int) -> str:
  what = json.dumps([dataset_id(data_config), list(image_shape), steps, seed])
  return f'classifier_{dataset_name(data_config)}_{hashlib.sha1(what.encode()).hexdigest()[:10]}'


def train_classifier(data_config, steps: int = 1000, batch_size: int = 128, seed: int = 0) -> Classifier:
  train_x, train_y = _arrays(data_config, 'train')
  test_x, test_y = _arrays(data_config, data_config.eval_split)
  model = CNN(int(max(train_y.max(), test_y.max())) + 1)
  params = model.init(jax.random.PRNGKey(seed), train_x[:1])['params']
  tx = optax.adam(optax.cosine_decay_schedule(2e-3, steps))
  opt_state = tx.init(params)

  @compiler.jit
  def step(params, opt_state, x, y, shift, key):
    x = jnp.roll(x, shift, axis=(1, 2))  # 1-pixel random shifts: a little robustness for judging samples

    def loss_fn(p):
      logits = model.apply({'params': p}, x, train=True, rngs={'dropout': key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  for i in range(steps):
    idx = rng.integers(0, len(train_x), batch_size)
    shift = jnp.asarray(rng.integers(-1, 2, 2))
    params, opt_state = step(params, opt_state, train_x[idx], train_y[idx], shift, jax.random.PRNGKey(i))
  classifier = Classifier(model, params, 0.0)
  classifier.test_accuracy = float(np.mean(classifier.predict(test_x) == test_y))
  return classifier


def get_classifier(data_config, cache_dir: str, steps: int = 1000, seed: int = 0) -> Classifier:
  """The cached classifier for this dataset (trained and saved under `cache_dir` on first use). Evaluators started
  together (a sweep's members, test workers) share the cache: a file lock lets one train it while the others wait
  and load it, and both files are replaced atomically (the JSON last, so its presence means a whole entry)."""
  image_shape = make_source(data_config).image_shape
  stem = os.path.join(cache_dir, _cache_name(data_config, image_shape, steps, seed))
  cached = _load(stem, image_shape)
  if cached is not None:
    return cached
  os.makedirs(cache_dir, exist_ok=True)
  with filelock.FileLock(stem + '.lock'):
    cached = _load(stem, image_shape)  # trained by another process while this one waited
    if cached is not None:
      return cached
    classifier = train_classifier(data_config, steps=steps, seed=seed)
    info = {'num_classes': classifier.model.num_classes, 'test_accuracy': classifier.test_accuracy,
            'dataset': data_config.name, 'steps': steps, 'seed': seed}
    workdir_lib.write_bytes(stem + '.msgpack', flax.serialization.to_bytes(classifier.params))
    workdir_lib.write_json(stem + '.json', info)
  return classifier


def _load(stem: str, image_shape) -> Classifier | None:
  if not (os.path.exists(stem + '.json') and os.path.exists(stem + '.msgpack')):
    return None
  with open(stem + '.json') as f:
    info = json.load(f)
  model = CNN(info['num_classes'])
  template = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)))['params']
  with open(stem + '.msgpack', 'rb') as f:
    params = flax.serialization.from_bytes(template, f.read())
  return Classifier(model, params, info['test_accuracy'])


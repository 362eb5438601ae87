"""Feature extractors for sample-quality metrics: uint8 images -> features (FD, KID, precision/recall) and
logits (IS), computed sharded over every device.

Two extractors: the FID Inception network (the numbers papers report; needs pytorch-fid's weights) and the
dataset classifier of gen_jax/evaluation/classifier.py (works offline on every dataset here; its features are
the 128-d penultimate layer, its logits the k classes). Both see exactly the uint8 images a PNG would hold.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import parallel
from gen_jax.evaluation import inception
from gen_jax.evaluation.classifier import Classifier


@dataclasses.dataclass
class FeatureExtractor:
  """`apply(variables, uint8 [b h w c])` -> {'features': [b d], 'logits': [b k]}, one image at a time semantics
  (no batch statistics), so any device count gives the same numbers."""
  name: str  # 'inception' | 'classifier': metric-name prefix
  fingerprint: str  # hash of the weights: part of reference-statistics cache keys
  apply: Callable[[Any, jax.Array], dict[str, jax.Array]]
  variables: Any
  batch_size: int = 200
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

  def __call__(self, images: np.ndarray, mesh, progress: Callable | None = None) -> dict[str, np.ndarray]:
    """uint8 images [n h w c] -> float32 numpy {'features': [n d], 'logits': [n k]} on every process."""
    if np.asarray(images).dtype != np.uint8:
      raise TypeError(f'Feature extractors take the uint8 images a PNG holds, got {np.asarray(images).dtype}.')
    batch = -(-self.batch_size // mesh.devices.size) * mesh.devices.size
    if mesh not in self._compiled:
      def per_device(variables, x):
        with jax.default_matmul_precision('highest'):  # TF32/bf16 passes would move FID (GPU/TPU)
          return jax.tree.map(lambda a: a.astype(jnp.float32), self.apply(variables, x))
      self._compiled[mesh] = parallel.make_row_fn(per_device, mesh)
    variables = jax.device_put(self.variables, parallel.replicated(mesh))
    return parallel.map_rows(self._compiled[mesh], mesh, np.asarray(images), batch, variables, progress=progress)


def inception_extractor(weights: str, cache_dir: str, batch_size: int = 200) -> FeatureExtractor:
  """pool3 features and the head's logits without its bias (IS over all 1008 outputs, as improved-gan)."""
  npz = inception.resolve_weights(weights, cache_dir)
  model = inception.FIDInceptionV3()

  def apply(variables, x):
    out = model.apply(variables, inception.preprocess(x))
    return {'features': out['pool3'], 'logits': out['pool3'] @ variables['params']['fc']['kernel']}

  return FeatureExtractor('inception', inception.weights_fingerprint(npz), apply, inception.load_variables(npz),
                          batch_size)


def classifier_extractor(classifier: Classifier, batch_size: int = 500) -> FeatureExtractor:
  model = classifier.model

  def apply(params, x):
    hidden, logits = model.apply({'params': params}, x.astype(jnp.float32) / 127.5 - 1.0, with_features=True)
    return {'features': hidden, 'logits': logits}

  digest = hashlib.sha1()
  for leaf in jax.tree.leaves(classifier.params):  # the values, whatever array type holds them
    digest.update(np.asarray(leaf, np.float32).tobytes())
  fingerprint = digest.hexdigest()[:10]
  return FeatureExtractor('classifier', fingerprint, apply, classifier.params, batch_size)

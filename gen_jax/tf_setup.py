"""TensorFlow is never imported by gen_jax itself (TensorBoard events are written without it), but TFDS imports it
to prepare a dataset; keep it off the accelerators JAX owns then."""

import importlib
import sys


def hide_gpus_from_tensorflow(import_it: bool = False) -> None:
  """Stops TensorFlow from reserving GPU memory that JAX needs (TF grabs it all on first use). Acts on an already
  imported TensorFlow, or imports it (~3.4 s) when `import_it` and it is installed."""
  tf = sys.modules.get('tensorflow')
  if tf is None and import_it:
    try:
      tf = importlib.import_module('tensorflow')
    except ImportError:
      return
  if tf is not None and hasattr(tf, 'config'):
    tf.config.set_visible_devices([], 'GPU')

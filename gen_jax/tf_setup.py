"""TensorFlow is imported (by clu's writers and TFDS) only for I/O; keep it off accelerators JAX owns."""


def hide_gpus_from_tensorflow() -> None:
  """Stops TensorFlow from reserving GPU memory that JAX needs (TF grabs it all on first use)."""
  try:
    import tensorflow as tf
  except ImportError:
    return
  tf.config.set_visible_devices([], 'GPU')

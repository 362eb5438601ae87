"""Input pipelines: image sources behind one interface, batched and sharded by grain."""

from gen_jax.data.pipeline import make_train_iterator
from gen_jax.data.sources import ImageSource, dataset_id, dataset_name, load_split, make_source

__all__ = ['ImageSource', 'dataset_id', 'dataset_name', 'load_split', 'make_source', 'make_train_iterator']

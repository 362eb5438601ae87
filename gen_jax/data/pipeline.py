"""The training input pipeline: shuffle, repeat, per-process shard, normalise, batch (grain MapDataset).

Why this shape:
* Deterministic: order and random flips are functions of (seed, record position) only, so a run restarted
  from its checkpointed iterator state sees exactly the batches an uninterrupted run would.
* Device-count invariant: global batch `s` is records [s*B, (s+1)*B) of the shuffled stream whatever the
  number of processes; process `p` reads only its contiguous block [s*B + p*b, s*B + (p+1)*b) of it (b = B/P).
  Together with per-example PRNG keys this makes an N-process run compute what a 1-process run computes.
"""

from __future__ import annotations

from typing import Any, Callable

import grain
import numpy as np

from gen_jax.data.sources import ImageSource
from gen_jax.errors import UserError


class _ProcessBlock:
  """Local record i of process p is global record (i // b) * B + p * b + i % b (b = per-process batch)."""

  def __init__(self, stream: grain.MapDataset, local_batch: int, process_index: int, process_count: int):
    self._stream, self._b, self._p, self._n = stream, local_batch, process_index, process_count

  def __len__(self) -> int:
    return len(self._stream) // self._n

  def __getitem__(self, index: int):
    step, offset = divmod(index, self._b)
    return self._stream[step * self._b * self._n + self._p * self._b + offset]


Tokenize = Callable[[str], dict[str, np.ndarray]]  # free text -> {'tokens' [L], 'token_mask' [L]}


def _record_fields(random_flip: bool, class_names, caption_templates: int = 0, tokenize: Tokenize | None = None):
  """The per-record part: label, class name, this record's flip draw and caption. The image stays as read (uint8):
  numpy work per record under grain's read threads was GIL-bound (`_normalise_batch` does it per batch)."""
  def transform(record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    label = int(record['label'])
    out = {'image': record['image'], 'label': np.int32(label),
           'class_name': class_names[label] if label < len(class_names) else ''}
    if random_flip:  # drawn first, so a record's flip is the same with or without captions
      out['flip'] = np.bool_(rng.random() < 0.5)
    if tokenize is not None:  # free-text captions travel as tokens
      out.update(tokenize(record['text']))
    elif caption_templates:  # templated: an id into captions.CaptionTable, drawn per example and epoch
      out['caption'] = np.int32(label * caption_templates + rng.integers(caption_templates))
    return out
  return transform


def _normalise_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """[K b h w c] images -> float32 in [-1, 1], mirrored where the record drew a flip: one vectorised pass per
  batch (2-core Sapphire Rapids, batch 128 of 32x32x3, 4 read threads: 6.7k img/s when each record was converted on
  its own, see benchmarks/input_throughput.py)."""
  image = batch['image'].astype(np.float32)  # a copy: grain batches one record as a view of the source's image
  flip = batch.pop('flip', None)
  if flip is not None and flip.any():
    image[flip] = image[flip][..., ::-1, :]
  image /= 127.5
  image -= 1.0
  return {**batch, 'image': image}


def make_train_dataset(source: ImageSource, *, seed: int, global_batch_size: int, steps_per_call: int = 1,
                       random_flip: bool = False, process_index: int = 0, process_count: int = 1,
                       caption_templates: int = 0, tokenize: Tokenize | None = None) -> grain.MapDataset:
  """Infinite dataset whose element k is this process's share of calls k: arrays [K b ...] (K = steps_per_call).

  `caption_templates` > 0 adds `caption` (int32 id into the dataset's caption table); `tokenize` instead turns the
  source's free-text `text` into `tokens` / `token_mask`. Both are drawn after the flip, so image streams are the
  same with or without captions.
  """
  if global_batch_size % process_count:
    raise UserError(f'global_batch_size={global_batch_size} does not divide by the {process_count} processes; '
                    f'choose a multiple of {process_count}.')
  if len(source) < global_batch_size:
    raise UserError(f'The dataset has {len(source)} examples, fewer than one global batch of '
                    f'{global_batch_size}; lower --config.global_batch_size.')
  local_batch = global_batch_size // process_count
  stream = (grain.MapDataset.source(source)
            .shuffle(seed=seed)
            .repeat(None)  # reshuffled every epoch
            .random_map(_record_fields(random_flip, tuple(source.class_names), caption_templates, tokenize),
                        seed=seed + 1))
  local = grain.MapDataset.source(_ProcessBlock(stream, local_batch, process_index, process_count))
  return (local.batch(local_batch, drop_remainder=True).batch(steps_per_call, drop_remainder=True)
          .map(_normalise_batch))


class TrainIterator:
  """Iterator over [K b ...] batches whose position (`get_state`/`set_state`) is saved in checkpoints."""

  def __init__(self, dataset: grain.MapDataset, num_threads: int = 4):
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, num_threads))
    self._iterator = iter(dataset.to_iter_dataset(read))

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def get_state(self) -> dict[str, Any]:
    return self._iterator.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._iterator.set_state(state)


def make_train_iterator(source: ImageSource, config, process_index: int, process_count: int,
                        batches_per_step: int = 1, caption_templates: int = 0,
                        tokenize: Tokenize | None = None) -> TrainIterator:
  dataset = make_train_dataset(source, seed=config.seed, global_batch_size=config.global_batch_size,
                               steps_per_call=config.steps_per_call * batches_per_step,
                               random_flip=config.data.random_flip,
                               process_index=process_index, process_count=process_count,
                               caption_templates=caption_templates, tokenize=tokenize)
  return TrainIterator(dataset, num_threads=config.data.num_threads)

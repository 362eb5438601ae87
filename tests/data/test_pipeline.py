"""The grain training pipeline: batch layout, determinism, epochs, per-process sharding, flips, resumable state."""

import json

import numpy as np
import pytest

from configs import default
from gen_jax.data import make_source
from gen_jax.data.captions import DIGIT_NAMES
from gen_jax.data.pipeline import TrainIterator, make_train_dataset, make_train_iterator
from gen_jax.data.sources import ImageSource
from gen_jax.errors import UserError
from tests.helpers import apply_overrides


def tiny_source(n: int = 10, h: int = 3, w: int = 4, seed: int = 0) -> ImageSource:
  """n examples, example i has label i and its own random (horizontally asymmetric) image."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, h, w, 1), dtype=np.uint8)
  images[:, 0, 0, 0] = np.arange(n) % 250  # unique ...
  images[:, 0, -1, 0] = 255  # ... and changed by a horizontal flip
  return ImageSource(images, np.arange(n, dtype=np.int32), tuple(f'class{i}' for i in range(n)), (h, w, 1))


def normalised(images: np.ndarray) -> np.ndarray:
  return images.astype(np.float32) / 127.5 - 1.0


def take(dataset, count: int):
  return [dataset[k] for k in range(count)]


def pipeline_config(**overrides):
  config = default.get_config()
  config.global_batch_size = 4
  config.steps_per_call = 2
  config.data.num_threads = 1
  return apply_overrides(config, overrides)


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- layout ----------------------------------------------------------------------------------------------------
def test_element_layout_on_digits():
  source = make_source(default.get_config().data)  # digits, 16x16
  dataset = make_train_dataset(source, seed=0, global_batch_size=8, steps_per_call=3)
  for element in take(dataset, 3):
    image, label, class_name = element['image'], element['label'], element['class_name']
    assert image.shape == (3, 8, 16, 16, 1) and image.dtype == np.float32
    assert label.shape == (3, 8) and label.dtype == np.int32
    assert class_name.shape == (3, 8)
    assert image.min() >= -1.0 and image.max() <= 1.0
    assert image.min() == -1.0 and image.max() > 0.9  # the whole range is used, not e.g. [0, 1/127.5]
    assert set(label.ravel()) <= set(range(10))
    assert [str(c) for c in class_name.ravel()] == [DIGIT_NAMES[int(i)] for i in label.ravel()]


def test_images_and_class_names_belong_to_their_labels():
  source = tiny_source(10)
  dataset = make_train_dataset(source, seed=3, global_batch_size=4, steps_per_call=2)
  for element in take(dataset, 4):
    labels = element['label']
    np.testing.assert_array_equal(element['image'], normalised(source.images[labels]))
    assert element['class_name'].tolist() == [[f'class{i}' for i in row] for row in labels]


def test_labels_beyond_class_names_get_empty_class_name():
  source = tiny_source(6)
  source = ImageSource(source.images, source.labels, ('a', 'b', 'c'), source.image_shape)
  element = make_train_dataset(source, seed=0, global_batch_size=6)[0]
  names = dict(zip(element['label'].ravel().tolist(), element['class_name'].ravel().tolist()))
  assert names == {0: 'a', 1: 'b', 2: 'c', 3: '', 4: '', 5: ''}


# --- determinism and epochs ------------------------------------------------------------------------------------
def test_same_seed_same_batches_different_seed_different():
  source = tiny_source(20)
  first = take(make_train_dataset(source, seed=7, global_batch_size=4, steps_per_call=2), 6)
  again = take(make_train_dataset(source, seed=7, global_batch_size=4, steps_per_call=2), 6)
  other = take(make_train_dataset(source, seed=8, global_batch_size=4, steps_per_call=2), 6)
  for a, b in zip(first, again):
    assert_batches_equal(a, b)
  labels = np.stack([e['label'] for e in first])
  assert not np.array_equal(labels, np.stack([e['label'] for e in other]))
  assert not np.array_equal(labels.ravel()[:20], np.arange(20))  # shuffled at all


@pytest.mark.parametrize('n, batch, steps', [(12, 4, 1), (10, 4, 2), (7, 3, 3)])
def test_every_example_once_per_epoch(n, batch, steps):
  """Read as one stream, every n consecutive records are a permutation, also across batch boundaries."""
  source = tiny_source(n)
  dataset = make_train_dataset(source, seed=1, global_batch_size=batch, steps_per_call=steps)
  epochs = 4
  count = -(-epochs * n // (batch * steps))
  stream = np.concatenate([e['label'].ravel() for e in take(dataset, count)])[:epochs * n]
  orders = stream.reshape(epochs, n)
  for order in orders:
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
  assert len({tuple(order) for order in orders}) > 1  # reshuffled between epochs


def test_iterator_yields_dataset_elements_in_order():
  source = tiny_source(10)
  dataset = make_train_dataset(source, seed=2, global_batch_size=4, steps_per_call=2, random_flip=True)
  iterator = TrainIterator(dataset, num_threads=2)
  for k in range(6):
    assert_batches_equal(next(iterator), dataset[k])


# --- per-process sharding --------------------------------------------------------------------------------------
@pytest.mark.parametrize('process_count', [2, 4])
def test_process_shards_concatenate_to_the_global_batch(process_count):
  source = tiny_source(22)
  kwargs = dict(seed=5, global_batch_size=8, steps_per_call=2, random_flip=True)
  single = make_train_dataset(source, **kwargs)
  shards = [make_train_dataset(source, process_index=p, process_count=process_count, **kwargs)
            for p in range(process_count)]
  for k in range(7):  # 7 * 16 records > 5 epochs of 22
    local = [shard[k] for shard in shards]
    for element in local:
      assert element['image'].shape == (2, 8 // process_count, 3, 4, 1)
    for key in ('image', 'label', 'class_name'):
      np.testing.assert_array_equal(np.concatenate([e[key] for e in local], axis=1), single[k][key], err_msg=key)
  # The processes read different examples: within one step they never share a label (22 > 8 unique labels).
  for step in range(2):
    labels = [set(shard[0]['label'][step].tolist()) for shard in shards]
    assert sum(len(s) for s in labels) == len(set().union(*labels)) == 8


def test_process_iterators_concatenate_to_the_global_iterator():
  source = tiny_source(13)
  config = pipeline_config(global_batch_size=6, steps_per_call=1)
  single = make_train_iterator(source, config, 0, 1)
  shards = [make_train_iterator(source, config, p, 2) for p in range(2)]
  for _ in range(5):
    expected, local = next(single), [next(shard) for shard in shards]
    np.testing.assert_array_equal(np.concatenate([e['label'] for e in local], axis=1), expected['label'])
    np.testing.assert_array_equal(np.concatenate([e['image'] for e in local], axis=1), expected['image'])


# --- random flips ----------------------------------------------------------------------------------------------
def flipped_mask(source: ImageSource, element) -> np.ndarray:
  """True where the image is the mirrored original; asserts each image is the original or its mirror."""
  originals = normalised(source.images[element['label']])
  same = np.all(element['image'] == originals, axis=(-3, -2, -1))
  mirrored = np.all(element['image'] == originals[..., ::-1, :], axis=(-3, -2, -1))
  assert np.all(same ^ mirrored)
  return mirrored


def test_random_flip_flips_some_images_deterministically():
  source = tiny_source(16)
  flips = make_train_dataset(source, seed=4, global_batch_size=8, steps_per_call=2, random_flip=True)
  masks = np.stack([flipped_mask(source, e) for e in take(flips, 4)])  # 64 images
  assert 0 < masks.sum() < masks.size
  again = make_train_dataset(source, seed=4, global_batch_size=8, steps_per_call=2, random_flip=True)
  for k in range(4):
    assert_batches_equal(flips[k], again[k])
  other = make_train_dataset(source, seed=9, global_batch_size=8, steps_per_call=2, random_flip=True)
  assert not np.array_equal(masks, np.stack([flipped_mask(source, e) for e in take(other, 4)]))


def test_flips_leave_the_source_unchanged_and_do_not_depend_on_captions():
  """Flips are applied in place to each batch grain stacked: the source's images must stay as they were."""
  source = tiny_source(16)
  before = source.images.copy()
  kwargs = dict(seed=4, global_batch_size=1, steps_per_call=1, random_flip=True)  # batches of one record
  flips = make_train_dataset(source, **kwargs)
  captioned = make_train_dataset(source, caption_templates=3, **kwargs)
  masks = [flipped_mask(source, flips[k]) for k in range(32)]
  assert any(mask.any() for mask in masks)
  np.testing.assert_array_equal(source.images, before)
  for k in range(32):
    np.testing.assert_array_equal(captioned[k]['image'], flips[k]['image'])


def test_no_flips_without_random_flip():
  source = tiny_source(16)
  dataset = make_train_dataset(source, seed=4, global_batch_size=8, steps_per_call=2, random_flip=False)
  assert not any(flipped_mask(source, e).any() for e in take(dataset, 4))


def test_random_flip_from_config_reaches_the_iterator():
  source = tiny_source(16)
  iterator = make_train_iterator(source, pipeline_config(**{'data.random_flip': True, 'global_batch_size': 8}),
                                 0, 1)
  masks = np.stack([flipped_mask(source, next(iterator)) for _ in range(4)])
  assert 0 < masks.sum() < masks.size


# --- resumable iterator state ----------------------------------------------------------------------------------
@pytest.mark.parametrize('consumed', [0, 1, 4, 11])
def test_iterator_state_resumes_exactly(consumed):
  source = tiny_source(10)
  config = pipeline_config(**{'data.random_flip': True, 'data.num_threads': 2})
  original = make_train_iterator(source, config, 0, 1)
  for _ in range(consumed):
    next(original)
  state = json.loads(json.dumps(original.get_state()))  # checkpoints store it as JSON
  expected = [next(original) for _ in range(4)]
  resumed = make_train_iterator(source, config, 0, 1)
  resumed.set_state(state)
  for a, b in zip(expected, (next(resumed) for _ in range(4))):
    assert_batches_equal(a, b)
  if consumed:  # a fresh iterator starts elsewhere, so the state really moved it
    assert not np.array_equal(next(make_train_iterator(source, config, 0, 1))['label'], expected[0]['label'])


def test_iterator_state_resumes_per_process():
  source = tiny_source(10)
  config = pipeline_config()
  original = make_train_iterator(source, config, 1, 2)
  for _ in range(3):
    next(original)
  state = original.get_state()
  expected = next(original)
  resumed = make_train_iterator(source, config, 1, 2)
  resumed.set_state(state)
  assert_batches_equal(next(resumed), expected)


# --- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('batch, processes', [(6, 4), (5, 2), (7, 3)])
def test_batch_not_divisible_by_process_count_raises_user_error(batch, processes):
  with pytest.raises(UserError, match=f'global_batch_size={batch}'):
    make_train_dataset(tiny_source(20), seed=0, global_batch_size=batch, process_count=processes)


def test_dataset_smaller_than_a_batch_raises_user_error():
  with pytest.raises(UserError, match='5 examples'):
    make_train_dataset(tiny_source(5), seed=0, global_batch_size=8)
  with pytest.raises(UserError, match='global_batch_size'):
    make_train_iterator(tiny_source(5), pipeline_config(global_batch_size=6), 0, 2)
  assert make_train_dataset(tiny_source(8), seed=0, global_batch_size=8)[0]['label'].shape == (1, 8)

"""Image sources: embedded digits, MNIST-format IDX files (hand-written here and the Debian package), TFDS."""

import gzip
import os
import struct

import numpy as np
import pytest

from configs import default
from gen_jax.data import sources
from gen_jax.data.sources import FASHION_MNIST_CLASSES, MNIST_CLASSES, ImageSource, make_source, read_idx
from gen_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


def data_config(**overrides):
  config = default.get_config().data
  for key, value in overrides.items():
    config[key] = value
  return config


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
  """MNIST IDX: two zero bytes, element-type byte, ndim byte, big-endian uint32 dims, big-endian data."""
  dtypes = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}
  header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f'>{array.ndim}I', *array.shape)
  return header + np.ascontiguousarray(array, dtype=dtypes[type_code]).tobytes()


def write_file(path, data: bytes, compress: bool = False) -> str:
  with (gzip.open if compress else open)(str(path), 'wb') as f:
    f.write(data)
  return str(path)


def write_idx_dir(directory, n_train: int = 7, n_test: int = 3, h: int = 5, w: int = 4, compress: bool = False,
                  seed: int = 0):
  """Writes train-/t10k- image and label files; returns the arrays written, keyed by split."""
  rng = np.random.default_rng(seed)
  written = {}
  suffix = '.gz' if compress else ''
  for split, prefix, n in (('train', 'train', n_train), ('test', 't10k', n_test)):
    images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    write_file(directory / f'{prefix}-images-idx3-ubyte{suffix}', idx_bytes(images), compress)
    write_file(directory / f'{prefix}-labels-idx1-ubyte{suffix}', idx_bytes(labels), compress)
    written[split] = (images, labels)
  return written


# --- make_source -----------------------------------------------------------------------------------------------
def test_unknown_source_raises_user_error():
  with pytest.raises(UserError, match='nope'):
    make_source(data_config(source='nope'))


# --- digits ----------------------------------------------------------------------------------------------------
def test_digits_train_and_test_splits():
  from sklearn.datasets import load_digits

  target = load_digits().target
  train, test = make_source(data_config(split='train')), make_source(data_config(split='test'))
  assert (len(train), len(test)) == (1500, 297)
  for source, labels in ((train, target[:1500]), (test, target[1500:])):
    assert isinstance(source, ImageSource)
    assert source.image_shape == (16, 16, 1)
    assert source.images.shape == (len(labels), 16, 16, 1) and source.images.dtype == np.uint8
    assert tuple(source.class_names) == ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight',
                                         'nine')  # readable, for captions
    np.testing.assert_array_equal(source.labels, labels)
    assert set(np.unique(source.labels)) == set(range(10))
    record = source[5]
    assert record['image'].shape == (16, 16, 1) and record['image'].dtype == np.uint8
    assert isinstance(record['label'], np.int32) and record['label'] == labels[5]
  assert train.images.max() > 200 and train.images.min() == 0  # 0..16 intensities scaled up to 0..255
  assert not np.array_equal(train.images[:297], test.images)


def test_digits_all_split_is_train_then_test():
  train, test = make_source(data_config(split='train')), make_source(data_config(split='test'))
  everything = make_source(data_config(split='all'))
  assert len(everything) == 1797
  np.testing.assert_array_equal(everything.images, np.concatenate([train.images, test.images]))
  np.testing.assert_array_equal(everything.labels, np.concatenate([train.labels, test.labels]))


def test_embedded_digits_are_read_exactly_as_sklearn_loads_them_without_importing_it():
  import subprocess
  import sys

  from sklearn.datasets import load_digits

  from gen_jax.data.sources import load_sklearn_digits
  images, labels = load_sklearn_digits()
  digits = load_digits()
  np.testing.assert_array_equal(images, digits.images)
  np.testing.assert_array_equal(labels, digits.target)
  code = ('import sys; from gen_jax.data.sources import load_sklearn_digits; load_sklearn_digits(); '
          'assert "sklearn" not in sys.modules')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)


def test_digits_native_size_is_the_scaled_originals():
  from sklearn.datasets import load_digits

  source = make_source(data_config(image_size=8))
  assert source.image_shape == (8, 8, 1) and source.images.shape == (1500, 8, 8, 1)
  expected = np.rint(load_digits().images[:1500] * (255.0 / 16.0)).astype(np.uint8)
  np.testing.assert_array_equal(source.images[..., 0], expected)


def test_digits_other_image_size():
  source = make_source(data_config(image_size=28, split='test'))
  assert source.image_shape == (28, 28, 1)
  assert source.images.shape == (297, 28, 28, 1) and source.images.dtype == np.uint8
  assert source[0]['image'].shape == (28, 28, 1)


@pytest.mark.parametrize('split', ['validation', 'Train', ''])
def test_digits_bad_split_raises_user_error(split):
  with pytest.raises(UserError, match='Split'):
    make_source(data_config(split=split))


@pytest.mark.parametrize('size', [7, 1, 0])
def test_digits_too_small_image_size_raises_user_error(size):
  with pytest.raises(UserError, match='image_size'):
    make_source(data_config(image_size=size))


# --- read_idx --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('compress', [False, True], ids=['plain', 'gz'])
def test_read_idx_round_trip_images_and_labels(tmp_path, compress):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 6).astype(np.uint8)
  suffix = '.gz' if compress else ''
  image_path = write_file(tmp_path / f'images{suffix}', idx_bytes(images), compress)
  label_path = write_file(tmp_path / f'labels{suffix}', idx_bytes(labels), compress)
  with open(image_path, 'rb') as f:
    head = f.read(4)
  if compress:
    assert head[:2] == b'\x1f\x8b'  # really gzipped
  else:
    assert int.from_bytes(head, 'big') == 0x00000803
  read_images, read_labels = read_idx(image_path), read_idx(label_path)
  assert read_images.shape == (6, 5, 3) and read_images.dtype == np.uint8
  assert read_labels.shape == (6,) and read_labels.dtype == np.uint8
  np.testing.assert_array_equal(read_images, images)
  np.testing.assert_array_equal(read_labels, labels)


@pytest.mark.parametrize('type_code', [0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_round_trip_other_element_types(tmp_path, type_code):
  array = (np.arange(24).reshape(2, 3, 4) - 12) * 3
  path = write_file(tmp_path / 'array', idx_bytes(array, type_code))
  result = read_idx(path)
  assert result.shape == (2, 3, 4)
  np.testing.assert_array_equal(result.astype(np.float64), array.astype(np.float64))


@pytest.mark.parametrize('compress', [False, True], ids=['plain', 'gz'])
@pytest.mark.parametrize('keep', [75, 69, 16, 10, 6])  # of 76 bytes: 16-byte header [3 4 5] + 60 pixels
def test_read_idx_truncated_file_raises_user_error(tmp_path, compress, keep):
  data = idx_bytes(np.zeros((3, 4, 5), np.uint8))
  assert len(data) == 76
  with pytest.raises(UserError, match='truncated'):
    read_idx(write_file(tmp_path / ('x.gz' if compress else 'x'), data[:keep], compress))


def test_read_idx_truncated_multibyte_elements_raise_user_error(tmp_path):
  data = idx_bytes(np.arange(4), 0x0C)  # int32: the payload is no longer a whole number of elements
  with pytest.raises(UserError, match='truncated'):
    read_idx(write_file(tmp_path / 'x', data[:-1]))


def test_read_idx_trailing_bytes_raise_user_error(tmp_path):
  data = idx_bytes(np.zeros((2, 2), np.uint8)) + b'\x00'
  with pytest.raises(UserError):
    read_idx(write_file(tmp_path / 'x', data))


def test_read_idx_cut_gzip_stream_raises_user_error(tmp_path):
  compressed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(10, 20)))
  path = tmp_path / 'x.gz'
  path.write_bytes(compressed[:-12])  # an interrupted download
  with pytest.raises(UserError, match='x.gz'):
    read_idx(str(path))


def test_read_idx_plain_file_named_gz_raises_user_error(tmp_path):
  path = write_file(tmp_path / 'x.gz', idx_bytes(np.zeros((2, 2), np.uint8)))
  with pytest.raises(UserError):
    read_idx(path)


@pytest.mark.parametrize('data', [b'\x01\x00\x08\x01\x00\x00\x00\x01\x00', b'\x00\x01\x08\x01\x00\x00\x00\x01\x00',
                                  b'PK\x03\x04 not idx at all', b'\x00\x00', b''],
                         ids=['first-byte', 'second-byte', 'zip', 'too-short', 'empty'])
def test_read_idx_bad_magic_raises_user_error(tmp_path, data):
  with pytest.raises(UserError, match='magic'):
    read_idx(write_file(tmp_path / 'x', data))


def test_read_idx_unknown_element_type_raises_user_error(tmp_path):
  data = bytes([0, 0, 0x07, 1]) + struct.pack('>I', 2) + b'\x00\x00'
  with pytest.raises(UserError, match='0x07'):
    read_idx(write_file(tmp_path / 'x', data))


# --- idx source ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('compress', [False, True], ids=['plain', 'gz'])
def test_idx_source_reads_train_and_test(tmp_path, compress):
  written = write_idx_dir(tmp_path, compress=compress)
  for split in ('train', 'test'):
    source = make_source(data_config(source='idx', idx_dir=str(tmp_path), split=split, name='mnist'))
    images, labels = written[split]
    assert len(source) == len(labels)
    assert tuple(source.image_shape) == (5, 4, 1)
    assert source.images.shape == (len(labels), 5, 4, 1) and source.images.dtype == np.uint8
    np.testing.assert_array_equal(source.images[..., 0], images)
    np.testing.assert_array_equal(source.labels, labels)
    assert tuple(source.class_names) == MNIST_CLASSES
    for i in range(len(labels)):
      record = source[i]
      np.testing.assert_array_equal(record['image'][..., 0], images[i])
      assert record['label'] == labels[i] and isinstance(record['label'], np.int32)


@pytest.mark.parametrize('name', ['fashion_mnist', 'fashion-mnist', 'my_fashion'])
def test_idx_source_fashion_name_gives_fashion_class_names(tmp_path, name):
  write_idx_dir(tmp_path)
  source = make_source(data_config(source='idx', idx_dir=str(tmp_path), name=name))
  assert tuple(source.class_names) == FASHION_MNIST_CLASSES
  assert len(source.class_names) == 10 and source.class_names[0] == 't-shirt/top'
  assert source.class_names[9] == 'ankle boot'


def test_idx_source_missing_dir_raises_user_error(tmp_path):
  with pytest.raises(UserError, match='idx_dir') as info:
    make_source(data_config(source='idx', idx_dir=str(tmp_path / 'absent')))
  assert 'absent' in str(info.value)


@pytest.mark.parametrize('missing', ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'])
def test_idx_source_missing_files_raise_user_error(tmp_path, missing):
  write_idx_dir(tmp_path)
  os.remove(tmp_path / missing)
  with pytest.raises(UserError, match='idx_dir') as info:
    make_source(data_config(source='idx', idx_dir=str(tmp_path), split='train'))
  assert missing.rsplit('-', 1)[0] in str(info.value)
  # The test split is still complete, so it loads.
  assert len(make_source(data_config(source='idx', idx_dir=str(tmp_path), split='test'))) == 3


def test_idx_source_empty_dir_raises_user_error(tmp_path):
  with pytest.raises(UserError, match='idx_dir'):
    make_source(data_config(source='idx', idx_dir=str(tmp_path)))


def test_idx_source_bad_split_raises_user_error(tmp_path):
  write_idx_dir(tmp_path)
  with pytest.raises(UserError, match='validation'):
    make_source(data_config(source='idx', idx_dir=str(tmp_path), split='validation'))


def test_idx_source_image_label_count_mismatch_raises_user_error(tmp_path):
  write_idx_dir(tmp_path)
  write_file(tmp_path / 'train-labels-idx1-ubyte', idx_bytes(np.zeros(6, np.uint8)))  # 7 images
  with pytest.raises(UserError, match='7 images but 6 labels'):
    make_source(data_config(source='idx', idx_dir=str(tmp_path)))


def test_idx_source_debian_fashion_mnist():
  if not os.path.isdir(DEBIAN_FASHION_MNIST):
    pytest.skip(f'{DEBIAN_FASHION_MNIST} not installed (apt-get install dataset-fashion-mnist)')
  for split, n in (('train', 60000), ('test', 10000)):
    source = make_source(data_config(source='idx', idx_dir=DEBIAN_FASHION_MNIST, split=split, name='fashion_mnist'))
    assert len(source) == n
    assert tuple(source.image_shape) == (28, 28, 1)
    assert source.images.shape == (n, 28, 28, 1) and source.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(source.labels, minlength=10), np.full(10, n // 10))  # balanced
    assert tuple(source.class_names) == FASHION_MNIST_CLASSES
    assert source.images.max() == 255 and source.images.min() == 0


# --- tfds ------------------------------------------------------------------------------------------------------
def test_tfds_unknown_dataset_raises_user_error(tmp_path):
  with pytest.raises(UserError, match='no_such_dataset_xyz'):
    make_source(data_config(source='tfds', name='no_such_dataset_xyz', tfds_data_dir=str(tmp_path)))


def test_tfds_not_prepared_without_download_raises_user_error(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, '_network_reachable', lambda *a, **k: pytest.fail('must not probe the network'))
  with pytest.raises(UserError, match='tfds build') as info:
    make_source(data_config(source='tfds', name='mnist', tfds_data_dir=str(tmp_path), download=False))
  assert str(tmp_path) in str(info.value) and 'mnist' in str(info.value)
  assert not any(tmp_path.iterdir())  # nothing was downloaded or written


def test_tfds_not_prepared_and_no_network_raises_user_error(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, '_network_reachable', lambda *a, **k: False)
  with pytest.raises(UserError, match='unreachable') as info:
    make_source(data_config(source='tfds', name='mnist', tfds_data_dir=str(tmp_path), download=True))
  assert 'tfds build' in str(info.value)


def test_network_reachable_is_false_for_a_closed_port():
  import socket

  with socket.socket() as s:  # bind then close: nothing listens on that port afterwards
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  assert sources._network_reachable(('127.0.0.1', port), timeout=1.0) is False


def _mock_tfds_metadata(data_dir, name='mnist', splits=(('train', 60000), ('test', 10000))):
  """Writes the metadata a prepared dataset has (dataset_info.json, features.json), without any records.

  `tfds.testing.mock_data` fakes the records, but `builder.is_prepared()` and `builder.info.splits` come from
  these files; without them (policy USE_CODE) the builder is "not prepared" and has no splits.
  """
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=str(data_dir), file_format='array_record')
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0, filename_template=None)
      for split, n in splits]))
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_path)


@pytest.mark.parametrize('download', [False, True])
def test_tfds_mock_mnist_source(tmp_path, monkeypatch, download):
  import tensorflow_datasets as tfds

  monkeypatch.setattr(sources, '_network_reachable', lambda *a, **k: pytest.fail('must not probe the network'))
  _mock_tfds_metadata(tmp_path)
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path)):
    source = make_source(data_config(source='tfds', name='mnist', tfds_data_dir=str(tmp_path), download=download))
    assert len(source) == 12
    assert tuple(source.image_shape) == (28, 28, 1)
    assert tuple(source.class_names) == MNIST_CLASSES
    for i in (0, 11):
      record = source[i]
      assert record['image'].shape == (28, 28, 1) and record['image'].dtype == np.uint8
      assert isinstance(record['label'], np.int32) and 0 <= record['label'] < 10


def test_tfds_mock_missing_split_raises_user_error(tmp_path):
  import tensorflow_datasets as tfds

  _mock_tfds_metadata(tmp_path)
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path)):
    with pytest.raises(UserError, match='validation') as info:
      make_source(data_config(source='tfds', name='mnist', tfds_data_dir=str(tmp_path), split='validation'))
  assert 'train' in str(info.value) and 'test' in str(info.value)

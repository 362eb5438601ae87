"""Random-access image sources: scikit-learn digits (embedded), local IDX files, and TFDS.

Every source yields {'image': uint8 [h w c], 'label': int32} records and knows its class names, so later
text-conditioned models can build captions from labels without knowing where the data came from.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import socket
import zlib
from typing import Any, Sequence

import numpy as np

from gen_jax import tf_setup
from gen_jax.data.captions import DIGIT_NAMES
from gen_jax.errors import UserError

MNIST_CLASSES = DIGIT_NAMES  # readable names ('seven'), so captions read naturally
FASHION_MNIST_CLASSES = ('t-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker',
                         'bag', 'ankle boot')


@dataclasses.dataclass(frozen=True)
class ImageSource:
  """In-memory uint8 images with labels; `len` and `[i]` make it a grain random-access source."""
  images: Any  # uint8 [n h w c] array, or a random-access source of {'image', 'label'} dicts (TFDS)
  labels: np.ndarray | None
  class_names: Sequence[str]
  image_shape: tuple[int, int, int]
  caption_key: str = ''  # TFDS: a text feature passed on as 'text' (free-text captions)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, Any]:
    if self.labels is None:  # TFDS: records are already dicts
      record = self.images[index]
      out = {'image': np.asarray(record['image'], np.uint8), 'label': np.int32(record.get('label', 0))}
      if self.caption_key:
        text = record[self.caption_key]
        out['text'] = text.decode('utf-8') if isinstance(text, bytes) else str(text)
      return out
    return {'image': self.images[index], 'label': np.int32(self.labels[index])}


def make_source(data_config) -> ImageSource:
  """Builds the source named by `data_config.source`; raises UserError with a fix for anything wrong."""
  builders = {'digits': _digits_source, 'idx': _idx_source, 'tfds': _tfds_source}
  if data_config.source not in builders:
    raise UserError(f'Unknown data source {data_config.source!r}: set --config.data.source to one of '
                    f'{sorted(builders)}.')
  return builders[data_config.source](data_config)


def dataset_id(data_config) -> str:
  """What the images are, for cache keys and tables: 'digits' for the embedded digits whatever `data.name` says
  (configs derived from MNIST ones keep name='mnist'), the name plus where the files are otherwise."""
  if data_config.source == 'digits':
    return 'digits'
  where = data_config.idx_dir if data_config.source == 'idx' else data_config.get('tfds_data_dir', '')
  return f'{data_config.name}@{where}' if where else data_config.name


def dataset_name(data_config) -> str:
  return dataset_id(data_config).split('@')[0]


def load_split(data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Every example of `split` (no shuffling, no drop-remainder): uint8 images [n h w c] and int32 labels [n]."""
  config = data_config.copy_and_resolve_references()
  config.split = split
  source = make_source(config)
  if source.labels is not None:
    return np.asarray(source.images, np.uint8), np.asarray(source.labels, np.int32)
  records = [source[i] for i in range(len(source))]
  return np.stack([r['image'] for r in records]), np.asarray([r['label'] for r in records], np.int32)


# --- digits: scikit-learn's 1797 real 8x8 handwritten digits, shipped inside the wheel -----------------------
DIGITS_TEST_SIZE = 297  # the last 297 images are held out as 'test'; 'train' has the first 1500


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits as (images [1797 8 8] float64 0..16, labels [1797]): `load_digits()`'s arrays, read
  from the CSV inside the wheel without importing sklearn (whose import took ~0.8 s of a 1-step run)."""
  spec = importlib.util.find_spec('sklearn')
  if spec is None or not spec.submodule_search_locations:
    raise UserError('data.source=digits reads scikit-learn\'s embedded digits: pip install scikit-learn.')
  csv = os.path.join(spec.submodule_search_locations[0], 'datasets', 'data', 'digits.csv.gz')
  if not os.path.exists(csv):  # a future layout: fall back to the public API
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images, digits.target
  with gzip.open(csv, 'rt') as f:
    data = np.loadtxt(f, delimiter=',')
  return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _digits_source(data_config) -> ImageSource:
  from PIL import Image

  digit_images, digit_labels = load_sklearn_digits()
  size = int(data_config.image_size)
  if size < 8:
    raise UserError(f'data.image_size={size} is too small for the 8x8 digits; use 8 or more (default 16).')
  # Originals are 0..16 intensities; scale to 0..255 then resize bilinearly (PIL works on float32 'F' images).
  images = []
  for image in digit_images.astype(np.float32) * (255.0 / 16.0):
    resized = np.asarray(Image.fromarray(image, mode='F').resize((size, size), Image.BILINEAR))
    images.append(np.clip(np.rint(resized), 0, 255).astype(np.uint8))
  images = np.stack(images)[..., None]
  labels = digit_labels.astype(np.int32)
  split = _split_slice(data_config.split, len(images) - DIGITS_TEST_SIZE, len(images), 'digits')
  return ImageSource(images[split], labels[split], MNIST_CLASSES, (size, size, 1))


def _split_slice(split: str, n_train: int, n_total: int, name: str) -> slice:
  if split == 'train':
    return slice(0, n_train)
  if split == 'test':
    return slice(n_train, n_total)
  if split == 'all':
    return slice(0, n_total)
  raise UserError(f"Split {split!r} does not exist for {name}; use 'train', 'test' or 'all'.")


# --- idx: MNIST-format files (MNIST, Fashion-MNIST, KMNIST, ...) in a local directory ------------------------
def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (optionally gzipped) into a numpy array, as specified on Yann LeCun's MNIST page."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # e.g. an interrupted download
    raise UserError(f'{path} is not a valid gzip file ({e}); download it again.') from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise UserError(f'{path} is not an IDX file (bad magic number).')
  dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}
  if data[2] not in dtypes:
    raise UserError(f'{path}: unsupported IDX element type 0x{data[2]:02x}.')
  dtype, ndim = np.dtype(dtypes[data[2]]), data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise UserError(f'{path} is truncated: {len(data)} bytes, shorter than its {header}-byte header.')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(data) - header != expected:
    problem = 'truncated' if len(data) - header < expected else 'longer than its header says'
    raise UserError(f'{path} is {problem}: header says {shape} ({expected} data bytes), found '
                    f'{len(data) - header} data bytes.')
  return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find_idx(directory: str, prefix: str, kind: str) -> str:
  for name in (f'{prefix}-{kind}-ubyte', f'{prefix}-{kind}-ubyte.gz', f'{prefix}-{kind}.idx', ):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return path
  raise UserError(
      f'No {prefix}-{kind}-ubyte[.gz] in {directory!r}. Point --config.data.idx_dir at a directory of '
      f'MNIST-format files (Debian: `apt-get install dataset-fashion-mnist` puts Fashion-MNIST in '
      f'/usr/share/datasets/fashion-mnist).')


def _idx_source(data_config) -> ImageSource:
  directory = data_config.idx_dir
  if not os.path.isdir(directory):
    raise UserError(f'data.idx_dir={directory!r} is not a directory. Point --config.data.idx_dir at a '
                    f'directory of MNIST-format IDX files, or use --config.data.source=digits (embedded).')
  prefixes = {'train': 'train', 'test': 't10k'}
  if data_config.split not in prefixes:
    raise UserError(f"Split {data_config.split!r} does not exist for IDX data; use 'train' or 'test'.")
  prefix = prefixes[data_config.split]
  images = read_idx(_find_idx(directory, prefix, 'images-idx3'))
  labels = read_idx(_find_idx(directory, prefix, 'labels-idx1')).astype(np.int32)
  if len(images) != len(labels):
    raise UserError(f'{directory}: {len(images)} images but {len(labels)} labels.')
  images = images.astype(np.uint8)[..., None]  # [n h w] -> [n h w 1]
  names = FASHION_MNIST_CLASSES if 'fashion' in data_config.name else MNIST_CLASSES
  return ImageSource(images, labels, names, images.shape[1:])


# --- tfds: any prepared TFDS image dataset, read by random access (array_record) ------------------------------
TFDS_HOST = ('storage.googleapis.com', 443)


def _network_reachable(address=TFDS_HOST, timeout: float = 3.0) -> bool:
  try:
    with socket.create_connection(address, timeout=timeout):
      return True
  except OSError:
    return False


def _tfds_source(data_config) -> ImageSource:
  import tensorflow_datasets as tfds

  name, data_dir = data_config.name, data_config.tfds_data_dir or None
  where = f'--config.data.tfds_data_dir={data_dir}' if data_dir else 'the default TFDS data_dir'
  build_cmd = (f'`tfds build {name} --file_format=array_record' + (f' --data_dir={data_dir}`' if data_dir else '`'))
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f'Unknown TFDS dataset {name!r}. Check the name at https://www.tensorflow.org/datasets/catalog '
                    f'(e.g. mnist, fashion_mnist, cifar10), or use --config.data.source=digits for the embedded '
                    f'data or --config.data.source=idx for local MNIST-format files.') from None
  if not builder.is_prepared():
    if not data_config.download:
      raise UserError(f'TFDS dataset {name!r} is not prepared in {where} and data.download is False. Prepare it '
                      f'on a machine with network access with {build_cmd} (copy the data_dir over), or set '
                      f'--config.data.download=True.')
    if not _network_reachable():
      raise UserError(f'TFDS dataset {name!r} is not prepared in {where} and the download server is unreachable '
                      f'(no network). Prepare it where there is network with {build_cmd} and point '
                      f'--config.data.tfds_data_dir at it, or use --config.data.source=digits (embedded) or '
                      f'--config.data.source=idx (local MNIST-format files).')
    tf_setup.hide_gpus_from_tensorflow(import_it=True)  # preparing runs TensorFlow
    builder.download_and_prepare(file_format='array_record')
  split_names = list(builder.info.splits.keys())
  if data_config.split not in split_names:
    raise UserError(f'TFDS dataset {name!r} has no split {data_config.split!r}; it has {split_names}.')
  try:
    source = tfds.data_source(name, split=data_config.split, data_dir=data_dir, download=False)
  except NotImplementedError:
    raise UserError(f'TFDS dataset {name!r} in {where} was prepared as TFRecord, which has no random access. '
                    f'Re-prepare it with {build_cmd}.') from None
  features = builder.info.features
  label = features['label'] if 'label' in features else None
  class_names = tuple(label.names) if label is not None and hasattr(label, 'names') else ('',)
  if class_names == tuple(str(i) for i in range(10)):
    class_names = MNIST_CLASSES  # e.g. TFDS mnist's '0'..'9': readable names, for captions
  shape = tuple(features['image'].shape)
  if None in shape:
    raise UserError(f'TFDS dataset {name!r} has variable-size images {shape}; gen_jax needs a fixed size.')
  caption_key = data_config.get('caption_key', '')
  if caption_key and caption_key not in features:
    raise UserError(f'TFDS dataset {name!r} has no feature {caption_key!r} for data.caption_key; its features '
                    f'are {sorted(features.keys())}.')
  return ImageSource(source, None, class_names, shape, caption_key)

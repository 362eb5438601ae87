"""The FID Inception network in Flax: InceptionV3 as in the TF 2015-12-05 graph, in pytorch-fid's port.

Everything that moves published FIDs is pinned here: pytorch-fid's FIDInceptionA/C/E blocks (average pools that
exclude padding; a max pool in Mixed_7c's pool branch), BatchNorm eps 1e-3, a 1008-way head, 299x299 bilinear
resizing with half-pixel centres and no antialiasing, inputs 2 * (uint8 / 255) - 1, full-precision maths.
pool3 (2048-d) features feed FID/KID and precision/recall; IS uses the head's logits without its bias over all
1008 outputs (improved-gan and torch-fidelity's convention).

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, read once into an `.npz` with the state_dict's own
key names (never by unpickling in this process: `torch.load(weights_only=True)` when torch is installed). Shapes:
n images, h w c; NHWC throughout.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError

WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = f'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}'
RESOLUTION = 299
NUM_LOGITS = 1008
POOL3_DIM = 2048
CONVERT_COMMAND = ("python -c \"import numpy as np, torch; sd = torch.load('{pth}', map_location='cpu', "
                   "weights_only=True); np.savez('{npz}', **{{k: v.numpy() for k, v in sd.items()}})\"")


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (inference, eps 1e-3) -> ReLU; `conv`/`bn` as in the torch state_dict."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  precision: str = 'highest'

  @nn.compact
  def __call__(self, x):
    (ph, pw) = self.padding
    x = nn.Conv(self.features, self.kernel, self.strides, padding=((ph, ph), (pw, pw)), use_bias=False,
                precision=self.precision, name='conv')(x)
    return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x))


def _avg_pool(x):  # FID blocks: 3x3, stride 1, pad 1, padded zeros not counted
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride: int = 2, pad: int = 0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class InceptionA(nn.Module):  # pytorch-fid FIDInceptionA
  pool_features: int
  precision: str = 'highest'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(conv(48, (1, 1), name='branch5x5_1')(x))
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):  # torchvision InceptionB (grid reduction 35 -> 17)
  precision: str = 'highest'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(384, (3, 3), strides=2, name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):  # pytorch-fid FIDInceptionC
  channels_7x7: int
  precision: str = 'highest'

  @nn.compact
  def __call__(self, x):
    conv, c7 = functools.partial(BasicConv, precision=self.precision), self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, **row, name='branch7x7_2')(b7)
    b7 = conv(192, **col, name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    for i, (features, shape) in enumerate([(c7, col), (c7, row), (c7, col), (192, row)], start=2):
      bd = conv(features, **shape, name=f'branch7x7dbl_{i}')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):  # torchvision InceptionD (grid reduction 17 -> 8)
  precision: str = 'highest'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(320, (3, 3), strides=2, name='branch3x3_2')(conv(192, (1, 1), name='branch3x3_1')(x))
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):  # pytorch-fid FIDInceptionE_1 (avg pool) / FIDInceptionE_2 (max pool)
  pool: str
  precision: str = 'highest'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = [conv(384, **row, name='branch3x3_2a')(b3), conv(384, **col, name='branch3x3_2b')(b3)]
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = [conv(384, **row, name='branch3x3dbl_3a')(bd), conv(384, **col, name='branch3x3dbl_3b')(bd)]
    pooled = _avg_pool(x) if self.pool == 'avg' else _max_pool(x, stride=1, pad=1)
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """[n 299 299 3] in [-1, 1] -> {'pool3': [n 2048], 'logits': [n 1008]} (logits include fc's bias).

  Every stage output is sown into the 'intermediates' collection (for locating a divergence from a reference).
  """
  precision: str = 'highest'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    stages = [
        ('Conv2d_1a_3x3', conv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')),
        ('Conv2d_2a_3x3', conv(32, (3, 3), name='Conv2d_2a_3x3')),
        ('Conv2d_2b_3x3', conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')),
        ('maxpool1', _max_pool),
        ('Conv2d_3b_1x1', conv(80, (1, 1), name='Conv2d_3b_1x1')),
        ('Conv2d_4a_3x3', conv(192, (3, 3), name='Conv2d_4a_3x3')),
        ('maxpool2', _max_pool),
        ('Mixed_5b', InceptionA(32, self.precision, name='Mixed_5b')),
        ('Mixed_5c', InceptionA(64, self.precision, name='Mixed_5c')),
        ('Mixed_5d', InceptionA(64, self.precision, name='Mixed_5d')),
        ('Mixed_6a', InceptionB(self.precision, name='Mixed_6a')),
        ('Mixed_6b', InceptionC(128, self.precision, name='Mixed_6b')),
        ('Mixed_6c', InceptionC(160, self.precision, name='Mixed_6c')),
        ('Mixed_6d', InceptionC(160, self.precision, name='Mixed_6d')),
        ('Mixed_6e', InceptionC(192, self.precision, name='Mixed_6e')),
        ('Mixed_7a', InceptionD(self.precision, name='Mixed_7a')),
        ('Mixed_7b', InceptionE('avg', self.precision, name='Mixed_7b')),
        ('Mixed_7c', InceptionE('max', self.precision, name='Mixed_7c')),
    ]
    for name, layer in stages:
      x = layer(x)
      self.sow('intermediates', f'{name}_out', x)
    pool3 = jnp.mean(x, axis=(1, 2))
    return {'pool3': pool3, 'logits': nn.Dense(NUM_LOGITS, precision=self.precision, name='fc')(pool3)}


def preprocess(images: jax.Array) -> jax.Array:
  """uint8 [n h w c] (c = 1 or 3) -> float32 [n 299 299 3] in [-1, 1], as pytorch-fid's wrapper does it.

  Grayscale is repeated to RGB (PIL's convert('RGB')); bilinear resize with half-pixel centres, no antialiasing
  (F.interpolate(align_corners=False)), not rounded back to uint8.
  """
  x = images.astype(jnp.float32) / 255.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  x = jax.image.resize(x, (x.shape[0], RESOLUTION, RESOLUTION, 3), 'bilinear', antialias=False)
  return 2.0 * x - 1.0


# --- weights ----------------------------------------------------------------------------------------------------

def _torch_key(path: tuple[str, ...], collection: str) -> str:
  """Flax variable path -> the pytorch-fid state_dict key holding it."""
  *module, leaf = path
  if module[-1] == 'fc':
    return f'fc.{"weight" if leaf == "kernel" else "bias"}'
  name = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight', ('params', 'bias'): 'bias',
          ('batch_stats', 'mean'): 'running_mean', ('batch_stats', 'var'): 'running_var'}[collection, leaf]
  return '.'.join(module) + '.' + name


def _to_flax(array: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == 'kernel' and array.ndim == 4:
    return array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if leaf == 'kernel':
    return array.T  # fc [out in] -> [in out]
  return array


@functools.cache
def variable_shapes() -> dict:
  """{'params': ..., 'batch_stats': ...} of ShapeDtypeStructs, without initialising 24M parameters."""
  shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.PRNGKey(0),
                          jnp.zeros((1, RESOLUTION, RESOLUTION, 3)))
  return {k: v for k, v in shapes.items() if k in ('params', 'batch_stats')}


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
  """The 472 weight keys of pytorch-fid's state_dict (num_batches_tracked skipped) and their torch shapes."""
  out = {}
  for collection, tree in variable_shapes().items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      names = tuple(p.key for p in path)
      shape = leaf.shape
      if names[-1] == 'kernel':
        shape = shape[::-1] if len(shape) == 2 else (shape[3], shape[2], shape[0], shape[1])
      out[_torch_key(names, collection)] = shape
  return out


def variables_from_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """pytorch-fid state_dict (numpy arrays by torch key) -> Flax variables; missing keys or shapes are errors."""
  expected = state_dict_shapes()
  missing = sorted(set(expected) - set(state_dict))
  wrong = sorted(k for k in expected if k in state_dict and tuple(np.shape(state_dict[k])) != expected[k])
  if missing or wrong:
    raise UserError(f'These Inception weights are not pytorch-fid\'s {WEIGHTS_FILE}: {len(missing)} keys missing '
                    f'(e.g. {missing[:3]}), {len(wrong)} with other shapes (e.g. {wrong[:3]}).')

  def leaf(collection, path, _):
    names = tuple(p.key for p in path)
    return jnp.asarray(_to_flax(np.asarray(state_dict[_torch_key(names, collection)], np.float32), names[-1]))

  return {c: jax.tree_util.tree_map_with_path(functools.partial(leaf, c), tree)
          for c, tree in variable_shapes().items()}


def convert_torch_weights(pth_path: str, npz_path: str) -> None:
  """pytorch-fid's .pth -> .npz of numpy arrays by state_dict key, with torch's weights-only loader."""
  try:
    import torch
  except ImportError:
    raise UserError(f'{pth_path} is a PyTorch file and torch is not installed here. Convert it once where torch '
                    f'is (pip install torch):\n  {CONVERT_COMMAND.format(pth=pth_path, npz=npz_path)}\nthen pass '
                    f'--config.eval.inception_weights={npz_path}.') from None
  state_dict = torch.load(pth_path, map_location='cpu', weights_only=True)
  arrays = {k: v.numpy() for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
  temporary = f'{npz_path}.{os.getpid()}.tmp.npz'  # unique: several processes may convert at once
  np.savez(temporary, **arrays)
  os.replace(temporary, npz_path)


def resolve_weights(weights: str, cache_dir: str) -> str:
  """The .npz of the FID Inception weights: `weights` (.npz, or .pth converted beside it in `cache_dir`), else
  `cache_dir`'s copy, else downloaded there from pytorch-fid's release; a UserError says what to do otherwise."""
  npz = os.path.join(cache_dir, WEIGHTS_FILE.replace('.pth', '.npz'))
  if weights:
    if not os.path.exists(weights):
      raise UserError(f'eval.inception_weights={weights!r} does not exist.')
    if weights.endswith('.npz'):
      return weights
    npz = os.path.join(cache_dir, os.path.basename(weights).rsplit('.', 1)[0] + '.npz')
    if not os.path.exists(npz):
      os.makedirs(cache_dir, exist_ok=True)
      convert_torch_weights(weights, npz)
    return npz
  if os.path.exists(npz):
    return npz
  pth = os.path.join(cache_dir, WEIGHTS_FILE)
  if not os.path.exists(pth):
    os.makedirs(cache_dir, exist_ok=True)
    partial = f'{pth}.{os.getpid()}.part'
    try:
      print(f'Downloading the FID Inception weights from {WEIGHTS_URL} to {pth} ...', flush=True)
      with urllib.request.urlopen(WEIGHTS_URL, timeout=30) as response, open(partial, 'wb') as f:
        f.write(response.read())
      os.replace(partial, pth)
    except OSError as e:
      if os.path.exists(partial):
        os.remove(partial)
      raise UserError(
          f'The FID Inception weights are not here and could not be downloaded ({e}). Put pytorch-fid\'s '
          f'{WEIGHTS_FILE} (from {WEIGHTS_URL}) at {pth}, or pass its path with --config.eval.inception_weights=PATH '
          f'(.pth, or the .npz converted from it); or run with --config.eval.inception=False '
          f'(classifier metrics only).') from None
  convert_torch_weights(pth, npz)
  return npz


def load_variables(npz_path: str) -> dict:
  with np.load(npz_path) as data:
    return variables_from_state_dict({k: data[k] for k in data.files})


def weights_fingerprint(npz_path: str) -> str:
  """A short hash of the weight file: part of reference-statistics cache keys."""
  digest = hashlib.sha1()
  with open(npz_path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      digest.update(block)
  return digest.hexdigest()[:10]

"""Known answer for the FID Inception port: pytorch-fid's own outputs for weights rebuilt from each key's name.

The fixture (tests/fixtures/fid_inception_reference.{npz,md}, copied from ../shared/fixtures) stores pool3 and
logits computed in float64 by pytorch-fid's unmodified code; a float32 port must match within atol 1e-4 (its
.md lists porting mistakes that move them by 0.014 to 2.5).
"""

import json
import os
import zlib

import jax
import numpy as np
import pytest

from gen_jax.errors import UserError
from gen_jax.evaluation import inception

FIXTURE = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'fid_inception_reference.npz')


def recipe_weight(key: str, shape) -> np.ndarray:
  """The fixture's deterministic stand-in for one state_dict entry (its .md, 'Weight recipe')."""
  rng = np.random.default_rng(zlib.crc32(key.encode('utf-8')))
  if key.endswith('conv.weight'):
    value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
  elif key == 'fc.weight':
    value = rng.standard_normal(shape) * np.sqrt(1.0 / 2048)
  elif key.endswith(('bn.weight', 'running_var')):
    value = rng.uniform(0.8, 1.25, shape)
  else:  # bn.bias, running_mean, fc.bias
    value = rng.uniform(-0.1, 0.1, shape)
  return value.astype(np.float32)


@pytest.fixture(scope='module')
def reference():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def recipe_npz(reference, tmp_path_factory):
  """The recipe weights written as the converted-weights .npz a user's .pth would become."""
  recipe = json.loads(str(reference['recipe_json']))
  state_dict = {key: recipe_weight(key, tuple(shape)) for key, shape in recipe['state_dict_keys']}
  for key, check in recipe['weight_checks'].items():
    np.testing.assert_allclose(state_dict[key].ravel()[:3], check['first3'], rtol=1e-6)
    np.testing.assert_allclose(state_dict[key].astype(np.float64).sum(), check['sum_f64'], rtol=1e-9)
  path = str(tmp_path_factory.mktemp('inception') / 'weights.npz')
  np.savez(path, **state_dict)
  return path


def test_port_has_the_reference_keys_shapes_and_size(reference):
  recipe = json.loads(str(reference['recipe_json']))
  assert inception.state_dict_shapes() == {k: tuple(s) for k, s in recipe['state_dict_keys']}
  params = inception.variable_shapes()['params']
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(params)) == recipe['num_parameters'] == 23_850_960


def test_preprocessing_matches_pytorch_fid_interpolate(reference):
  x = np.asarray(inception.preprocess(reference['inputs']), np.float64)  # [n 299 299 3]
  nchw = x.transpose(0, 3, 1, 2)
  np.testing.assert_allclose(nchw[0, :, :16, :16], reference['resized_corner'], atol=1e-5)
  np.testing.assert_allclose(nchw[0, :, -16:, -16:], reference['resized_corner_br'], atol=1e-5)
  stats = np.stack([nchw.mean((2, 3)), nchw.std((2, 3)), nchw.min((2, 3)), nchw.max((2, 3))], -1)
  np.testing.assert_allclose(stats, reference['resized_stats'], atol=1e-5)


def test_pool3_and_logits_match_pytorch_fid(reference, recipe_npz):
  variables = inception.load_variables(recipe_npz)
  x = inception.preprocess(reference['inputs'])
  out, state = inception.FIDInceptionV3().apply(variables, x, mutable=['intermediates'])
  stages = state['intermediates']
  for i, name in enumerate(reference['stage_names']):  # where a port diverges, if it does
    y = np.asarray(stages[f'{name}_out'][0], np.float64).reshape(4, -1)
    np.testing.assert_allclose(y.mean(1), reference['stage_stats'][i, :, 0], atol=1e-4, err_msg=str(name))
  np.testing.assert_allclose(np.asarray(out['pool3']), reference['pool3'], atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(out['logits']), reference['logits'], atol=1e-4, rtol=0)


def test_wrong_weight_file_is_a_clear_error(tmp_path):
  path = str(tmp_path / 'other.npz')
  np.savez(path, **{'fc.weight': np.zeros((10, 2048), np.float32)})
  with pytest.raises(UserError, match='keys missing'):
    inception.load_variables(path)


def test_missing_weights_without_network_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise OSError('network unreachable')
  monkeypatch.setattr(inception.urllib.request, 'urlopen', offline)
  with pytest.raises(UserError) as e:
    inception.resolve_weights('', str(tmp_path))
  message = str(e.value)
  assert inception.WEIGHTS_FILE in message and str(tmp_path) in message and 'inception_weights' in message
  assert not os.path.exists(tmp_path / inception.WEIGHTS_FILE)  # no partial download left behind


def test_extractor_gives_pool3_and_unbiased_logits_sharded_over_eight_devices(reference, recipe_npz, tmp_path):
  from gen_jax import parallel
  from gen_jax.evaluation import features
  extractor = features.inception_extractor(recipe_npz, str(tmp_path), batch_size=8)
  out = extractor(reference['inputs'], parallel.make_mesh())  # 4 images padded to one batch of 8 devices
  fc_bias = recipe_weight('fc.bias', (1008,))
  np.testing.assert_allclose(out['features'], reference['pool3'], atol=1e-4, rtol=0)
  np.testing.assert_allclose(out['logits'], reference['logits'] - fc_bias, atol=1e-4, rtol=0)  # IS: no bias


class FakeTensor:
  def __init__(self, array):
    self.array = array

  def numpy(self):
    return self.array


def test_pth_conversion_uses_the_weights_only_loader(tmp_path, monkeypatch):
  import sys
  import types
  calls = []

  def load(path, map_location=None, weights_only=False):
    calls.append((path, map_location, weights_only))
    return {'fc.bias': FakeTensor(np.ones(1008, np.float32)), 'x.bn.num_batches_tracked': FakeTensor(np.int64(3))}
  monkeypatch.setitem(sys.modules, 'torch', types.SimpleNamespace(load=load))
  pth = tmp_path / inception.WEIGHTS_FILE
  pth.write_bytes(b'not read by the fake')
  npz = inception.resolve_weights(str(pth), str(tmp_path / 'cache'))
  assert calls == [(str(pth), 'cpu', True)]  # never a full unpickle
  with np.load(npz) as data:
    assert data.files == ['fc.bias'] and data['fc.bias'].sum() == 1008  # counters dropped
  assert inception.resolve_weights(str(pth), str(tmp_path / 'cache')) == npz and len(calls) == 1  # converted once


def test_pth_without_torch_names_the_one_line_conversion(tmp_path, monkeypatch):
  import sys
  monkeypatch.setitem(sys.modules, 'torch', None)  # import torch -> ImportError
  pth = tmp_path / inception.WEIGHTS_FILE
  pth.write_bytes(b'')
  with pytest.raises(UserError, match='weights_only=True'):
    inception.resolve_weights(str(pth), str(tmp_path))

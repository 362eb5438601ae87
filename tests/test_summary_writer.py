"""TensorBoard events written without TensorFlow read back with TensorBoard's own loader (which also converts legacy
scalar and image summaries to the tensor form its plugins read): the values, images and hparams TensorBoard shows."""

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from gen_jax import summary_writer
from gen_jax import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_events(directory) -> list:
  """Every event of every event file in `directory`, files in name order (TensorBoard's order)."""
  files = sorted(f for f in os.listdir(directory) if f.startswith(summary_writer.EVENT_FILE_PREFIX))
  return [event for f in files for event in EventFileLoader(os.path.join(directory, f)).Load()], files


def test_scalars_images_texts_and_hparams_read_back_by_tensorboard(tmp_path):
  writer = summary_writer.EventWriter(tmp_path / 'run')
  grid = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
  writer.write_hparams({'model': {'ch': 64, 'ch_mult': (1, 2)}, 'seed': None, 'lr': 2e-4})
  writer.write_scalars(5, {'loss': np.float32(0.25), 'steps_per_sec': 3})
  writer.write_images(5, {'samples': grid[None]})
  writer.write_texts(6, {'prompt': 'a seven'})
  writer.close()
  events, files = read_events(tmp_path / 'run')
  assert len(files) == 1 and events[0].file_version == 'brain.Event:2'
  values = {(e.step, v.tag): v for e in events[1:] for v in e.summary.value}
  assert values[5, 'loss'].tensor.float_val == [0.25] and values[5, 'steps_per_sec'].tensor.float_val == [3.0]
  assert values[5, 'loss'].metadata.plugin_data.plugin_name == 'scalars'
  image = values[5, 'samples']
  assert image.metadata.plugin_data.plugin_name == 'images'
  width, height, png = image.tensor.string_val
  assert (int(width), int(height)) == (12, 10)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), grid)
  assert values[6, 'prompt'].tensor.string_val == [b'a seven']
  assert values[6, 'prompt'].metadata.plugin_data.plugin_name == 'text'
  [hparams] = [v for e in events for v in e.summary.value if v.metadata.plugin_data.plugin_name == 'hparams']
  start = plugin_data_pb2.HParamsPluginData.FromString(hparams.metadata.plugin_data.content).session_start_info
  assert start.hparams['model.ch'].number_value == 64 and start.hparams['model.ch_mult.1'].number_value == 2
  assert start.hparams['seed'].string_value == '' and start.hparams['lr'].number_value == 2e-4


def test_a_batch_of_images_is_one_tag_and_floats_are_scaled(tmp_path):
  writer = summary_writer.EventWriter(tmp_path)
  writer.write_images(1, {'x': np.stack([np.zeros((4, 4, 1)), np.ones((4, 4, 1))])})
  writer.close()
  events, _ = read_events(tmp_path)
  [value] = events[1].summary.value
  width, height, *pngs = value.tensor.string_val
  assert value.tag == 'x' and (width, height) == (b'4', b'4') and len(pngs) == 2
  images = [np.asarray(Image.open(io.BytesIO(png))) for png in pngs]
  assert images[0].max() == 0 and images[1].min() == 255


def test_remote_directories_get_one_complete_event_file_per_flush(tmp_path, monkeypatch):
  """Object stores have no append: each flush uploads what was written since the last one as a file of its own,
  and every such file starts with the version record; nothing is uploaded when nothing is pending."""
  monkeypatch.setattr(workdir_lib, 'is_remote', lambda p: True)
  monkeypatch.setattr(workdir_lib, 'path', lambda p, *parts: __import__('etils.epath').epath.Path(p).joinpath(*parts))
  writer = summary_writer.EventWriter(tmp_path, remote_flush_s=3600)
  writer.write_scalars(1, {'loss': 1.0})
  assert not os.listdir(tmp_path)  # buffered until a flush
  writer.flush()
  writer.flush()
  writer.write_scalars(2, {'loss': 0.5})
  writer.close()
  events, files = read_events(tmp_path)
  assert len(files) == 2 and files == sorted(files)
  assert [e.file_version for e in events if e.file_version] == ['brain.Event:2'] * 2
  assert [(e.step, *e.summary.value[0].tensor.float_val) for e in events if e.summary.value] == [(1, 1.0), (2, 0.5)]


def test_a_training_run_never_imports_tensorflow(tmp_path):
  """TensorFlow's import was ~3.4 s of a 1-step run; only TFDS's dataset preparation needs it."""
  code = ('import sys; from gen_jax.train import train; from tests.helpers import tiny_vae_config; '
          f'train(tiny_vae_config(total_steps=2), {str(tmp_path)!r}); '
          'assert "tensorflow" not in sys.modules, "tensorflow was imported"')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
  assert any(f.startswith(summary_writer.EVENT_FILE_PREFIX) for f in os.listdir(tmp_path))

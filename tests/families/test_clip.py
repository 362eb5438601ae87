"""CLIP family: 8 devices train exactly as 1 (global negatives), it learns a zero-shot digit classifier that
--mode eval reports, and it refuses to sample."""

import json
import pathlib

import jax
import numpy as np
import pytest

from gen_jax import parallel
from gen_jax.data import load_split
from gen_jax.errors import UserError
from gen_jax.evaluate import evaluate
from gen_jax.evaluation.clip_score import load_clip
from gen_jax.sample import sample
from gen_jax.train import train
from tests.helpers import host_tree, tiny_clip_config


def test_clip_eight_devices_equal_one_device(tmp_path):
  config = tiny_clip_config(total_steps=4, checkpoint_every=4, log_every=2)
  one = train(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  eight = train(config, str(tmp_path / 'eight'))
  assert set(one.state.params) == {'image', 'text_head', 'text_encoder', 'log_scale'}
  flat_one = jax.tree_util.tree_leaves_with_path(host_tree(one.state))
  for (path, a), b in zip(flat_one, jax.tree.leaves(host_tree(eight.state)), strict=True):
    if 'key' in jax.tree_util.keystr(path) and 'bias' in jax.tree_util.keystr(path):
      continue  # attention's key bias shifts every logit of a row alike: its exact gradient is 0, so Adam's
      #           steps there are rounding noise (+-lr) that differs between device counts
    np.testing.assert_allclose(a, b, atol=1e-5, err_msg=jax.tree_util.keystr(path))
  for s in one.history:
    np.testing.assert_allclose(one.history[s]['loss'], eight.history[s]['loss'], rtol=1e-5)
  assert abs(one.history[min(one.history)]['logit_scale'] - 1 / 0.07) < 0.05  # CLIP's initial temperature
  assert not (tmp_path / 'one' / 'samples').exists()  # a representation draws no sample grids


def test_clip_learns_zero_shot_digits_and_eval_reports_it(trained_clip):
  config, workdir = trained_clip
  saved = json.loads((pathlib.Path(workdir) / 'config.json').read_text())
  assert saved['model']['family'] == 'clip' and saved['model']['embed_dim'] == 8
  [report] = evaluate(config, workdir)
  m = report['metrics']
  assert m['zero_shot_accuracy'] >= 0.8, m  # chance: 0.1 (297 test digits, 8x8)
  assert set(m['zero_shot_per_prompt']) == {f'a handwritten digit {d}' for d in
                                            ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven',
                                             'eight', 'nine')}
  assert m['recall_at_1_image_to_text'] >= 0.8 and m['recall_at_1_text_to_image'] >= 0.8
  assert m['n'] == 297 and 0 < m['clip_score_real'] <= 100
  assert json.loads((pathlib.Path(workdir) / 'eval' / 'step_000600.json').read_text())['metrics'] == m
  with pytest.raises(UserError, match='does not generate'):
    sample(config, workdir)


def test_clip_score_ranks_true_captions_above_wrong_ones(trained_clip):
  _, workdir = trained_clip
  clip = load_clip(workdir, parallel.make_mesh())
  images, labels = load_split(clip.family.config.data, 'test')
  prompts = clip.family.fixed_prompts()
  true = clip.scores(images, [prompts[k] for k in labels])
  wrong = clip.scores(images, [prompts[(k + 1) % 10] for k in labels])
  assert true.shape == (297,) and np.all(np.abs(true) <= 100 + 1e-3)
  assert np.mean(true > wrong) > 0.8 and true.mean() > wrong.mean() + 20
  free_text = clip.text_embeddings(['a scribbled 4', 'a handwritten digit four'])  # any text embeds
  assert free_text.shape == (2, 8) and np.allclose(np.linalg.norm(free_text, axis=-1), 1, atol=1e-5)


def test_clip_workdir_must_hold_a_clip_run(tmp_path):
  with pytest.raises(UserError, match='config.json does not exist'):
    load_clip(str(tmp_path), parallel.make_mesh())

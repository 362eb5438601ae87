"""`--mode eval`: metrics JSON for every family, 8 devices == 1 device, follow mode, bits/dim over a whole split."""

import json
import os

import jax
import numpy as np
import pytest

from configs import gan_mlp_digits
from gen_jax import evaluate as evaluate_module
from gen_jax.data import load_split
from gen_jax.errors import UserError
from gen_jax.evaluate import evaluate, result_path
from gen_jax.train import train
from tests.helpers import apply_overrides, tiny_ddpm_config, tiny_text_config, tiny_vae_config

SMALL_EVAL = {'eval.num_samples': 40, 'eval.batch_size': 16, 'eval.kid_subsets': 4, 'eval.kid_subset_size': 20,
              'eval.is_splits': 4}
METRICS = ['classifier_fd', 'classifier_is', 'classifier_kid', 'classifier_precision', 'classifier_recall']


@pytest.fixture
def eval_overrides(classifier_cache, tmp_path_factory):
  return {**SMALL_EVAL, 'classifier.cache_dir': classifier_cache,
          'eval.cache_dir': str(tmp_path_factory.getbasetemp() / 'eval_cache')}


@pytest.fixture(scope='module')
def vae_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('vae'))
  train(tiny_vae_config(total_steps=8), workdir)  # checkpoints at steps 4 and 8
  return workdir


def test_eval_writes_every_metric_with_its_floor_and_bits_per_dim_over_the_whole_split(vae_workdir,
                                                                                        eval_overrides):
  config = tiny_vae_config(total_steps=8, **eval_overrides)
  [report] = evaluate(config, vae_workdir, 'configs/vae_digits.py')
  with open(result_path(vae_workdir, 8)) as f:
    saved = json.load(f)
  assert saved['step'] == 8 and saved['num_samples'] == 40 and saved['family'] == 'vae'
  assert saved['metrics'] == pytest.approx(report['metrics'])
  for name in METRICS:
    assert np.isfinite(saved['metrics'][name]) and np.isfinite(saved['floor'][name])
  assert 0 <= saved['metrics']['classifier_precision'] <= 1 and saved['metrics']['classifier_is'] >= 1
  assert saved['floor']['classifier_fd'] < saved['metrics']['classifier_fd']  # real images beat 8 steps of VAE
  test_images, _ = load_split(config.data, 'test')
  assert saved['metrics']['bits_per_dim_n'] == len(test_images) == 297  # every example, none dropped
  assert 0 < saved['metrics']['bits_per_dim'] < 8.0
  assert saved['train_wall_s'] > 0 and saved['hardware'] and saved['config']['eval']['num_samples'] == 40
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(os.path.dirname(result_path(vae_workdir, 8))))


def test_eight_devices_evaluate_like_one_device(vae_workdir, eval_overrides, tmp_path):
  config = tiny_vae_config(total_steps=8, **eval_overrides)
  captured = {}
  original = evaluate_module.feature_metrics

  def spy(ev, prefix, reference, features, logits):
    captured.setdefault(len(captured), features)
    return original(ev, prefix, reference, features, logits)

  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    captured.clear()
    evaluate_module.feature_metrics = spy
    try:
      [report] = evaluate(config, vae_workdir, devices=devices)
    finally:
      evaluate_module.feature_metrics = original
    results.append((report, dict(captured)))
  (one, one_features), (eight, eight_features) = results
  assert eight['devices'] == 8 and one['devices'] == 1
  np.testing.assert_allclose(eight_features[1], one_features[1], atol=1e-4)  # the samples' features
  for key, value in one['metrics'].items():
    assert eight['metrics'][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_follow_mode_evaluates_each_checkpoint_once_and_stops_at_the_last_step(vae_workdir, eval_overrides):
  config = tiny_vae_config(total_steps=8, **eval_overrides, **{'eval.follow': True, 'eval.bits_per_dim': False})
  for step in (4, 8):
    if os.path.exists(result_path(vae_workdir, step)):
      os.remove(result_path(vae_workdir, step))
  first = evaluate(config, vae_workdir)
  assert [r['step'] for r in first] == [4, 8]
  assert evaluate(config, vae_workdir) == []  # a rerun skips steps already evaluated


def test_follow_mode_gives_up_after_the_timeout_without_new_checkpoints(tmp_path, eval_overrides):
  workdir = str(tmp_path)
  train(tiny_vae_config(total_steps=4), workdir)
  config = tiny_vae_config(total_steps=8, **eval_overrides, **{  # training "still running": 8 never comes
      'eval.follow': True, 'eval.bits_per_dim': False, 'eval.follow_poll_s': 0, 'eval.follow_timeout_s': 0})
  assert [r['step'] for r in evaluate(config, workdir)] == [4]


def test_eval_without_checkpoint_is_a_user_error(tmp_path, eval_overrides):
  with pytest.raises(UserError, match='train first'):
    evaluate(tiny_vae_config(**eval_overrides), str(tmp_path))


def test_text_family_evaluates_class_prompts_with_alignment_and_clip_score(tmp_path, eval_overrides, trained_clip):
  config = tiny_text_config('class', total_steps=4, **eval_overrides, **{'eval.clip_workdir': trained_clip[1]})
  train(config, str(tmp_path))
  [report] = evaluate(config, str(tmp_path))
  clip_scores, floor = report['metrics']['clip_score_per_prompt'], report['floor']
  assert len(clip_scores) == 10
  assert report['metrics']['clip_score'] == pytest.approx(np.mean(list(clip_scores.values())))
  assert report['clip']['step'] == 600 and len(floor['clip_score_per_prompt']) == 10
  assert floor['clip_score'] > report['metrics']['clip_score'] + 10  # real digits vs a 4-step model's noise
  per_prompt = report['metrics']['alignment_per_prompt']
  assert len(per_prompt) == 10 and report['num_samples'] == 40 and report['guidance'] == config.sample.guidance
  assert report['metrics']['alignment'] == pytest.approx(np.mean(list(per_prompt.values())))
  assert 'bits_per_dim' not in report['metrics']


@pytest.mark.parametrize('family', ['ddpm', 'mlp_gan'])
def test_every_family_evaluates(tmp_path, eval_overrides, family):
  if family == 'ddpm':
    config = tiny_ddpm_config(total_steps=4, **eval_overrides, **{'diffusion.num_timesteps': 20})
  else:
    config = apply_overrides(gan_mlp_digits.get_config(), {
        'data.image_size': 8, 'data.num_threads': 1, 'global_batch_size': 16, 'total_steps': 4, 'log_every': 2,
        'checkpoint_every': 4, 'sample_every': 4, 'num_samples': 4, **eval_overrides})
  train(config, str(tmp_path))
  [report] = evaluate(config, str(tmp_path))
  assert all(np.isfinite(report['metrics'][m]) for m in METRICS)
  assert ('bits_per_dim' in report['metrics']) == (family == 'ddpm')


def test_inception_score_of_class_ordered_samples_is_not_split_by_class():
  """Text families draw samples prompt by prompt: IS splits must not each hold one class (IS ~1 instead of k)."""
  from gen_jax.evaluation.metrics import gaussian_stats
  from gen_jax.evaluation.reference import Reference
  config = tiny_vae_config(**{**SMALL_EVAL, 'eval.is_splits': 10})
  rng = np.random.default_rng(0)
  real = rng.standard_normal((200, 4))
  reference = Reference(gaussian_stats(real), real, np.zeros((200, 10)), np.zeros(200), 'train')
  logits = np.repeat(np.eye(10), 100, axis=0) * 50.0  # 100 confident samples of class 0, then of class 1, ...
  out = evaluate_module.feature_metrics(config.eval, 'c', reference, rng.standard_normal((1000, 4)), logits)
  assert out['c_is'] == pytest.approx(10.0, rel=0.05)


def test_clip_score_needs_a_text_family(tmp_path, eval_overrides, trained_clip):
  config = tiny_ddpm_config(total_steps=4, **eval_overrides, **{'eval.clip_workdir': trained_clip[1]})
  train(config, str(tmp_path))
  with pytest.raises(UserError, match='scores samples against their prompts'):
    evaluate(config, str(tmp_path))

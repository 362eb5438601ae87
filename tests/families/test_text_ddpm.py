"""Text-to-image DDPM: null-conditioning rate, conditional 8 devices == 1 device, guided sampling without
recompiling, frozen inputs outside checkpoints, and the user errors of --mode sample."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from gen_jax import parallel
from gen_jax.data import make_source
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.sample import sample
from gen_jax.train import train
from tests.helpers import host_tree, tiny_text_config, tiny_vae_config
from tests.models.test_unet import perturb


def family_and_state(config):
  family = get_family(config)
  source = make_source(config.data)
  family.bind_data(source)
  state = jax.jit(lambda r: family.init(r, source.image_shape))(jax.random.PRNGKey(0))
  return family, state.replace(frozen=family.frozen())


def test_null_conditioning_rate_is_p_uncond_and_device_count_invariant():
  family = get_family(tiny_text_config(**{'text.p_uncond': 0.1}))
  n = 8192
  key = jax.random.PRNGKey(3)

  def masks(devices):
    mesh = parallel.make_mesh(devices)
    f = jax.shard_map(lambda k: family.null_mask(k, n // len(devices)), mesh=mesh, in_specs=P(),
                      out_specs=P(parallel.DATA))
    return np.asarray(jax.jit(f)(key))

  one, eight = masks(jax.devices()[:1]), masks(jax.devices())
  np.testing.assert_array_equal(one, eight)
  assert abs(one.mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n), one.mean()  # 4 sigma
  other = np.asarray(jax.jit(jax.shard_map(lambda k: family.null_mask(k, n), mesh=parallel.make_mesh(
      jax.devices()[:1]), in_specs=P(), out_specs=P(parallel.DATA)))(jax.random.PRNGKey(4)))
  assert 0.3 < np.mean(one == other) < 0.95 or not np.array_equal(one, other)  # another key, other examples


def test_conditional_eight_devices_equal_one_device(tmp_path):
  config = tiny_text_config('transformer', total_steps=4, checkpoint_every=4, sample_every=4, log_every=2)
  one = train(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  config.sample_every = 0  # grids do not change the state: one run draws them
  eight = train(config, str(tmp_path / 'eight'))
  assert 'text_encoder' in one.state.params and 'null' in one.state.params
  # rtol: summation order differs with 8 devices, and Adam divides a near-zero gradient's rounding by its own size
  # (one parameter of 4608 differed by 1.8e-4 relative on an AMD EPYC Zen 4; a wrong gradient moves many by ~lr)
  for a, b in zip(jax.tree.leaves(host_tree(one.state)), jax.tree.leaves(host_tree(eight.state)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
  for s in one.history:
    np.testing.assert_allclose(one.history[s]['grad_norm'], eight.history[s]['grad_norm'], rtol=1e-5)
  # the training grid: one row per class prompt (10 rows of 1 for num_samples=4), written as a PNG
  assert os.path.exists(tmp_path / 'one' / 'samples' / 'step_000004.png')


def test_prompts_guidance_and_negative_prompt_are_runtime_values():
  family, state = family_and_state(tiny_text_config('transformer'))
  state = state.replace(ema_params=perturb(state.ema_params, 1, scale=0.2))
  traces = []

  def draw(state, key, cond):
    traces.append(1)
    return family.sample(state, key, 4, cond)

  draw = jax.jit(draw)
  key = jax.random.PRNGKey(0)
  run = lambda prompts, w, negative='': np.asarray(draw(state, key, family.prompt_conditioning(
      prompts, 2, w, negative).inputs))
  base = run(['the number 8', 'a handwritten digit three'], 3.0)
  other_w = run(['the number 8', 'a handwritten digit three'], 1.0)
  other_prompt = run(['the number 1', 'the number 1'], 3.0)
  negative = run(['the number 8', 'a handwritten digit three'], 3.0, 'the number 0')
  assert len(traces) == 1  # one compile for all of them
  assert base.shape == (4, 8, 8, 1) and np.all(np.abs(base) <= 1)
  for changed in (other_w, other_prompt, negative):
    assert np.abs(changed - base).mean() > 1e-4
  np.testing.assert_array_equal(run(['the number 8', 'a handwritten digit three'], 3.0), base)
  # w = 1 is the conditional model: the null branch does not matter then
  np.testing.assert_allclose(run(['the number 8', 'a handwritten digit three'], 1.0, 'the number 0'), other_w,
                             atol=1e-5)


@pytest.fixture(scope='module')
def minilm_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('minilm'))
  config = tiny_text_config('minilm', total_steps=2, checkpoint_every=2, log_every=2)
  result = train(config, workdir)
  return config, workdir, result


@pytest.mark.xdist_group('minilm_run')  # its module fixture is built once, on one worker
def test_frozen_encoder_is_not_trained_nor_checkpointed(minilm_run):
  config, workdir, result = minilm_run
  assert set(result.state.params) == {'unet', 'null'}  # no MiniLM weights among the trained params
  assert result.state.frozen['encoder']['layer_0']['query']['kernel'].shape == (384, 384)
  table = result.state.frozen['captions']  # the caption table, embedded once: [60 captions, L, 384]
  assert table.states.shape == (60, config.text.max_length, 384) and table.pooled.shape == (60, 384)
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(workdir, 'checkpoints'))
             for f in fs)
  assert size < 20e6, size  # MiniLM alone would be 90 MB


@pytest.mark.xdist_group('minilm_run')  # its module fixture is built once, on one worker
def test_sample_mode_with_prompts_writes_images_prompts_and_captioned_grids(minilm_run, classifier_cache):
  config, workdir, _ = minilm_run
  config = tiny_text_config('minilm', **{'classifier.cache_dir': classifier_cache})
  path = sample(config, workdir, prompts=['a handwritten digit three', 'a zebra made of numbers'])
  with np.load(path) as data:
    images, prompts = data['images'], data['prompts']
  assert images.shape == (4, 8, 8, 1) and images.dtype == np.uint8
  assert prompts.tolist() == ['a handwritten digit three'] * 2 + ['a zebra made of numbers'] * 2
  names = sorted(f for f in os.listdir(os.path.dirname(path)) if f.startswith('prompts_000002_'))
  assert names == ['prompts_000002_00_a_handwritten_digit_three.png', 'prompts_000002_01_a_zebra_made_of_numbers.png',
                   'prompts_000002_alignment.json']
  default = np.load(sample(config, workdir))  # no --prompt: the dataset's fixed prompt per class
  assert default['prompts'].tolist()[::2] == [f'a handwritten digit {n}' for n in (
      'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')]


@pytest.mark.xdist_group('minilm_run')  # its module fixture is built once, on one worker
def test_sample_mode_user_errors(minilm_run, tmp_path):
  config, workdir, _ = minilm_run
  with pytest.raises(UserError, match='empty --prompt'):
    sample(config, workdir, prompts=['  '])
  with pytest.raises(UserError, match="trained with text_encoder='minilm'.*--config.text.encoder=minilm"):
    sample(tiny_text_config('transformer'), workdir, prompts=['the number 8'])
  with pytest.raises(UserError, match='unconditional'):
    sample(tiny_vae_config(), str(tmp_path), prompts=['the number 8'])
  family = get_family(tiny_text_config('class'))
  family.bind_data(make_source(config.data))
  with pytest.raises(UserError, match='only knows the dataset'):
    family.prompt_conditioning(['a zebra'], 1, 3.0)


def test_bad_text_settings_are_user_errors():
  with pytest.raises(UserError, match='text.encoder'):
    get_family(tiny_text_config('bert'))
  with pytest.raises(UserError, match='cross_attn_heads=3 must divide'):
    get_family(tiny_text_config(**{'model.cross_attn_heads': 3}))
  with pytest.raises(UserError, match='p_uncond'):
    get_family(tiny_text_config(**{'text.p_uncond': 1.0}))


def test_guided_sampling_matches_its_definition(monkeypatch):
  """The sampler's network is eps_uncond + w (eps_cond - eps_uncond) of the family's own conditioned UNet."""
  family, state = family_and_state(tiny_text_config('class'))
  params = perturb(state.ema_params, 2, scale=0.2)
  state = state.replace(ema_params=params)
  cond = family.prompt_conditioning(['the number 4', 'the number 7'], 1, 2.5).inputs
  captured = []
  monkeypatch.setattr(family, '_run_sampler', lambda model_fn, n, rng: captured.append(model_fn))
  family.sample(state, jax.random.PRNGKey(5), 2, cond)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 1))
  t = jnp.array([90, 40])

  @jax.jit  # one compile instead of eager UNet op dispatch
  def by_hand(params, frozen, x, t):
    emb = family.embed_text(params, frozen, cond['prompt'])
    eps_c = family._conditioned(params, emb, jnp.zeros(2, bool))(x, t)
    eps_u = family._conditioned(params, emb, jnp.ones(2, bool))(x, t)
    return captured[0](x, t), eps_c, eps_u

  guided, eps_c, eps_u = by_hand(params, state.frozen, x, t)
  np.testing.assert_allclose(guided, eps_u + 2.5 * (eps_c - eps_u), atol=1e-5)
  assert np.abs(eps_c - eps_u).mean() > 1e-3  # the condition matters for these params
  assert np.abs(eps_c[0] - eps_c[1]).mean() > 1e-3  # and differs between the two prompts


def test_free_text_batches_are_encoded_each_step():
  family, state = family_and_state(tiny_text_config('transformer'))
  params = perturb(state.params, 3, scale=0.2)
  tokens = family.encoder.inputs(['a red square', 'a blue circle'])
  batch = {'tokens': tokens['tokens'], 'token_mask': tokens['token_mask']}
  x, t = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1)), jnp.array([50, 50])
  out = family._network(params, state.frozen, batch)(x, t)
  swapped = family._network(params, state.frozen, jax.tree.map(lambda a: a[::-1], batch))(x, t)
  assert np.abs(out - swapped).mean() > 1e-4  # the tokens condition the prediction


def test_frozen_encoder_embeds_each_distinct_prompt_once_on_the_host():
  from gen_jax.text import embed_sentences
  from gen_jax.text.encoders import TextEmbedding

  family = get_family(tiny_text_config('minilm'))
  family.bind_data(make_source(tiny_text_config().data))
  cond = family.prompt_conditioning(['the number 8', 'a zebra'], 3, 2.0, negative_prompt='the number 1').inputs
  assert isinstance(cond['prompt'], TextEmbedding) and cond['prompt'].states.shape == (6, 12, 384)
  expected = embed_sentences(['the number 8', 'a zebra'])
  np.testing.assert_allclose(cond['prompt'].pooled, np.repeat(expected, 3, axis=0), atol=1e-5)
  np.testing.assert_allclose(cond['negative'].pooled, np.repeat(embed_sentences(['the number 1']), 6, axis=0),
                             atol=1e-5)
  assert cond['use_negative'].all() and cond['guidance'].tolist() == [2.0] * 6

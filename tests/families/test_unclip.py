"""unCLIP: 8 devices train like 1, the prior's loss starts at its closed form, prompts go through the prior and
variations skip it, --mode sample --image end to end, and the user errors."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gen_jax import parallel
from gen_jax.data import load_split, make_source
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.sample import sample
from gen_jax.train import train
from tests.helpers import apply_overrides, host_tree, tiny_text_config, tiny_unclip_config
from tests.models.test_unet import perturb


@pytest.fixture(scope='module')
def trained_unclip(trained_clip, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('unclip'))
  config = tiny_unclip_config(trained_clip[1], total_steps=4, checkpoint_every=4, sample_every=4)
  return config, workdir, train(config, workdir, devices=jax.devices()[:1])


@pytest.mark.xdist_group('trained_unclip')  # its module fixture is built once, on one worker
def test_unclip_eight_devices_equal_one_device(trained_unclip, tmp_path):
  config, _, one = trained_unclip
  eight = train(apply_overrides(config.copy_and_resolve_references(), {'sample_every': 0}),  # grids: state unchanged
                str(tmp_path / 'eight'))
  assert set(one.state.params) == {'unet', 'tokens', 'null', 'prior'}
  for a, b in zip(jax.tree.leaves(host_tree(one.state)), jax.tree.leaves(host_tree(eight.state)), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5)
  for s in one.history:
    np.testing.assert_allclose(one.history[s]['prior_loss'], eight.history[s]['prior_loss'], rtol=1e-5)


@pytest.mark.parametrize('prior', ['diffusion', 'regression'])
def test_prior_loss_starts_at_the_mean_square_of_the_scaled_embedding(trained_clip, prior):
  """Both priors' output layers start at zero, so the first loss is mean((sqrt(d) z)^2) = |z|^2 = 1 for unit z."""
  config = tiny_unclip_config(trained_clip[1], **{'unclip.prior': prior})
  family = get_family(config)
  source = make_source(config.data)
  family.bind_data(source)
  params = family._init_params(jax.random.PRNGKey(0), jnp.zeros((1, *source.image_shape)))
  images, labels = load_split(config.data, 'train')
  batch = {'image': images[:16].astype(np.float32) / 127.5 - 1, 'caption': labels[:16] * 6}
  losses = lambda p, f, b: parallel.mean_over_devices(family._extra_losses(p, f, b, jax.random.PRNGKey(1)))
  loss = jax.jit(jax.shard_map(losses, mesh=parallel.make_mesh(), in_specs=(jax.P(), jax.P(), jax.P('data')),
                               out_specs=jax.P()))(params, family.frozen(), batch)
  np.testing.assert_allclose(loss['prior_loss'], 1.0, rtol=1e-5)


@pytest.mark.xdist_group('trained_unclip')  # its module fixture is built once, on one worker
def test_prompts_go_through_the_prior_and_variations_do_not(trained_unclip):
  config, workdir, result = trained_unclip
  family = get_family(config)
  family.bind_data(make_source(config.data))
  family.init(jax.random.PRNGKey(0), (8, 8, 1))
  state = result.state.replace(frozen=family.frozen())  # zero-initialised layers made non-zero: every input counts
  state = state.replace(ema_params=perturb(host_tree(state.ema_params), 1, scale=0.2))
  draw = jax.jit(family.sample, static_argnums=2)
  key = jax.random.PRNGKey(5)
  prompts = family.prompt_conditioning(['a handwritten digit one', 'a handwritten digit one'], 1, 3.0).inputs
  images, _ = load_split(config.data, 'test')
  variations = family.image_conditioning(images[:2], ['a', 'b'], 1, 3.0).inputs
  with_other = lambda cond, name, value: {**cond, name: value}
  base = draw(state, key, 2, prompts)
  assert base.shape == (2, 8, 8, 1) and np.all(np.abs(base) <= 1)
  # a prompt's image embedding comes from the prior: the 'image' field is ignored, the text is not
  np.testing.assert_array_equal(base, draw(state, key, 2, with_other(prompts, 'image', variations['image'])))
  assert not np.allclose(base, draw(state, key, 2, with_other(prompts, 'text', variations['image'])))
  # a variation's embedding is its source image's: the text is ignored, the image is not
  v = draw(state, key, 2, variations)
  np.testing.assert_array_equal(v, draw(state, key, 2, with_other(variations, 'text', prompts['text'])))
  assert not np.allclose(v, draw(state, key, 2, with_other(variations, 'image', variations['image'][::-1])))


@pytest.mark.xdist_group('trained_unclip')  # its module fixture is built once, on one worker
def test_sample_mode_makes_variations_of_image_files(trained_unclip, tmp_path, classifier_cache):
  config, workdir, _ = trained_unclip
  config = config.copy_and_resolve_references()
  config.classifier.cache_dir = classifier_cache
  images, _ = load_split(config.data, 'test')
  path = tmp_path / 'seven.png'
  Image.fromarray(np.repeat(np.repeat(images[0, :, :, 0], 4, 0), 4, 1)).save(path)  # 32x32: resized to 8x8
  npz = sample(config, workdir, image_files=[str(path)])
  assert npz.endswith('variations_000004.npz')
  saved = np.load(npz)
  assert saved['images'].shape == (2, 8, 8, 1) and saved['sources'].shape == (1, 8, 8, 1)
  assert list(saved['prompts']) == ['variations of seven.png'] * 2
  report = npz.replace('.npz', '_variations.json')
  assert 'same_class' in open(report).read()
  # a free-text prompt: no class to judge, but the CLIP (eval.clip_workdir = unclip.clip_workdir) scores it
  prompts_npz = sample(config, workdir, prompts=['a scribbled 4'])
  scored = json.loads(open(prompts_npz.replace('.npz', '_alignment.json')).read())
  assert 'alignment' not in scored and -100 <= scored['clip_score']['a scribbled 4'] <= 100
  twice = np.load(sample(config, workdir, image_files=[str(path), str(path)]))  # same name twice: numbered
  assert sorted(set(twice['prompts'])) == ['variations of seven.png (0)', 'variations of seven.png (1)']
  with pytest.raises(UserError, match='no such file'):
    sample(config, workdir, image_files=[str(tmp_path / 'missing.png')])
  with pytest.raises(UserError, match='not both'):
    sample(config, workdir, prompts=['a handwritten digit one'], image_files=[str(path)])


def test_unclip_user_errors(trained_clip, tmp_path):
  with pytest.raises(UserError, match='trained on \\(8, 8, 1\\) images'):
    get_family(tiny_unclip_config(trained_clip[1], **{'data.image_size': 16})).bind_data(
        make_source(tiny_unclip_config(trained_clip[1], **{'data.image_size': 16}).data))
  with pytest.raises(UserError, match='config.json does not exist'):
    get_family(tiny_unclip_config(str(tmp_path))).bind_data(make_source(tiny_unclip_config(str(tmp_path)).data))
  with pytest.raises(UserError, match='unclip.clip_workdir is empty'):
    get_family(tiny_unclip_config(''))
  text = tiny_text_config('class')
  family = get_family(text)
  with pytest.raises(UserError, match='cannot make image variations'):
    family.image_conditioning(np.zeros((1, 8, 8, 1), np.uint8), ['x'], 1, 1.0)


@pytest.mark.xdist_group('trained_unclip')  # its module fixture is built once, on one worker
def test_a_clip_trained_further_is_refused_with_the_step_to_pin(trained_unclip, tmp_path):
  """The CLIP is not checkpointed with the unCLIP: a newer CLIP checkpoint would silently swap the embedding
  space, so the step is recorded and a mismatch names --config.unclip.clip_step."""
  config, workdir, _ = trained_unclip
  newer = tmp_path / 'clip'
  shutil.copytree(config.unclip.clip_workdir, newer, ignore=shutil.ignore_patterns('eval'))  # shared: eval/ may change
  (newer / 'checkpoints' / '600').rename(newer / 'checkpoints' / '700')  # as if trained on to step 700
  moved = config.copy_and_resolve_references()
  moved.unclip.clip_workdir = str(newer)
  with pytest.raises(UserError, match='clip_step=600'):
    sample(moved, workdir)

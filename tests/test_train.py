"""The training loop: outputs on disk, exact resume after SIGTERM, NaN guard, config validation."""

import collections
import glob
import os
import signal
import threading

import jax
import numpy as np
import pytest
from jax.experimental import serialize_executable

from gen_jax.errors import UserError
from gen_jax.reporting import NonFiniteLossError
from gen_jax.train import Trainer, train, validate_config
from tests.helpers import host_tree, tiny_ddpm_config, tiny_text_config, tiny_vae_config


def _checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def test_run_writes_checkpoints_events_and_sample_grids(tmp_path):
  workdir = str(tmp_path)
  result = train(tiny_vae_config(sample_every=8), workdir)
  assert not result.preempted and sorted(result.history) == list(range(1, 9))
  assert _checkpoint_steps(workdir) == [4, 8]
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  from PIL import Image
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples', 'step_000008.png')))
  assert grid.shape == (2 * 10, 2 * 10)  # 4 samples of 8x8 in a 2x2 grid with 1-pixel borders
  assert grid.std() > 0


@pytest.mark.parametrize('make_config', [tiny_vae_config, tiny_ddpm_config, lambda: tiny_text_config('minilm')],
                         ids=['vae', 'ddpm', 'text_ddpm'])
def test_sigterm_then_restart_equals_uninterrupted_run(tmp_path, make_config):
  config = make_config()
  full = train(config, str(tmp_path / 'full'))

  def preempt_at_step_3(step):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)

  workdir = str(tmp_path / 'resumed')
  first = train(config, workdir, hooks=[preempt_at_step_3])
  assert first.preempted and sorted(first.history) == [1, 2, 3]
  assert _checkpoint_steps(workdir) == [3]
  second = train(config, workdir)
  assert not second.preempted and sorted(second.history) == list(range(4, 9))

  # Bitwise: same params, and every step's metrics equal (so the data order was restored too).
  flat_full = host_tree(full.state)
  flat_resumed = host_tree(second.state)
  for x, y in zip(jax.tree.leaves(flat_full), jax.tree.leaves(flat_resumed), strict=True):
    np.testing.assert_array_equal(x, y)
  merged = {**first.history, **second.history}
  assert merged == full.history
  assert not os.path.exists(os.path.join(workdir, 'samples'))  # sample_every=0 (the tiny configs): no grids


def _compiles(run) -> collections.Counter:
  """XLA compiles per (program name, compiled on the compile-ahead thread) while `run()` runs."""
  counts = collections.Counter()

  def listener(event, duration, fun_name='?', **kwargs):
    del duration, kwargs
    if event == '/jax/core/compile/backend_compile_duration':
      counts[fun_name, threading.current_thread().name.startswith('compile_ahead')] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    run()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return counts


def test_step_and_sample_compiled_ahead_once_also_on_resume(tmp_path):
  """The programs compiled on the side thread are the ones the loop calls: no second compile, fresh or resumed."""
  config = tiny_ddpm_config(total_steps=4, checkpoint_every=2, sample_every=2)
  for total_steps in (2, 4):  # the second run resumes from step 2
    config.total_steps = total_steps
    counts = _compiles(lambda: train(config, str(tmp_path)))
    steps = {key: n for key, n in counts.items() if key[0] in ('jit(per_device)', 'jit(one_device)')}
    assert list(steps.values()) == [1] and list(steps)[0][1], counts  # once, ahead
    assert counts['jit(sample)', True] == 1 and counts['jit(sample)', False] == 0, counts


def test_running_again_after_the_end_is_a_no_op(tmp_path):
  config = tiny_vae_config(total_steps=4)
  train(config, str(tmp_path))
  again = train(config, str(tmp_path))
  assert again.history == {} and int(host_tree(again.state.step)) == 4


def test_nan_loss_stops_the_run_and_is_never_checkpointed(tmp_path):
  config = tiny_vae_config(checkpoint_every=2, log_every=2, **{'optim.learning_rate': 1e30,
                                                                'optim.warmup_steps': 0})
  with pytest.raises(NonFiniteLossError, match=r'step [0-9]+') as info:
    train(config, str(tmp_path))
  bad_step = int(str(info.value).split('step ')[1].split(':')[0])
  assert all(step < bad_step for step in _checkpoint_steps(str(tmp_path)))


@pytest.mark.parametrize('key,value,match', [
    ('steps_per_call', 0, 'steps_per_call'),
    ('checkpoint_every', 3, 'multiple of steps_per_call'),
    ('sample_every', 3, '0 \\(off\\) or a positive multiple'),
    ('sample_every', -2, 'sample_every=-2'),
])
def test_invalid_loop_settings_are_user_errors(key, value, match):
  config = tiny_vae_config(steps_per_call=2)
  config[key] = value
  with pytest.raises(UserError, match=match):
    validate_config(config)


def test_k_steps_per_call_equals_one_step_per_call(tmp_path):
  one = train(tiny_vae_config(), str(tmp_path / 'k1'))
  two = train(tiny_vae_config(steps_per_call=2), str(tmp_path / 'k2'))
  for x, y in zip(jax.tree.leaves(host_tree(one.state.params)), jax.tree.leaves(host_tree(two.state.params))):
    np.testing.assert_allclose(x, y, atol=1e-5)
  np.testing.assert_allclose([one.history[s]['loss'] for s in one.history],
                             [two.history[s]['loss'] for s in two.history], rtol=1e-5)


def test_held_out_eval_is_logged_and_device_count_invariant(tmp_path):
  config = tiny_vae_config(eval_every=4, eval_batches=2)
  eight = train(config, str(tmp_path / 'eight'))
  one = train(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  assert sorted(eight.eval_history) == [4, 8]
  for step in (4, 8):
    for name in ('eval/nelbo', 'eval/bits_per_dim', 'eval/kl', 'eval/recon'):
      np.testing.assert_allclose(eight.eval_history[step][name], one.eval_history[step][name], rtol=1e-5)
    e = eight.eval_history[step]
    np.testing.assert_allclose(e['eval/nelbo'], e['eval/recon'] + e['eval/kl'], rtol=1e-5)
  # The eval split is really used: evaluating on the training split gives other numbers.
  on_train = train(tiny_vae_config(eval_every=4, eval_batches=2, **{'data.eval_split': 'train'}),
                   str(tmp_path / 'train_split'))
  assert on_train.eval_history[8]['eval/nelbo'] != eight.eval_history[8]['eval/nelbo']


def test_a_run_that_asks_for_the_compilation_cache_gets_a_train_step_the_cache_can_hold(tmp_path, jax_cache_settings):
  """The cache is turned on before the steps are wrapped, so they get options XLA:CPU can serialize: the MLP GAN's
  step (temporaries over one 16 MiB heap) was compiled split, and the cache skipped it in every run."""
  from configs import gan_mlp_digits
  config = gan_mlp_digits.get_config()
  config.compilation_cache_dir = str(tmp_path / 'xla_cache')
  config.sample_every = 0  # no sampler compiling on after the test
  trainer = Trainer(config, str(tmp_path / 'run'))
  assert jax.config.jax_compilation_cache_dir == config.compilation_cache_dir
  serialize_executable.serialize(trainer.compile_ahead().result().compiled)

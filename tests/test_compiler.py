"""gen_jax.compiler: CPU convolutions must leave YNNPACK (the slow library for them), and users' XLA_FLAGS win."""

import jax
import jax.numpy as jnp
import pytest
from jax import lax
from jax.experimental import serialize_executable

from gen_jax import compiler, host_memory


@pytest.fixture(autouse=True)
def fresh_options():
  compiler.options.cache_clear()
  yield
  compiler.options.cache_clear()


def conv_hlo(jit):
  conv = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jit(conv).lower(jnp.ones((16, 32, 32, 64)), jnp.ones((3, 3, 64, 64))).compile().as_text()  # big enough for YNN


def test_cpu_convolutions_compile_to_xla_not_ynnpack():
  assert compiler.options() == compiler.CPU_OPTIONS
  assert 'ynn_fusion' in conv_hlo(jax.jit)  # jaxlib's default: the conv inside a YNNPACK fusion
  assert 'ynn_fusion' not in conv_hlo(compiler.jit)


def test_an_option_set_in_xla_flags_is_left_to_the_user(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT')
  others = {k: v for k, v in compiler.CPU_OPTIONS.items() if k != 'xla_cpu_experimental_ynn_fusion_type'}
  assert compiler.options() == others


def test_an_option_this_xla_does_not_know_falls_back_to_its_defaults(monkeypatch):
  monkeypatch.setattr(compiler, 'CPU_OPTIONS', {'xla_cpu_option_that_does_not_exist': 'x'})
  assert compiler.options() is None
  compiler.options.cache_clear()
  known = {'xla_multiheap_size_constraint_per_heap': str(host_memory.HEAP_BYTES)}
  monkeypatch.setattr(compiler, 'CPU_OPTIONS', {'xla_cpu_option_that_does_not_exist': 'x', **known})
  assert compiler.options() == known  # the known ones stay
  assert compiler.jit(lambda x: x * 2)(jnp.ones(3)).tolist() == [2.0, 2.0, 2.0]


@pytest.mark.filterwarnings('ignore:Error writing persistent compilation cache entry')  # the split one
def test_with_the_persistent_cache_on_programs_compile_to_one_heap_so_that_they_can_be_cached(monkeypatch):
  # two 2048x2048 float32 temporaries (16 MiB each): more than one 16 MiB heap
  big = lambda x: jnp.tanh(x @ x.T) @ jnp.sin(x) + jnp.cos(x @ x.T).sum()
  compiled = lambda: compiler.jit(big).lower(jnp.ones((2048, 2048))).compile()
  monkeypatch.setattr(compiler, 'persistent_cache_on', lambda: False)
  with pytest.raises(Exception, match='Multiple temp buffer allocations'):  # the persistent cache skipped these
    serialize_executable.serialize(compiled())
  monkeypatch.setattr(compiler, 'persistent_cache_on', lambda: True)
  serialize_executable.serialize(compiled())
  assert compiler.options(True) == {k: v for k, v in compiler.CPU_OPTIONS.items() if k not in compiler.UNCACHEABLE}


def test_the_cache_is_on_when_jax_has_a_cache_directory(jax_cache_settings):
  assert not compiler.persistent_cache_on()
  jax.config.update('jax_compilation_cache_dir', '/tmp/somewhere')
  assert compiler.persistent_cache_on()
  jax.config.update('jax_compilation_cache_dir', None)
  compiler.use_persistent_cache('/tmp/elsewhere')  # known also where jax's setting can't be read back
  assert compiler._CACHE_TURNED_ON == ['/tmp/elsewhere'] and compiler.persistent_cache_on()


@pytest.mark.parametrize('mode', ['sample', 'eval'])
def test_sample_and_eval_modes_turn_on_the_cache_the_config_asks_for_first(mode, tmp_path, jax_cache_settings):
  from gen_jax.errors import UserError
  from gen_jax.evaluate import evaluate
  from gen_jax.sample import sample
  from tests.helpers import tiny_ddpm_config
  config = tiny_ddpm_config(compilation_cache_dir='workdir')
  with pytest.raises(UserError, match='checkpoint'):  # an empty workdir: the mode stops early, after the setup
    {'sample': sample, 'eval': evaluate}[mode](config, str(tmp_path))
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'xla_cache')


def test_random_bits_are_jax_s_own_from_an_unrolled_threefry_on_the_cpu_for_large_calls():
  assert compiler.UNROLLED_THREEFRY
  many = (compiler.MIN_UNROLLED_WORDS,)
  lower = lambda shape, seed=0: jax.jit(lambda k: jax.random.bits(k, shape)).lower(jax.random.key(seed)).as_text()
  assert 'while' not in lower(many)  # jax's CPU rule is a 5-trip while loop; its GPU/TPU rule is unrolled
  assert 'while' in lower((6,))  # small calls keep jax's CPU rule (fewer kernels to compile)
  # stock jax 0.10.2's bits for key 0, and for a shape nothing else here uses:
  assert jax.random.bits(jax.random.key(0), (6,)).tolist() == [4070199207, 4202968722, 1427181096, 2012915765,
                                                                 2447653815, 710830403]
  uniform = lambda k: jax.random.uniform(k, (compiler.MIN_UNROLLED_WORDS // 2, 3))
  assert compiler.unroll_threefry_on_cpu(False)
  try:
    assert 'while' in lower(many, 1)
    rolled = jax.jit(uniform).lower(jax.random.key(4)).compile()(jax.random.key(4))
  finally:
    compiler.unroll_threefry_on_cpu()
  unrolled = jax.jit(uniform)(jax.random.key(4))
  assert (rolled == unrolled).all()


def test_small_multidimensional_random_bits_are_jax_s_own_from_the_flattened_rolled_threefry():
  from jax._src.interpreters import mlir
  from jax._src.random import threefry2x32
  mask = jax.jit(lambda k: jax.random.bernoulli(k, 0.7, (4, 3, 5, 2)))
  ours = mask(jax.random.key(7))
  mlir.register_lowering(threefry2x32.threefry2x32_p, threefry2x32._threefry2x32_cpu_lowering_rule, platform='cpu')
  try:  # pylint: disable=protected-access
    stock = jax.jit(lambda k: jax.random.bernoulli(k, 0.7, (4, 3, 5, 2)))(jax.random.key(7))
  finally:
    compiler.unroll_threefry_on_cpu()
  assert ours.shape == (4, 3, 5, 2) and (ours == stock).all() and 0.5 < ours.mean() < 0.9

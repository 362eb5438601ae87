"""gen_jax.compiler: CPU convolutions must leave YNNPACK (the slow library for them), and users' XLA_FLAGS win."""

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from gen_jax import compiler


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
  assert compiler.options() is None


def test_an_option_this_xla_does_not_know_falls_back_to_its_defaults(monkeypatch):
  monkeypatch.setattr(compiler, 'CPU_OPTIONS', {'xla_cpu_option_that_does_not_exist': 'x'})
  assert compiler.options() is None
  assert compiler.jit(lambda x: x * 2)(jnp.ones(3)).tolist() == [2.0, 2.0, 2.0]

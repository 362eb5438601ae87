"""Registry of model families by name (`config.model.family`)."""

from __future__ import annotations

from typing import Callable

from gen_jax.errors import UserError
from gen_jax.families.base import Family, TrainState

_REGISTRY: dict[str, Callable[[], type[Family]]] = {}


def register(name: str):
  """Class decorator: `@register('vae') class VAEFamily(Family): ...`."""
  def decorator(cls: type[Family]) -> type[Family]:
    _REGISTRY[name] = cls
    return cls
  return decorator


def _load_builtin_families() -> None:
  # Importing a family module registers it; kept lazy so `import gen_jax.families` stays cheap.
  from gen_jax.families import clip, ddpm, gan, text_ddpm, unclip, vae  # noqa: F401


def get_family(config) -> Family:
  _load_builtin_families()
  name = config.model.family
  if name not in _REGISTRY:
    raise UserError(f'Unknown model family {name!r}; --config.model.family must be one of {sorted(_REGISTRY)}.')
  return _REGISTRY[name](config)


__all__ = ['Family', 'TrainState', 'get_family', 'register']

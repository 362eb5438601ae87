"""Command-line pieces the launchers share: their own flags, then `--`, then main.py's flags."""

from __future__ import annotations

from typing import Sequence


def split_at_double_dash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """(the launcher's arguments, main.py's arguments after `--`)."""
  argv = list(argv)
  if '--' not in argv:
    return argv, []
  cut = argv.index('--')
  return argv[:cut], argv[cut + 1:]


def flag_value(args: Sequence[str], name: str) -> str | None:
  """The value of `--name VALUE` or `--name=VALUE` in `args`, or None."""
  for i, arg in enumerate(args):
    if arg == name and i + 1 < len(args):
      return args[i + 1]
    if arg.startswith(name + '='):
      return arg.split('=', 1)[1]
  return None

"""The one exception type that reaches the user as a plain message instead of a traceback."""


class UserError(Exception):
  """A problem the user can fix (bad config, missing data); main.py prints it and exits non-zero.

  Raised before anything in the workdir is written, so a bad invocation never harms a run already there.
  """

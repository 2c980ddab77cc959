"""Errors a user can act on.

Anything raised as :class:`UserError` is printed by the CLI as one clear message
(what is wrong and how to fix it) with a non-zero exit, without a traceback
unless ``--debug`` is given. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, with a fix in the message."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")

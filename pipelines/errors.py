"""Errors the user can fix; the CLI prints them as one line (exit 2), never a traceback."""


class UserError(Exception):
    """A problem with the user's input, config or environment."""

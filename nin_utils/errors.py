"""The error a user can fix: a bad option or input, as opposed to a bug in the code."""

from __future__ import annotations


class UserError(ValueError):
    """A bad option or input; the CLI prints it as one sentence."""

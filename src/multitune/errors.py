"""Errors a user can fix. They are printed as one message, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: params, data, environment.

    The message names the thing that is wrong and how to fix it. Entry points print it and
    exit non-zero without a traceback.
    """

    exit_code = 2


class ConfigError(UserError):
    """params.yaml does not validate."""


class DataError(UserError):
    """The input table or a derived artifact is not what the params describe."""

"""Errors the CLI reports as one clean line and a non-zero exit, never a traceback."""


class HarnessError(Exception):
    exit_code = 1


class BadInput(HarnessError):
    """The user's input (suite, flag, file) is wrong; the message names it and the fix."""

    exit_code = 2

"""Errors the user can act on. The CLI prints their message on one line, without a traceback.

Messages name the file, row and field at fault and never contain identifiers or secrets.
"""


class LtcevalError(Exception):
    """A problem with input or configuration that the user must fix."""

"""Errors the user can act on. The CLI prints their message on one line, without a traceback.

Messages name the file, row and field at fault and never contain identifiers or secrets.
"""


class LtcevalError(Exception):
    """A problem with input or configuration that the user must fix."""


class PublishError(LtcevalError):
    """Outputs could not be written or published. The message names the folder and the reason;
    ``retryable`` says whether trying again without a person acting can help."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable

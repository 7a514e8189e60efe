"""What a client of the controller's API raises: one error with the CLI exit code it maps to."""

from __future__ import annotations


class ApiError(Exception):
    """The controller refused or could not be reached; `code` is the exit code (1 refused or failed, 2 usage,
    auth or config error)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

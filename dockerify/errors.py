"""The one exception type that crosses the library boundary.

Library code raises DockerifyError with a message that names the input and the place, and
optionally a hint. Only the CLI turns it into a line on stderr and an exit status.
"""

from __future__ import annotations


class DockerifyError(Exception):
    """A user-facing failure: `message` names the input and the place; `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class CorruptInput(DockerifyError):
    """The input is damaged or hostile (bad magic, out-of-range block, path traversal ...)."""


class NotFound(DockerifyError):
    """A named thing (image, platform, file, tool) does not exist."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint, exit_code=2)

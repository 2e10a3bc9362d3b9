"""User-facing errors.

An `SSDError` is a problem with the user's input, config or environment that the user can fix. The launcher
prints its message as one paragraph and exits non-zero without a traceback (`HYDRA_FULL_ERROR=1` shows it).
Anything else that escapes is a bug in megatron-ssd and keeps its traceback.
"""
from __future__ import annotations


class SSDError(Exception):
    """An error the user can fix; the message says where (file, line, field) and what to do."""


class ConfigError(SSDError):
    """A config value or combination of values is invalid."""


class DataError(SSDError):
    """An input record or file is malformed."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path, self.line = path, line

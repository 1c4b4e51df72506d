"""The user's mistakes: `UserError` (one line, exit code 2) and `ConfigError` (naming file and field)."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix: the command line prints it as one line, exit code 2."""


class ConfigError(UserError, ValueError):
    """A user mistake in a study file: one line, naming the file and the field."""

    def __init__(self, path: str | Path, field_name: str, message: str):
        self.path, self.field, self.message = str(path), field_name, message
        where = f"{self.path}: {field_name}: " if field_name else f"{self.path}: "
        super().__init__(where + message)

"""Errors a user can act on: each message is one line that says what was expected, what was found, what to do."""

from __future__ import annotations


class BertfitError(Exception):
    """Base class of every error caused by the user's input; the CLI prints it as one line and exits 2."""

    exit_code = 2


class DataError(BertfitError):
    """A data file or table cannot be used as given (path, format, columns, rows, labels)."""


class ConfigError(BertfitError):
    """An option or config file is invalid or contradicts another."""


class ModelError(BertfitError):
    """A model directory or model name cannot be used."""


class MissingDependency(BertfitError):
    """An optional dependency is needed for what was asked."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the package '{package}'; install it with: pip install 'bertfit[{extra}]'")

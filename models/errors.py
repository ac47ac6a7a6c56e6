"""Errors of the ``models`` package: each names the file, column or field to fix."""
from __future__ import annotations

from breeboost.errors import BreeBoostError

__all__ = ["SpecError", "DataError", "ModelError"]


class SpecError(BreeBoostError):
    """A feature spec (TOML) is missing, malformed or inconsistent."""


class DataError(BreeBoostError):
    """A data file or column set cannot be used (unknown format, missing column, bad label, ...)."""


class ModelError(BreeBoostError):
    """A model artifact directory is missing, incomplete, corrupt or of an unsupported format."""

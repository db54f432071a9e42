"""Exceptions of the ``index`` package: one root, one subclass per way to fail.

Input errors also derive from :class:`ValueError` (and unknown ids from
:class:`KeyError`) so callers that only know the builtins still catch them.
"""

from __future__ import annotations

__all__ = [
    "ChecksumMismatch",
    "ConfigError",
    "DimensionMismatch",
    "DuplicateIds",
    "InvalidVectors",
    "ManifestError",
    "StoreError",
    "UnknownIds",
    "VectorIndexError",
]


class VectorIndexError(Exception):
    """Root of every error raised by the ``index`` package."""


class ConfigError(VectorIndexError, ValueError):
    """An :class:`~index.config.IndexConfig` value is out of range or inconsistent."""


class InvalidVectors(VectorIndexError, ValueError):
    """Vectors, queries or ids have the wrong dtype, shape, or hold NaN/inf."""


class DimensionMismatch(InvalidVectors):
    """Vectors or queries do not have the index's dimension."""


class DuplicateIds(InvalidVectors):
    """The same id appears twice in one call."""


class UnknownIds(VectorIndexError, KeyError):
    """``remove(..., strict=True)`` was given ids the index does not hold.

    Attributes:
        ids: the unknown ids, int64 of shape (u,).
    """

    def __init__(self, message: str, ids: object) -> None:
        super().__init__(message)
        self.ids = ids

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0])


class StoreError(VectorIndexError):
    """Saving or loading an index folder failed."""


class ManifestError(StoreError):
    """``manifest.json`` is missing, unreadable, of another format, or disagrees with the index."""


class ChecksumMismatch(StoreError):
    """A file's size or sha256 differs from the manifest: the folder was altered or truncated."""

"""Input checks shared by every backend: real exceptions, never ``assert``."""

from __future__ import annotations

from typing import Any

import numpy as np

from index.errors import DimensionMismatch, DuplicateIds, InvalidVectors


def as_vectors(x: Any, *, dim: int | None, name: str = "vectors") -> np.ndarray:
    """Return ``x`` as C-contiguous float32 of shape (n, d), or raise InvalidVectors.

    Floating inputs of other widths are converted; integers, NaN and inf are refused.
    """
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise InvalidVectors(f"{name} must hold floats, got dtype={arr.dtype}")
    if arr.ndim != 2:
        raise InvalidVectors(f"{name} must have shape (n, d), got shape={arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatch(f"{name} have dimension {arr.shape[1]}, the index has {dim}")
    if arr.shape[1] == 0:
        raise InvalidVectors(f"{name} must have at least one dimension")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
        raise InvalidVectors(f"{name} hold NaN or inf in rows={bad}")
    return arr


def as_ids(ids: Any, *, n: int | None, name: str = "ids") -> np.ndarray:
    """Return ``ids`` as int64 of shape (n,), unique and non-negative, or raise InvalidVectors.

    Negative ids are refused because -1 is the "no result" sentinel.
    """
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise InvalidVectors(f"{name} must be integers, got dtype={arr.dtype}")
    if arr.ndim != 1:
        raise InvalidVectors(f"{name} must have shape (n,), got shape={arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InvalidVectors(f"{name} has {arr.shape[0]} entries for {n} vectors")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise InvalidVectors(f"{name} exceed the int64 range")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and arr.min() < 0:
        raise InvalidVectors(f"{name} must be non-negative (-1 is the no-result sentinel)")
    uniq, counts = np.unique(arr, return_counts=True)
    if uniq.size != arr.size:
        dup = uniq[counts > 1]
        raise DuplicateIds(f"{name} repeat {dup.size} ids, e.g. {dup[:5].tolist()}")
    return arr


def as_k(k: Any) -> int:
    """Return ``k`` as a positive int, or raise InvalidVectors."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidVectors(f"k must be a positive int, got {k!r}")
    return int(k)

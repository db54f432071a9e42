"""Atomic swap of the serving index.

Readers take an immutable :class:`IndexSnapshot` (version, index) and search
it; a swap replaces the holder's reference only, so searches in flight finish
on the index they started with, and one search never mixes two versions.
The old index is freed when its last reader drops it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from index.base import VectorIndex
from index.config import DeviceChoice
from index.errors import VectorIndexError

__all__ = ["IndexHolder", "IndexSnapshot", "SearchResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSnapshot:
    """One version of the serving index."""

    version: str
    index: VectorIndex


@dataclass(frozen=True)
class SearchResult:
    """Scores float32 (m, k) and ids int64 (m, k) (-1 / -inf padding), with the version that produced them."""

    version: str
    scores: np.ndarray
    ids: np.ndarray


class IndexHolder:
    """Holds the current :class:`IndexSnapshot`; thread-safe."""

    def __init__(self, index: VectorIndex | None = None, version: str | None = None) -> None:
        self._lock = threading.Lock()
        self._current: IndexSnapshot | None = None
        if index is not None:
            self.swap(index, version or "initial")

    @property
    def version(self) -> str | None:
        """Version being served, or None before the first swap."""
        current = self._current
        return None if current is None else current.version

    def snapshot(self) -> IndexSnapshot:
        """The current snapshot; raises VectorIndexError when nothing is loaded yet."""
        current = self._current
        if current is None:
            raise VectorIndexError("no index loaded yet")
        return current

    def swap(self, index: VectorIndex, version: str) -> IndexSnapshot | None:
        """Serve ``index`` as ``version`` from now on; returns the previous snapshot."""
        new = IndexSnapshot(version, index)
        with self._lock:
            previous, self._current = self._current, new
        log.info(
            "index swapped version=%s previous=%s kind=%s count=%d",
            version, None if previous is None else previous.version, index.kind, len(index),
        )  # fmt: skip
        return previous

    def load(self, folder: str | os.PathLike[str], *, device: DeviceChoice | None = None) -> IndexSnapshot | None:
        """Load a saved folder (checksums verified) and swap it in under its manifest version."""
        from index.store import load_index  # store imports the backends; keep the holder light

        index, manifest = load_index(folder, device=device)
        return self.swap(index, manifest.index_version)

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Collection[int]] | None = None
    ) -> SearchResult:
        """:meth:`VectorIndex.search` on one snapshot, tagged with its version."""
        snap = self.snapshot()
        scores, ids = snap.index.search(queries, k, exclude)
        return SearchResult(snap.version, scores, ids)

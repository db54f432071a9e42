"""Sorted registry of the external ids an index holds, each with an int64 slot.

Operations are O(n) memory moves (no re-sort), so single-item adds stay cheap
at a million ids; lookups are binary searches.
"""

from __future__ import annotations

import numpy as np


class IdRegistry:
    """External id -> slot (the internal position for HNSW; unused elsewhere)."""

    def __init__(self, ids: np.ndarray | None = None, slots: np.ndarray | None = None) -> None:
        ids = np.empty(0, np.int64) if ids is None else np.asarray(ids, np.int64)
        slots = np.zeros(ids.shape, np.int64) if slots is None else np.asarray(slots, np.int64)
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._slots = slots[order]

    def __len__(self) -> int:
        return int(self._ids.size)

    @property
    def ids(self) -> np.ndarray:
        """Sorted ids, int64 of shape (n,); a read-only view."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask of shape ids.shape: which ids are held."""
        if not self._ids.size:
            return np.zeros(ids.shape, bool)
        pos = np.searchsorted(self._ids, ids)
        pos[pos == self._ids.size] = 0
        return self._ids[pos] == ids

    def slots(self, ids: np.ndarray) -> np.ndarray:
        """Slots of ``ids``, which must all be held."""
        return self._slots[np.searchsorted(self._ids, ids)]

    def insert(self, ids: np.ndarray, slots: np.ndarray | None = None) -> None:
        """Add ``ids`` (none held yet) with their slots."""
        order = np.argsort(ids, kind="stable")
        new_ids = ids[order]
        new_slots = np.zeros(ids.shape, np.int64) if slots is None else np.asarray(slots, np.int64)[order]
        at = np.searchsorted(self._ids, new_ids)
        self._ids = np.insert(self._ids, at, new_ids)
        self._slots = np.insert(self._slots, at, new_slots)

    def delete(self, ids: np.ndarray) -> None:
        """Drop ``ids``, which must all be held."""
        at = np.searchsorted(self._ids, ids)
        self._ids = np.delete(self._ids, at)
        self._slots = np.delete(self._slots, at)


def labels_at(labels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Map faiss result positions to external ids; -1 (no result) stays -1."""
    out = np.full(positions.shape, -1, dtype=np.int64)
    ok = positions >= 0
    out[ok] = labels[positions[ok]]
    return out

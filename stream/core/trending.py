"""Trending items for cold start: exponentially decayed event counts.

Each worker counts the positive events of its own partitions; users are
spread uniformly over partitions, so every worker's counts estimate the
global trend. A count halves every ``half_life_s`` seconds of event time,
which is a sliding window without buckets to expire.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable


class TrendingCounter:
    """Decayed counts per item; :meth:`top` returns the currently hottest items."""

    def __init__(self, half_life_s: float = 3600.0, max_items: int = 100_000) -> None:
        if half_life_s <= 0:
            raise ValueError(f"half_life_s must be positive, got {half_life_s}")
        self._rate = math.log(2) / (half_life_s * 1000.0)
        self._max_items = max_items
        # Scores are stored relative to a reference time so that adding is O(1):
        # score(t) = stored * exp(-rate * (t - ref)).
        self._ref_ms: int | None = None
        self._scores: dict[str, float] = {}
        self._ranked: list[tuple[str, float]] | None = None  # best first; reset by add()

    def add(self, item_id: str, timestamp_ms: int, weight: float = 1.0) -> None:
        if weight <= 0:
            return
        if self._ref_ms is None:
            self._ref_ms = timestamp_ms
        exponent = self._rate * (timestamp_ms - self._ref_ms)
        if exponent > 50:  # rebase before the stored numbers overflow
            self._rebase(timestamp_ms)
            exponent = 0.0
        self._scores[item_id] = self._scores.get(item_id, 0.0) + weight * math.exp(exponent)
        self._ranked = None
        if len(self._scores) > self._max_items:
            keep = heapq.nlargest(self._max_items // 2, self._scores.items(), key=lambda kv: kv[1])
            self._scores = dict(keep)

    def discard(self, item_id: str) -> None:
        """Forget ``item_id`` (taken down from the catalogue): it is never among :meth:`top` again."""
        if self._scores.pop(item_id, None) is not None:
            self._ranked = None

    def _rebase(self, now_ms: int) -> None:
        ref = now_ms if self._ref_ms is None else self._ref_ms
        factor = math.exp(-self._rate * (now_ms - ref))
        self._scores = {k: v * factor for k, v in self._scores.items() if v * factor > 1e-9}
        self._ref_ms = now_ms

    def top(self, k: int, exclude: set[str] | frozenset[str] = frozenset(),
            keep: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
        """The ``k`` items with the highest decayed counts, ``exclude`` left out (and, with ``keep``,
        only the items it accepts: a query-time filter); scores relative."""
        if keep is not None:  # a filter: ranked over every counted item it accepts, not the cached head
            ranked = heapq.nlargest(k, ((i, s) for i, s in self._scores.items() if i not in exclude and keep(i)),
                                    key=lambda kv: kv[1])
            return [(item, score / ranked[0][1]) for item, score in ranked] if ranked else []
        # Ranked once after a change and reused: a batch adds first, then asks many times.
        if self._ranked is None or len(self._ranked) < min(len(self._scores), k + len(exclude)):
            depth = max(256, 4 * (k + len(exclude)))
            self._ranked = heapq.nlargest(depth, self._scores.items(), key=lambda kv: kv[1])
        out = [(item, score) for item, score in self._ranked if item not in exclude][:k]
        if not out:
            return []
        scale = out[0][1]
        return [(item, score / scale) for item, score in out]

    def __len__(self) -> int:
        return len(self._scores)

"""Trending items for cold start: exponentially decayed event counts, over every worker.

A count halves every ``half_life_s`` seconds of event time, which is a sliding
window without buckets to expire. Decayed counts add up, so the trend over all
events is the sum of every events partition's: a worker counts its own
partitions live (:class:`SharedTrending`), publishes each one's counts every few
seconds to the compacted ``trending`` topic (:func:`encode_snapshot`, keyed by
partition), and adds the latest counts of every other partition from there. A
partition that moves to another worker starts there from its last published counts.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Callable

from stream.core.codec import check_id, decode_object
from stream.core.state import dumps
from stream.errors import InvalidRecord

MAX_SNAPSHOT_ITEMS = 10_000  # items per partition's published counts: the head of the trend
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024


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

    def add(self, item_id: str, timestamp_ms: int, weight: float = 1.0, partition: int | None = None) -> None:
        """Count a positive event (``partition``: ignored here; :class:`SharedTrending` counts by it)."""
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

    def snapshot(self, max_items: int = MAX_SNAPSHOT_ITEMS) -> tuple[int | None, dict[str, float]]:
        """``(reference time, {item: stored score})`` of the ``max_items`` highest counts: a score
        at time t is ``stored * 2 ** (-(t - ref) / half-life)``."""
        top = heapq.nlargest(max_items, self._scores.items(), key=lambda kv: kv[1])
        return self._ref_ms, dict(top)

    def counts(self) -> tuple[int | None, Mapping[str, float]]:
        """``(reference time, a read-only view of every stored score)``, unranked: what
        :meth:`snapshot` ranks; copy it before the counter changes again."""
        return self._ref_ms, MappingProxyType(self._scores)

    def merge(self, ref_ms: int | None, scores: Mapping[str, float]) -> None:
        """Add counts taken at reference time ``ref_ms`` (another counter's :meth:`snapshot`)."""
        if ref_ms is None or not scores:
            return
        if self._ref_ms is None:
            self._ref_ms = ref_ms
        exponent = self._rate * (ref_ms - self._ref_ms)
        if exponent > 50:
            self._rebase(ref_ms)
            exponent = 0.0
        factor = math.exp(exponent)
        mine = self._scores
        for item, score in scores.items():
            mine[item] = mine.get(item, 0.0) + score * factor
        self._ranked = None

    def clear(self) -> None:
        self._scores, self._ref_ms, self._ranked = {}, None, None


class SharedTrending:
    """Trending over every events partition: this worker's counted live, each other one's from the
    counts its owner last published (:meth:`receive`). Answers :meth:`top` like a
    :class:`TrendingCounter` of every event."""

    def __init__(self, half_life_s: float = 3600.0, max_items: int = 100_000) -> None:
        self.half_life_s = half_life_s
        self._max_items = max_items
        self._all = TrendingCounter(half_life_s, max_items)  # what top() answers
        self._local: dict[int, TrendingCounter] = {}  # owned partition -> its live counts
        self._remote: dict[int, tuple[int | None, dict[str, float]]] = {}  # other partition -> its last published
        self._owned: set[int] = set()
        self._changed: set[int] = set()  # owned partitions counted since their last snapshot

    def add(self, item_id: str, timestamp_ms: int, weight: float = 1.0, partition: int | None = None) -> None:
        if weight <= 0:
            return
        p = -1 if partition is None else partition
        counter = self._local.get(p)
        if counter is None:
            counter = self._local[p] = TrendingCounter(self.half_life_s, self._max_items)
            self._owned.add(p)
        counter.add(item_id, timestamp_ms, weight)
        self._all.add(item_id, timestamp_ms, weight)
        self._changed.add(p)

    def top(self, k: int, exclude: set[str] | frozenset[str] = frozenset(),
            keep: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
        return self._all.top(k, exclude, keep)

    def discard(self, item_id: str) -> None:
        self._all.discard(item_id)
        for counter in self._local.values():
            counter.discard(item_id)
        for _, scores in self._remote.values():
            scores.pop(item_id, None)

    def __len__(self) -> int:
        return len(self._all)

    def assign(self, partitions: Iterable[int]) -> None:
        """This worker owns ``partitions`` from now on: a newly owned one starts from its last
        published counts; one given up is left to its new owner's snapshots."""
        owned = set(partitions)
        for p in owned - self._owned:
            counter = self._local[p] = TrendingCounter(self.half_life_s, self._max_items)
            counter.merge(*self._remote.pop(p, (None, {})))
        for p in self._owned - owned:
            counter = self._local.pop(p, None)
            if counter is not None and p >= 0:
                self._remote[p] = counter.snapshot()  # until its new owner publishes
        self._owned = owned
        self._changed &= owned
        self._rebuild()

    def receive(self, snapshots: Iterable[tuple[int, int | None, dict[str, float]]]) -> int:
        """Take other partitions' published counts ``(partition, ref_ms, scores)``; an owned
        partition's are ignored (counted live here). Returns how many were taken."""
        taken = 0
        for partition, ref_ms, scores in snapshots:
            if partition in self._owned:
                continue
            self._remote[partition] = (ref_ms, scores)
            taken += 1
        if taken:
            self._rebuild()
        return taken

    def snapshots(self, max_items: int = MAX_SNAPSHOT_ITEMS) -> list[tuple[int, int | None, dict[str, float]]]:
        """``(partition, ref_ms, scores)`` of each owned partition counted since its last snapshot."""
        return [(p, ref_ms, head(scores, max_items)) for p, ref_ms, scores in self.changed_counts()]

    def changed_counts(self) -> list[tuple[int, int | None, dict[str, float]]]:
        """``(partition, ref_ms, a copy of every count)`` of each owned partition counted since the
        last call: cheap to take on the event loop; :func:`head` cuts each to a snapshot elsewhere
        (the worker does it in a thread: at 10^5 items a cut takes some 30 ms a partition)."""
        out = []
        for p in sorted(self._changed):
            if p >= 0 and p in self._local:
                ref_ms, scores = self._local[p].counts()
                out.append((p, ref_ms, dict(scores)))
        self._changed.clear()
        return out

    def mark_changed(self, partitions: Iterable[int]) -> None:
        """Snapshot ``partitions`` again next time (their last snapshot was not delivered)."""
        self._changed.update(p for p in partitions if p in self._local)

    def _rebuild(self) -> None:
        self._all.clear()
        for counter in self._local.values():  # every count, without ranking them: no sort on the event loop
            self._all.merge(*counter.counts())
        for ref_ms, scores in self._remote.values():
            self._all.merge(ref_ms, scores)


def head(scores: Mapping[str, float], max_items: int = MAX_SNAPSHOT_ITEMS) -> dict[str, float]:
    """The ``max_items`` highest of ``scores``."""
    if len(scores) <= max_items:
        return dict(scores)
    return dict(heapq.nlargest(max_items, scores.items(), key=itemgetter(1)))


def encode_snapshot(partition: int, ref_ms: int | None, scores: Mapping[str, float], half_life_s: float) -> bytes:
    """The ``trending`` topic's record of one partition's counts (keyed by the partition number)."""
    return dumps({"partition": partition, "ref_ms": ref_ms, "half_life_s": half_life_s, "scores": dict(scores)})


def parse_snapshot(raw: bytes | bytearray | None, partitions: int) -> tuple[int, int | None, dict[str, float]]:
    """``(partition, ref_ms, scores)`` of a ``trending`` record; raises :class:`InvalidRecord` with a
    reason (the topic is writable by any client)."""
    data: dict[str, Any] = decode_object(raw, MAX_SNAPSHOT_BYTES)
    partition, ref_ms, scores = data.get("partition"), data.get("ref_ms"), data.get("scores")
    if type(partition) is not int or not 0 <= partition < partitions:
        raise InvalidRecord("bad_partition", f"partition must be an integer in [0, {partitions})")
    if ref_ms is not None and (type(ref_ms) is not int or ref_ms < 0):
        raise InvalidRecord("wrong_type", "ref_ms must be a non-negative integer or null")
    if not isinstance(scores, dict) or len(scores) > MAX_SNAPSHOT_ITEMS:
        raise InvalidRecord("wrong_type", f"scores must be an object of at most {MAX_SNAPSHOT_ITEMS} items")
    out: dict[str, float] = {}
    for item, score in scores.items():
        check_id("item_id", item)
        if type(score) not in (int, float) or not 0 <= score < 1e300:
            raise InvalidRecord("bad_value", f"score of {item[:40]!r} must be a finite non-negative number")
        out[item] = float(score)
    return partition, ref_ms, out


JSON_SCHEMA: dict[str, Any] = {
    "title": "streamrec trending counts",
    "description": "One events partition's decayed counts of positive events, published every few seconds by the "
                   "worker that owns it (keyed by the partition number); every worker adds up the latest of each. "
                   "An item's count at event time t is score * 2 ** (-(t - ref_ms) / (half_life_s * 1000)).",
    "type": "object",
    "required": ["partition", "ref_ms", "scores"],
    "properties": {
        "partition": {"type": "integer", "minimum": 0},
        "ref_ms": {"type": ["integer", "null"], "minimum": 0},
        "half_life_s": {"type": "number", "exclusiveMinimum": 0},
        "scores": {"type": "object", "maxProperties": MAX_SNAPSHOT_ITEMS,
                   "additionalProperties": {"type": "number", "minimum": 0}},
    },
    "x-max-bytes": MAX_SNAPSHOT_BYTES,
}

"""A topic's tail as a window: which offsets of each partition hold its last N events and last D days,
and a streaming read of those offsets, batch by batch.

The trainer's snapshot reads through here so its memory is set by the window,
not by the topic's history: :func:`plan_window` picks the offsets from each
partition's end backwards (Kafka's offsets-for-times for the days, then each
partition's share of the event budget, proportional to what it holds in the
time range), and :func:`read_window` hands each fetched batch to a callback
instead of collecting the records.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from aiokafka import TopicPartition

from stream.kafka.reader import CatchUp, range_consumer, started_consumer, topic_partitions
from stream.settings import Settings

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Window:
    """Offsets ``[start, end)`` per partition of ``topic``; ``since_ms`` is the time cut-off asked for (or None)."""

    topic: str
    ranges: dict[int, tuple[int, int]]
    since_ms: int | None = None

    @property
    def events(self) -> int:
        """Offsets in the window (records, transaction markers and compacted gaps included: an upper bound)."""
        return sum(end - start for start, end in self.ranges.values())

    def as_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "since_ms": self.since_ms,
                "partitions": {str(p): [s, e] for p, (s, e) in sorted(self.ranges.items())}}


@dataclass(frozen=True)
class Batch:
    """Records of one partition as fetched, in offset order (values ``None`` for tombstones)."""

    partition: int
    offsets: list[int]
    values: list[bytes | None]
    timestamps: list[int]
    keys: list[bytes | None] = field(default_factory=list)


def split_budget(sizes: dict[int, int], budget: int) -> dict[int, int]:
    """Each partition's share of ``budget`` events, proportional to its size (largest remainders),
    never more than it holds; ``sizes`` summing to at most ``budget`` are returned unchanged."""
    total = sum(sizes.values())
    if total <= budget:
        return dict(sizes)
    shares = {p: budget * n // total for p, n in sizes.items()}
    left = budget - sum(shares.values())
    # Ties broken by partition, so a plan is reproducible.
    by_remainder = sorted(sizes, key=lambda p: (-(budget * sizes[p] % total), p))
    for p in by_remainder[:left]:
        shares[p] += 1
    return shares


async def plan_window(settings: Settings, topic: str, max_events: int | None = None, days: float | None = None,
                      now_ms: int | None = None) -> Window:
    """The offsets of ``topic``'s last ``max_events`` events no older than ``days`` (by their Kafka
    timestamps); ``None`` lifts a bound. Raises ``LookupError`` when the topic does not exist."""
    consumer = await started_consumer(range_consumer(settings))
    try:
        partitions = await topic_partitions(settings, topic)
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = {tp: begins[tp] for tp in partitions}
        since_ms = None
        if days is not None:
            since_ms = int((time.time() * 1000 if now_ms is None else now_ms) - days * DAY_MS)
            found = await consumer.offsets_for_times({tp: max(0, since_ms) for tp in partitions})
            # None: no record at or after the cut-off, so none of the partition is in the window.
            starts = {tp: ends[tp] if found.get(tp) is None else max(begins[tp], found[tp].offset)
                      for tp in partitions}
        sizes = {tp.partition: max(0, ends[tp] - starts[tp]) for tp in partitions}
        shares = split_budget(sizes, max_events) if max_events is not None else sizes
        ranges = {tp.partition: (ends[tp] - shares[tp.partition], ends[tp]) for tp in partitions}
        return Window(topic, ranges, since_ms)
    finally:
        await consumer.stop()


async def read_window(settings: Settings, window: Window, on_batch: Callable[[Batch], None],
                      stall_timeout_s: float = 60.0, max_records: int = 5000) -> int:
    """Read every record of ``window``, handing each fetched batch to ``on_batch``; returns the records read.

    Nothing is kept here, so memory is what ``on_batch`` keeps. Raises
    ``TimeoutError`` when no record arrives for ``stall_timeout_s`` while some
    partition is still short of its end (a window of any size may take as long
    as it reads).
    """
    todo = {p: r for p, r in window.ranges.items() if r[0] < r[1]}
    if not todo:
        # Before any consumer starts: aiokafka's stop() right after start() can raise CancelledError.
        return 0
    partitions = [TopicPartition(window.topic, p) for p in sorted(todo)]
    consumer = await started_consumer(range_consumer(settings))
    try:
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, todo[tp.partition][0])
        progress = CatchUp({p: end for p, (_, end) in todo.items()})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + stall_timeout_s
        read = 0
        while not progress.done:
            if loop.time() > deadline:
                raise TimeoutError(f"read of {window.topic} stalled for {stall_timeout_s}s short of "
                                   f"{ {p: todo[p][1] for p in progress.pending} }")
            batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
            delivered: dict[int, int] = {}
            for tp, messages in batches.items():
                start, end = todo[tp.partition]
                kept = [m for m in messages if start <= m.offset < end]
                if kept:
                    on_batch(Batch(tp.partition, [m.offset for m in kept], [m.value for m in kept],
                                   [m.timestamp for m in kept], [m.key for m in kept]))
                    read += len(kept)
                if messages:
                    delivered[tp.partition] = messages[-1].offset + 1
            if delivered:
                deadline = loop.time() + stall_timeout_s
            positions = {p: await consumer.position(TopicPartition(window.topic, p)) for p in progress.pending}
            progress.update(delivered, positions)
        return read
    finally:
        await consumer.stop()

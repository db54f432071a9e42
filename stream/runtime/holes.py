"""Events Faust never handed to the agent, found and fetched so that none is lost.

The chaos tests found that after a worker (re)starts, Faust's stream can drop
messages it fetched before the group assignment settled: they are skipped
without being acknowledged, and the fetch position has already moved past
them, so the agent's first batch of a partition starts some offsets after the
committed one. Left alone, the partition's commit stalls at the hole forever,
or (with a hole of one offset, through an off-by-one in Faust's commit check,
see ``stream.runtime.faust_fixes``) commits over it; either way a later crash loses
those events, since a state that has seen later offsets takes them for
redeliveries.

:class:`HoleFiller` keeps, per partition, the next offset the agent should
see. When a batch jumps past it, the missing records are read straight from
Kafka and processed first, in offset order, and then acknowledged with the
batch's own records (``stream.runtime.batch_feed.acknowledge``), so commits move on.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiokafka import TopicPartition

from stream.core.records import Record

log = logging.getLogger(__name__)

# (partition, first offset, end offset) -> the records of that range, in offset order
ReadRange = Callable[[int, int, int], Awaitable[list[Record]]]


class HoleFiller:
    """Finds holes in the offsets a batch delivers and fills them (see module docstring)."""

    def __init__(self, consumer: Any, topic: str, read_range: ReadRange) -> None:
        self.consumer = consumer
        self.topic = topic
        self._read_range = read_range
        self._next: dict[int, int] = {}  # partition -> next offset the agent should see

    async def fill(self, records: list[Record]) -> tuple[list[Record], list[Record]]:
        """``(records with the missing ones inserted in offset order, the inserted ones)``."""
        self._forget_unassigned()
        filled: list[Record] = []
        inserted: list[Record] = []
        new = {r.partition for r in records} - self._next.keys()
        if new:  # first records since an assignment: learn where every assigned partition starts
            starts = await self._starts(self._assigned() - self._next.keys() | new)
            self._next.update({p: start for p, start in starts.items() if start is not None})
        for record in records:
            expected = self._next.get(record.partition)
            if expected is not None and record.offset > expected:
                missing = await self._read_range(record.partition, expected, record.offset)
                log.warning("events the stream skipped were fetched again partition=%d offsets=%d..%d "
                            "fetched=%d", record.partition, expected, record.offset - 1, len(missing))
                filled.extend(missing)
                inserted.extend(missing)
            filled.append(record)
            self._next[record.partition] = max(self._next.get(record.partition, 0), record.offset + 1)
        return filled, inserted

    async def _starts(self, partitions: set[int]) -> dict[int, int | None]:
        """The first offset each of ``partitions`` should deliver: the committed one, or the
        earliest the broker holds when the group has committed none.

        One broker request for all of them: each request goes through Faust's consumer
        thread, which answers between fetches (up to a second), and one per partition as
        each first appeared in a batch stalled a fresh 8-partition worker some 8 s.
        """
        starts: dict[int, int | None] = {}
        unknown = []
        for partition in partitions:
            tp = TopicPartition(self.topic, partition)
            starts[partition] = self.consumer._committed_offset[tp]  # the next offset, read at the seek
            if starts[partition] is None:
                unknown.append(tp)
        if unknown:  # nothing committed yet: the group starts at the earliest offset
            earliest = await self.consumer.earliest_offsets(*unknown)
            for tp in unknown:
                starts[tp.partition] = earliest.get(tp)
        return starts

    def _assigned(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic}

    def _forget_unassigned(self) -> None:
        # A partition that moved away and back starts again from its committed offset.
        assigned = self._assigned()
        for partition in list(self._next):
            if partition not in assigned:
                del self._next[partition]

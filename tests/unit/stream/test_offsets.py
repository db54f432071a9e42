"""The commit fixes (stream.runtime.faust_fixes), the hole filler (stream.runtime.holes) and the batch feed's
acknowledgements (stream.runtime.batch_feed.acknowledge), on fake consumer state."""

import asyncio
from collections import defaultdict

from aiokafka import TopicPartition as TP
from intervaltree import IntervalTree

from stream.core.records import Record
from stream.runtime import faust_fixes
from stream.runtime.batch_feed import acknowledge
from stream.runtime.holes import HoleFiller

TOPIC = "events"
P0 = TP(TOPIC, 0)


class FakeConsumer:
    """The bookkeeping attributes of faust's Consumer that the fixes read and write."""

    def __init__(self, committed=None, partitions=(0,), earliest=0):
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._committed_offset = defaultdict(lambda: None)
        self._gap = defaultdict(IntervalTree)
        self._n_acked = 0
        self._waiting_for_ack = None
        self._partitions = partitions
        self._earliest = earliest
        self.earliest_requests = []
        if committed is not None:
            self._committed_offset[P0] = committed

    def assignment(self):
        return {TP(TOPIC, p) for p in self._partitions}

    async def earliest_offsets(self, *tps):
        self.earliest_requests.append(sorted(tp.partition for tp in tps))
        return {tp: self._earliest for tp in tps}

    def ack(self, *offsets):
        for o in offsets:
            self._acked[P0].append(o)
            self._acked_index[P0].add(o)


def new_offset(consumer):
    return faust_fixes._new_offset(consumer, P0)


def test_commit_waits_for_the_offset_right_after_the_last_commit():
    consumer = FakeConsumer(committed=10)
    consumer.ack(11, 12, 13)  # offset 10 was never acknowledged
    assert new_offset(consumer) is None
    consumer.ack(10)
    assert new_offset(consumer) == 14


def test_original_check_committed_over_a_single_missing_offset():
    # The bug being fixed: Faust's own method commits past offset 10.
    consumer = FakeConsumer(committed=10)
    consumer.ack(11, 12, 13)
    assert faust_fixes._original_new_offset(consumer, P0) == 14


def test_an_offset_acknowledged_twice_does_not_stop_the_run():
    consumer = FakeConsumer(committed=10)
    consumer._acked[P0] = [10, 11, 11, 12, 12, 13]
    consumer._acked_index[P0] = {10, 11, 12, 13}
    assert new_offset(consumer) == 14


def test_a_hole_in_the_middle_commits_up_to_it():
    consumer = FakeConsumer(committed=10)
    consumer.ack(10, 11, 13)
    assert new_offset(consumer) == 12


def record(offset, partition=0):
    return Record(TOPIC, partition, offset, b"u", b"{}", 0)


def filler(consumer, store):
    reads = []

    async def read_range(partition, start, stop):
        reads.append((partition, start, stop))
        return [record(o, partition) for o in range(start, stop) if o in store]

    return HoleFiller(consumer, TOPIC, read_range), reads


def test_skipped_events_are_fetched_and_put_first():
    consumer = FakeConsumer(committed=5)
    holes, reads = filler(consumer, store=set(range(100)))
    records, inserted = asyncio.run(holes.fill([record(8), record(9)]))
    assert [r.offset for r in records] == [5, 6, 7, 8, 9]
    assert [r.offset for r in inserted] == [5, 6, 7] and reads == [(0, 5, 8)]
    assert acknowledge(consumer, TOPIC, inserted) == 3
    assert sorted(consumer._acked[P0]) == [5, 6, 7] and consumer._n_acked == 3
    # Keys of the kind Faust uses (aiokafka's), which an exactly-once commit requires.
    assert all(type(tp) is TP for tp in consumer._acked)
    # Within and across batches, a jump is a hole; an offset seen again is not.
    records, inserted = asyncio.run(holes.fill([record(9), record(10), record(12)]))
    assert [r.offset for r in records] == [9, 10, 11, 12] and [r.offset for r in inserted] == [11]


def test_no_commit_yet_starts_at_the_earliest_offset():
    consumer = FakeConsumer(committed=None, earliest=3)
    holes, reads = filler(consumer, store=set(range(100)))
    records, inserted = asyncio.run(holes.fill([record(4)]))
    assert [r.offset for r in records] == [3, 4] and reads == [(0, 3, 4)]


def test_partitions_without_a_commit_ask_the_broker_once_per_batch():
    # Each request waits for Faust's consumer thread to finish a fetch: one per partition
    # held a fresh worker's first batch for seconds.
    consumer = FakeConsumer(committed=None, partitions=(0, 1, 2), earliest=0)
    holes, reads = filler(consumer, store=set(range(100)))
    records, _ = asyncio.run(holes.fill([record(0, 0), record(1, 0)]))
    assert consumer.earliest_requests == [[0, 1, 2]]  # partition 2 too, before its first record
    assert [(r.partition, r.offset) for r in records] == [(0, 0), (0, 1)]
    records, _ = asyncio.run(holes.fill([record(0, 1), record(2, 2), record(3, 1)]))
    assert consumer.earliest_requests == [[0, 1, 2]]  # known partitions are not asked again
    assert [(r.partition, r.offset) for r in records] == [(1, 0), (2, 0), (2, 1), (2, 2), (1, 1), (1, 2), (1, 3)]


def test_acknowledge_skips_offsets_already_acknowledged_or_committed():
    consumer = FakeConsumer(committed=5)
    consumer.ack(6)
    assert acknowledge(consumer, TOPIC, [record(4), record(6), record(7)]) == 1
    assert consumer._acked[P0] == [6, 7] and consumer._n_acked == 1


def test_a_partition_that_left_starts_again_from_its_commit():
    consumer = FakeConsumer(committed=5)
    holes, reads = filler(consumer, store=set(range(100)))
    asyncio.run(holes.fill([record(5), record(6)]))
    consumer._partitions = ()  # revoked ...
    holes._forget_unassigned()
    consumer._partitions = (0,)  # ... and assigned again, committed still 5
    records, _ = asyncio.run(holes.fill([record(5)]))
    assert [r.offset for r in records] == [5] and reads == []

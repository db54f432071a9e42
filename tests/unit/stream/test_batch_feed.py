"""The batch feed (stream.runtime.batch_feed) and the outbox (stream.runtime.outbox), on fake Faust and aiokafka objects.

The real thing runs in every worker of the integration and chaos tests; these pin
the bookkeeping: what goes to the batch handler and what to Faust, and that
offsets are acknowledged only once everything a batch produced is acknowledged.
"""

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition as TP
from aiokafka.record.memory_records import MemoryRecords

from stream.runtime.batch_feed import BatchFeed
from stream.runtime.outbox import Outbox

TOPIC = "events"


def rec(offset, partition=0, topic=TOPIC):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, key=b"u", value=b"{}",
                           timestamp=1_700_000_000_000 + offset)


class FakeConsumer:
    def __init__(self):
        self._read_offset = defaultdict(lambda: None)
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._committed_offset = defaultdict(lambda: None)
        self._n_acked = 0
        self._waiting_for_ack = None
        self._buffered_partitions = set()
        self.flow_active = True
        self.gaps = []
        self.to_faust = []
        self.suspend_flow = asyncio.Event()

    def highwater(self, tp):
        return 100

    async def _add_gap(self, tp, start, stop):
        self.gaps.append((tp.partition, start, stop))

    def _to_message(self, tp, record):
        return record

    async def callback(self, message):
        self.to_faust.append((message.topic, message.offset))

    async def wait_first(self, *coros):
        await coros[0]
        coros[1].close()


class FakeApp:
    def __init__(self):
        self.consumer = FakeConsumer()
        self.consumer_generation_id = 1
        self.monitor = SimpleNamespace(track_tp_end_offset=lambda tp, offset: None)
        self.topics = SimpleNamespace(acks_enabled_for=lambda topic: True)
        self.crashed = []

    async def crash(self, error):
        self.crashed.append(error)


def feed_with(handler):
    app = FakeApp()
    return app, BatchFeed(app, TOPIC, handler)


def test_a_fetch_becomes_one_batch_and_other_topics_go_to_faust():
    app, feed = feed_with(None)
    consumer = app.consumer
    consumer._read_offset[TP(TOPIC, 1)] = 7  # after a seek to offset 7
    fetched = {TP(TOPIC, 0): [rec(0), rec(1), rec(2)],
               TP(TOPIC, 1): [rec(6, 1), rec(7, 1), rec(8, 1), rec(11, 1)],
               TP("changelog", 0): [rec(4, topic="changelog")]}
    batch = asyncio.run(feed._split(consumer, fetched, None))
    assert [(r.partition, r.offset) for r in batch] == [(0, 0), (0, 1), (0, 2), (1, 7), (1, 8), (1, 11)]
    assert batch[0].timestamp_ms == 1_700_000_000_000  # Kafka's timestamps are already milliseconds
    assert consumer.to_faust == [("changelog", 4)]
    assert consumer.gaps == [(1, 9, 11)]  # offsets no record holds, as Faust records them
    assert consumer._read_offset[TP(TOPIC, 0)] == 2 and consumer._read_offset[TP(TOPIC, 1)] == 11


def test_a_rebalance_mid_fetch_stops_the_batch():
    app, feed = feed_with(None)
    consumer = app.consumer
    consumer.flow_active = False
    batch = asyncio.run(feed._split(consumer, {TP(TOPIC, 0): [rec(0)]}, None))
    assert batch == [] and consumer._read_offset[TP(TOPIC, 0)] is None


def test_partitions_not_active_are_left_alone():
    app, feed = feed_with(None)
    batch = asyncio.run(feed._split(app.consumer, {TP(TOPIC, 0): [rec(0)], TP(TOPIC, 1): [rec(0, 1)]},
                                    {TP(TOPIC, 1)}))
    assert [(r.partition, r.offset) for r in batch] == [(1, 0)]


def test_offsets_are_acknowledged_only_once_everything_produced_is_delivered():
    async def scenario():
        delivered = asyncio.get_running_loop().create_future()

        async def handler(records):
            return records, [delivered]

        app, feed = feed_with(handler)
        batch = await feed._split(app.consumer, {TP(TOPIC, 0): [rec(0), rec(1)]}, None)
        await feed._process(batch)
        await asyncio.sleep(0.01)
        assert app.consumer._acked[TP(TOPIC, 0)] == []  # the broker has not acknowledged the output yet
        idle = asyncio.ensure_future(feed.wait_idle())
        await asyncio.sleep(0.01)
        assert not idle.done()  # a rebalance or shutdown waits for it
        delivered.set_result(None)
        await idle
        assert app.consumer._acked[TP(TOPIC, 0)] == [0, 1] and app.consumer._n_acked == 2
        assert app.crashed == []

    asyncio.run(scenario())


@pytest.mark.parametrize("failure", ["handler", "delivery"])
def test_a_failed_batch_is_never_acknowledged_and_stops_the_worker(failure):
    async def scenario():
        async def handler(records):
            if failure == "handler":
                raise RuntimeError("boom")
            lost = asyncio.get_running_loop().create_future()
            lost.set_exception(RuntimeError("not delivered"))
            return records, [lost]

        app, feed = feed_with(handler)
        batch = await feed._split(app.consumer, {TP(TOPIC, 0): [rec(0)]}, None)
        await feed._process(batch)
        await feed.wait_idle()
        assert app.consumer._acked[TP(TOPIC, 0)] == []
        assert len(app.crashed) == 1 and feed._failed is app.crashed[0]

    asyncio.run(scenario())


class FakeProducer:
    def __init__(self, transactional=False):
        self._txn_manager = SimpleNamespace(transactional_id="t-1") if transactional else None
        self._message_accumulator = SimpleNamespace(_compression_type=0)
        self.batches = []

    async def send_batch(self, builder, topic, *, partition):
        batch = MemoryRecords(bytes(builder._build())).next_batch()  # the bytes the broker would get
        self.batches.append((topic, partition, len(list(batch)), batch.is_transactional))
        return asyncio.get_running_loop().create_future()


def test_outbox_sends_one_record_batch_per_topic_partition():
    async def scenario():
        producer = FakeProducer()
        box = Outbox(lambda partition: (producer, None))
        for i in range(5):
            box.add("recommendations", i % 2, b"u%d" % i, b"x" * 100)
        box.add("dead-letter", 1, None, b"y")
        assert len(box) == 6
        sent = await box.send()
        assert sorted((b.topic, b.partition, b.count) for b in sent) == [
            ("dead-letter", 1, 1), ("recommendations", 0, 3), ("recommendations", 1, 2)]
        assert sorted(producer.batches) == [("dead-letter", 1, 1, False), ("recommendations", 0, 3, False),
                                            ("recommendations", 1, 2, False)]
        assert len(box) == 0 and await box.send() == []

    asyncio.run(scenario())


def test_outbox_splits_full_batches_into_transactional_ones():
    async def scenario():
        producer = FakeProducer(transactional=True)
        lock = asyncio.Lock()
        box = Outbox(lambda partition: (producer, lock), max_batch_bytes=1000)
        for _ in range(5):
            box.add("changelog", 0, b"k", b"v" * 300)  # three fit in 1,000 bytes
        box.add("changelog", 0, b"k", b"v" * 5000)
        box.add("changelog", 0, b"k", b"v" * 10)
        sent = await box.send()
        assert [b.count for b in sent] == [3, 2, 1, 1]  # the giant goes alone: the broker's limit decides
        assert [(c, t) for _, _, c, t in producer.batches] == [(3, True), (2, True), (1, True), (1, True)]

    asyncio.run(scenario())


def test_a_commit_never_falls_between_one_partitions_topics():
    """Faust's transaction commit takes the partition's lock: it must wait until the state changelog
    record and the recommendation of that partition are both in the transaction."""
    async def scenario():
        lock = asyncio.Lock()
        order = []

        class SlowProducer(FakeProducer):
            async def send_batch(self, builder, topic, *, partition):
                order.append(topic)
                await asyncio.sleep(0.01)  # a real send yields to the loop (accumulator space)
                return await super().send_batch(builder, topic, partition=partition)

        async def commit():
            await asyncio.sleep(0.005)  # starts while the changelog batch is being sent
            async with lock:
                order.append("commit")

        producer = SlowProducer(transactional=True)
        box = Outbox(lambda partition: (producer, lock))
        box.add("changelog", 3, b"u1", b"state")
        box.add("recommendations", 3, b"u1", b"rec")
        await asyncio.gather(box.send(), commit())
        assert order == ["changelog", "recommendations", "commit"]

    asyncio.run(scenario())

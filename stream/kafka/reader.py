"""Reading a topic back with aiokafka: offsets now, and every record in an offset range.

Used by the demo, the tests and the trainer's topic snapshots: no consumer
group is involved, so reading never moves a worker's committed offsets.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream.core.records import Record
from stream.kafka.config import aiokafka_options
from stream.settings import Settings


async def started_consumer(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """``consumer`` started; closed again when it cannot start (an unreachable broker)."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def range_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer outside any group that reads committed records only, and commits nothing."""
    return AIOKafkaConsumer(
        **aiokafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Read only committed records, like a worker under exactly-once would.
        isolation_level="read_committed",
    )


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """``{partition: offset of the next record}`` for every partition of ``topic``."""
    consumer = await started_consumer(range_consumer(settings))
    try:
        partitions = await topic_partitions(settings, topic)
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def read_range(
    settings: Settings,
    topic: str,
    start: dict[int, int] | None = None,
    stop: dict[int, int] | None = None,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Every record of ``topic`` from ``start`` (default: the beginning) up to ``stop``
    (default: the end offsets when called), in partition then offset order.

    Raises ``TimeoutError`` if the range cannot be read within ``timeout_s``.
    """
    consumer = await started_consumer(range_consumer(settings))
    try:
        partitions = await topic_partitions(settings, topic)
        if stop is None:
            stop = {tp.partition: off for tp, off in (await consumer.end_offsets(partitions)).items()}
        begins = await consumer.beginning_offsets(partitions)
        consumer.assign(partitions)
        pending: set[int] = set()
        firsts: dict[int, int] = {}
        for tp in partitions:
            firsts[tp.partition] = first = max((start or {}).get(tp.partition, 0), begins[tp])
            if first < stop.get(tp.partition, 0):
                consumer.seek(tp, first)
                pending.add(tp.partition)
        records: list[Record] = []
        progress = CatchUp({p: stop.get(p, 0) for p in pending})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not progress.done:
            if loop.time() > deadline:
                raise TimeoutError(f"read of {topic} did not reach {stop} within {timeout_s}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            delivered: dict[int, int] = {}
            for tp, messages in batches.items():
                end = stop.get(tp.partition, 0)
                for m in messages:
                    if firsts[tp.partition] <= m.offset < end:
                        records.append(Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp))
                if messages:
                    delivered[tp.partition] = messages[-1].offset + 1
            positions = {p: await consumer.position(TopicPartition(topic, p)) for p in progress.pending}
            progress.update(delivered, positions)
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        await consumer.stop()


async def topic_partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic``, in order; raises ``LookupError`` when the cluster has no such
    topic (or it has no leader yet, as while being created).

    From the admin client's metadata of all topics, as public API: a consumer's
    ``partitions_for_topic()`` answers only for topics it already tracks (``topics()``
    fetches metadata without keeping it), and asking for one topic by name lets a broker
    with ``auto.create.topics.enable`` create it.
    """
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    try:
        await admin.start()
        described = await admin.describe_topics()  # None: every topic, and creates none
    finally:
        await admin.close()
    for entry in described:
        if entry["topic"] == topic and entry["error_code"] == 0 and entry["partitions"]:
            return [TopicPartition(topic, p) for p in sorted(part["partition"] for part in entry["partitions"])]
    raise LookupError(f"topic {topic} does not exist (streamrec create-topics creates the project's topics)")


class CatchUp:
    """Tells when every partition has been read up to a target offset.

    aiokafka's ``position()`` can reach the end while fetched records are still
    waiting to be returned by ``getmany``, so position alone would stop a read
    early and lose records. A partition is done when a record at or past
    ``end - 1`` was delivered, or when its position is at the end and a few
    polls in a row returned nothing for it (the end is a transaction marker, or
    the records there were compacted away).
    """

    QUIET_POLLS = 3

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = dict(ends)
        self.pending = {p for p, end in ends.items() if end > 0}
        self._quiet = dict.fromkeys(self.pending, 0)

    @property
    def done(self) -> bool:
        return not self.pending

    def update(self, delivered: dict[int, int], positions: dict[int, int | None]) -> None:
        """``delivered``: next offset after the last record returned per partition in this poll."""
        for p in list(self.pending):
            if delivered.get(p, -1) >= self.ends[p]:
                self.pending.discard(p)
            elif p in delivered:
                self._quiet[p] = 0
            elif (positions.get(p) or 0) >= self.ends[p]:
                self._quiet[p] += 1
                if self._quiet[p] >= self.QUIET_POLLS:
                    self.pending.discard(p)

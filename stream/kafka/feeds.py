"""Topics every worker reads in full, outside the consumer group: the catalogue and model updates.

The ``events`` topic is split among workers by Faust's consumer group, but
each worker needs every item (to recommend it) and every model announcement
(to swap). These feeds read with aiokafka, assigned to all partitions and
without a group, so adding workers never splits them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from stream.core.records import Record
from stream.kafka.config import aiokafka_options
from stream.kafka.reader import CatchUp, topic_partitions
from stream.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[list[Record]], Awaitable[None]]


async def follow_topic(
    settings: Settings,
    topic: str,
    on_records: Handler,
    on_caught_up: Callable[[], Awaitable[None]] | None = None,
    from_beginning: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Read ``topic`` (all partitions) forever, calling ``on_records`` with each fetch's records.

    With ``from_beginning`` every record is replayed first (a compacted
    catalogue); otherwise only the last record of each partition and what
    follows (the latest model announcement). ``on_caught_up`` runs once, when
    the end offsets seen at start-up are reached. Records arrive as read,
    tombstones included: the handler decodes and validates them (the topic's
    schema in ``stream.core``). Broker outages are retried with back-off.
    """
    caught_up = False
    backoff = 0.5
    while stop is None or not stop.is_set():
        # "earliest": with the default "latest", the reset that assign() starts can
        # land after our seek and silently skip everything before the end.
        consumer = AIOKafkaConsumer(**aiokafka_options(settings), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest")
        try:
            await consumer.start()
            partitions = await topic_partitions(settings, topic)
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            begins = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, begins[tp] if from_beginning else max(begins[tp], ends[tp] - 1))
            backoff = 0.5
            progress = CatchUp({tp.partition: ends[tp] for tp in partitions})
            while stop is None or not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                records = [Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
                           for messages in batches.values() for m in messages]
                delivered = {tp.partition: messages[-1].offset + 1 for tp, messages in batches.items() if messages}
                if records:
                    await on_records(records)
                if not caught_up:
                    progress.update(delivered, {tp.partition: await consumer.position(tp) for tp in partitions})
                    if progress.done:
                        log.info("feed caught up topic=%s ends=%s", topic, {tp.partition: o for tp, o in ends.items()})
                        caught_up = True
                        if on_caught_up is not None:
                            await on_caught_up()
        except (KafkaError, OSError, LookupError) as e:
            log.warning("feed interrupted topic=%s error=%r retry_in_s=%.1f", topic, e, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
        finally:
            await consumer.stop()

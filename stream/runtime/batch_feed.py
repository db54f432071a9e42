"""The events topic reaches the worker a fetch at a time, not an event at a time.

Faust hands every consumed record to its agents one by one: a message object, a
conductor callback under a lock, a channel queue, an event, the stream's
iterator and an acknowledgement each, about 150 µs per record on a 2-core
machine, which held an agent that does nothing to some 6,700 events/s. The
worker works on whole batches (one index search and one recommendation per user
per batch), so :class:`BatchFeed` replaces the Faust consumer's drain loop: the
events-topic records of one fetch go to the worker's batch handler together;
records of any other topic (table changelogs during recovery) take Faust's own
path unchanged.

A batch is whatever the fetch returned (at most ``max_poll_records``): one
event at low load, answered at once; thousands when the worker falls behind,
so per-batch costs shrink with load. Faust's offset bookkeeping is kept: a
batch's offsets are acknowledged only once every record its handler produced
(recommendations, dead letters, changelog) is acknowledged by the broker, then
Faust's periodic commit or its transactions commit them; a rebalance or a
shutdown waits for the batch in flight and for those acknowledgements, so
nothing is committed ahead of its effects and nothing processed is lost.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any, Awaitable, Callable, Iterable, Sequence

import faust
from aiokafka import TopicPartition

from stream.core.records import Record

log = logging.getLogger(__name__)

# records of one fetch -> (records actually processed, futures of everything they produced)
BatchHandler = Callable[[list[Record]], Awaitable[tuple[Sequence[Record], Sequence[asyncio.Future]]]]


class BatchFeed:
    """Feeds one topic to ``handler`` in fetched batches (see module docstring)."""

    def __init__(self, app: faust.App, topic: str, handler: BatchHandler) -> None:
        self.app = app
        self.topic = topic
        self.handler = handler
        self._pending: set[asyncio.Future] = set()  # the batch in flight and acknowledgements awaited
        self._failed: BaseException | None = None
        self.installed = False

    # --- installation ------------------------------------------------------------------
    def install(self) -> None:
        """Take over the app consumer's drain loop and make its ``wait_empty`` wait for us too."""
        consumer = self.app.consumer
        original_wait_empty = consumer.wait_empty
        feed = self

        async def _drain_messages(_consumer: Any, fetcher: Any) -> None:
            await feed.drain(fetcher)

        async def wait_empty(_consumer: Any) -> None:
            await feed.wait_idle()
            await original_wait_empty()

        consumer._drain_messages = types.MethodType(_drain_messages, consumer)
        consumer.wait_empty = types.MethodType(wait_empty, consumer)
        self.installed = True

    async def wait_idle(self) -> None:
        """Return once no batch is being processed and every processed batch is acknowledged."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    # --- the drain loop ------------------------------------------------------------------
    async def drain(self, fetcher: Any) -> None:
        """Faust's ``Consumer._drain_messages`` with the feed's topic taken in batches."""
        consumer = self.app.consumer
        should_stop = lambda: consumer._stopped.is_set() or fetcher._stopped.is_set()  # noqa: E731
        try:
            while not should_stop():
                if self._failed is not None:
                    raise self._failed
                records, active = await consumer._wait_next_records(1.0)
                await asyncio.sleep(0)  # as Faust does: a fetch loop must let the event loop run
                if records is None or consumer.should_stop:
                    continue
                if not consumer.flow_active:
                    await consumer.perform_seek()  # what Faust's getmany does when flow stopped
                    continue
                batch = await self._split(consumer, records, active)
                if batch:
                    await self._process(batch)
                if consumer._commit_every is not None and consumer._n_acked >= consumer._commit_every:
                    consumer._n_acked = 0
                    await consumer.commit()
        except consumer.consumer_stopped_errors:
            if self.app.should_stop:
                log.info("broker stopped the consumer, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.app.should_stop:
                return
            raise

    async def _split(self, consumer: Any, records: dict, active: set | None) -> list[Record]:
        """The feed topic's records of a fetch, in offset order per partition; others go to Faust."""
        batch: list[Record] = []
        generation = self.app.consumer_generation_id
        read_offset = consumer._read_offset
        for tp, fetched in records.items():
            if not consumer.flow_active or self.app.consumer_generation_id != generation:
                break  # a rebalance began: Faust seeks back to the committed offsets
            if active is not None and tp not in active and tp not in consumer._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
            if tp.topic != self.topic:
                await self._to_faust(consumer, tp, fetched)
                continue
            last = read_offset[tp]
            for record in fetched:
                offset = record.offset
                if last is not None and offset < last:
                    continue  # fetched again after a seek: Faust drops these too
                if last and offset - last > 1 and self.app.topics.acks_enabled_for(tp.topic):
                    # Offsets no record holds (transaction markers): Faust's commit steps over them.
                    await consumer._add_gap(tp, last + 1, offset)
                batch.append(Record(record.topic, record.partition, offset, record.key, record.value,
                                      record.timestamp))
                last = offset
            read_offset[tp] = last
        return batch

    async def _to_faust(self, consumer: Any, tp: Any, fetched: Iterable[Any]) -> None:
        """Faust's own per-message path, for topics other than the feed's."""
        read_offset = consumer._read_offset
        for record in fetched:
            last = read_offset[tp]
            if last is None or record.offset >= last:
                if last and record.offset - last > 1 and self.app.topics.acks_enabled_for(tp.topic):
                    await consumer._add_gap(tp, last + 1, record.offset)
                await consumer.wait_first(consumer.callback(consumer._to_message(tp, record)),
                                          consumer.suspend_flow.wait())
                read_offset[tp] = record.offset

    async def _process(self, batch: list[Record]) -> None:
        # A task of its own, shielded: a rebalance or shutdown cancels the drain loop, never a
        # batch half way; they wait for it in ``wait_empty`` instead.
        task = asyncio.ensure_future(self._run(batch))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        await asyncio.shield(task)

    async def _run(self, batch: list[Record]) -> None:
        try:
            processed, produced = await self.handler(batch)
        except Exception as e:
            await self._fail(e, "a batch failed")
            return
        waiting = asyncio.ensure_future(self._acknowledge_when_delivered(processed, produced))
        self._pending.add(waiting)
        waiting.add_done_callback(self._pending.discard)

    async def _acknowledge_when_delivered(self, records: Sequence[Record],
                                          produced: Sequence[asyncio.Future]) -> None:
        if produced:
            try:
                await asyncio.gather(*produced)
            except Exception as e:
                await self._fail(e, "the broker did not acknowledge a batch's output")
                return
        acknowledge(self.app.consumer, self.topic, records)

    async def _fail(self, error: BaseException, what: str) -> None:
        # Not acknowledged, so not committed: the restarted worker processes the batch again.
        log.error("%s, stopping the worker: its events are not committed and will be processed "
                  "again error=%r", what, error, exc_info=error)
        self._failed = error
        await self.app.crash(error)


def acknowledge(consumer: Any, topic: str, records: Iterable[Record]) -> int:
    """Mark processed ``records`` acknowledged in Faust's bookkeeping, as its ``Consumer.ack`` does.

    Returns how many offsets were newly acknowledged. Offsets below the committed
    one, or acknowledged before, are skipped.
    """
    added = 0
    by_partition: dict[int, list[int]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record.offset)
    for partition, offsets in by_partition.items():
        tp = TopicPartition(topic, partition)  # the key type Faust's commits send
        committed = consumer._committed_offset[tp]
        index = consumer._acked_index[tp]
        acked = consumer._acked[tp]
        for offset in offsets:
            if (committed is None or offset >= committed) and offset not in index:
                index.add(offset)
                acked.append(offset)
                added += 1
    consumer._n_acked += added
    waiter = consumer._waiting_for_ack
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
    return added

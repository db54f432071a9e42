"""Fixes to Faust's offset commit and fetch wait, applied by ``streamrec worker`` before the app starts.

Faust commits, per partition, up to the end of the first run of consecutive
acknowledged offsets. Two faults there, both found by the chaos tests:

- It checks for a hole at the head of the run with ``min(acked) - committed > 1``,
  where ``committed`` is already the next offset to read: a single
  unacknowledged offset right at the head is committed over, and a worker that
  dies after such a commit never sees that event again. The fixed check
  refuses to commit while the first offset after the last commit is
  unacknowledged.
- The list of acknowledged offsets can hold an offset twice (a message
  delivered again after a restart); the run of consecutive offsets then ends at
  the duplicate and commits crawl forward one or two offsets per round, so a
  restarted worker's lag never reached zero. The list is deduplicated first.

Faust's own gap bookkeeping (offsets a fetch skipped, such as transaction
markers) is left to the original method, which fills those holes in first.

A third one, found by the freshness bench: Faust builds its consumer with
``fetch_max_wait_ms=1500``. aiokafka keeps one fetch in flight per broker and
leaves out of it the partitions whose records are still buffered, so a fetch
sent while a batch is being processed can hold only idle partitions (the
assignor's leader topic), and the broker keeps it the full 1.5 s: the events
partitions wait behind it, the next batch is 1.5 s of events, and a loaded
worker stays in that state. The worker's consumer waits at most
``consumer_fetch_max_wait_ms`` instead.
"""

from __future__ import annotations

from typing import Any, Optional

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_original_new_offset = Consumer._new_offset
_original_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms: int | None = None


def _new_offset(consumer: Any, tp: Any) -> Optional[int]:
    acked = consumer._acked[tp]
    if len(acked) > 1:
        # An offset acknowledged twice (a message Faust delivered again, next to its first
        # copy) breaks the run of consecutive offsets, and commits crawled one offset per round.
        acked[:] = sorted(set(acked))
    committed = consumer._committed_offset[tp]
    if acked and committed is not None and not consumer._gap[tp] and min(acked) > committed:
        return None  # offset `committed` is not acknowledged yet: nothing past it may be committed
    return _original_new_offset(consumer, tp)


# What it replaces: inspect.signature, and so stream.runtime.private.check, report the original's
# signature once it is installed.
_new_offset.__wrapped__ = _original_new_offset  # type: ignore[attr-defined]


def _create_worker_consumer(thread: Any, transport: Any) -> Any:
    consumer = _original_create_worker_consumer(thread, transport)
    if _fetch_max_wait_ms is not None:
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # what AIOKafkaConsumer.start gives its Fetcher
    return consumer


_create_worker_consumer.__wrapped__ = _original_create_worker_consumer  # type: ignore[attr-defined]


def apply(fetch_max_wait_ms: int | None = None) -> None:
    """Install the fixed commit check and, given ``fetch_max_wait_ms``, the worker consumer's fetch
    wait (idempotent). Only ``streamrec worker`` calls it (:func:`stream.runtime.app.prepare_worker`);
    importing this module patches nothing."""
    global _fetch_max_wait_ms
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    _fetch_max_wait_ms = fetch_max_wait_ms
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]

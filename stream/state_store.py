"""The worker's user-state table, read and written by explicit partition.

The table is a Faust table (RocksDB through rocksdict, one database per
partition, a changelog topic that Faust restores it from). Faust's own
``table[key]`` picks the partition database from the stream's "current event",
which in a micro-batch is the batch's last record, not the user's; and its
``table[key] = value`` queues the changelog record in a send buffer that a
commit does not reliably drain (offsets were committed while records were still
queued, and a crash then lost applied events). This adapter names the partition
on every call and hands each changelog record to the producer before returning,
so it is delivered with, or committed in the same transaction as, the offsets of
the events that produced it. Values are the same JSON bytes in the database and
in the changelog, encoded once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

import faust
from faust.types import TP

# (topic, key, value, partition) -> the producer's future for the record
Publish = Callable[[str, bytes, bytes, int], Awaitable[asyncio.Future]]


def encode_value(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class PartitionedTable:
    """Get and put JSON values of a RocksDB-backed Faust table by partition (see module docstring)."""

    def __init__(self, app: faust.App, table: faust.Table, publish: Publish) -> None:
        self.app = app
        self.table = table
        self._publish = publish

    @property
    def changelog(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def get(self, key: bytes, partition: int) -> dict[str, Any] | None:
        """The value stored for ``key`` in ``partition``'s database, or ``None``."""
        raw = self.table.data._db_for_partition(partition).get(key)
        if raw is None:
            return None
        self.table.data._key_index[key] = partition  # lets partition-less reads (HTTP) find it directly
        return json.loads(raw)

    def get_any(self, key: bytes) -> dict[str, Any] | None:
        """The value for ``key`` from whichever local partition holds it (HTTP reads)."""
        return self.table.get(key)

    async def put(self, key: bytes, value: dict[str, Any], partition: int) -> None:
        """Store ``value`` and hand its changelog record to the producer (see module docstring)."""
        raw = encode_value(value)
        store = self.table.data
        store._db_for_partition(partition).put(key, raw)
        store._key_index[key] = partition
        sent = await self._publish(self.changelog, key, raw, partition)
        sent.add_done_callback(lambda fut: self._on_changelog_sent(partition, fut))

    def _on_changelog_sent(self, partition: int, fut: asyncio.Future) -> None:
        # What Faust's Collection._on_changelog_sent does: remember which changelog offset
        # the database holds, so a restart replays only what came after it.
        if fut.cancelled() or fut.exception() is not None:
            return  # not persisted: a restart replays from the previous offset
        tp = TP(self.changelog, partition)
        offset = fut.result().offset
        if self.app.in_transaction:
            self.app.tables.persist_offset_on_commit(self.table.data, tp, offset)
        else:
            self.table.data.set_persisted_offset(tp, offset)

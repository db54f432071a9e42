"""The worker's user-state table, read and written by explicit partition.

The table is a Faust table (RocksDB through rocksdict, one database per
partition, a changelog topic that Faust restores it from). Faust's own
``table[key]`` picks the partition database from the stream's "current event",
which in a micro-batch is the batch's last record, not the user's; and its
``table[key] = value`` queues the changelog record in a send buffer that a
commit does not reliably drain (offsets were committed while records were still
queued, and a crash then lost applied events). This adapter names the partition
on every call and puts each changelog record in the batch's
:class:`~stream.runtime.outbox.Outbox`, whose futures the batch feed awaits before the
events' offsets may be committed (or, under ``exactly_once``, which joins the
same transaction as those offsets). Values are the same JSON bytes in the
database and in the changelog, encoded once.

**No RocksDB write-ahead log under at-least-once.** The changelog topic is the
durable log; RocksDB's own WAL made each 9 kB state write some 5x dearer. Without
it, a crash loses the writes since the database's last memtable flush, and
the changelog offset the database records as restored (written the same way,
after the record it names is acknowledged) is lost with them, so Faust's
recovery replays the changelog from an offset the database really holds. Under
``exactly_once`` the offset goes to Faust, to be recorded with the WAL when the
transaction commits (as for Faust's own tables), so the data keeps the WAL too.
Faust 0.15.3 never records an offset handed over this way
(``stream/runtime/README.md``), so a transactional worker replays each changelog
partition from its start at start-up: slower, losing nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from typing import Any, Iterator

import faust
import rocksdict
from faust.types import TP

from stream.errors import InvalidRecord
from stream.runtime.outbox import Outbox, SentBatch

log = logging.getLogger(__name__)


class PartitionedTable:
    """Get and put JSON values of a RocksDB-backed Faust table by partition (see module docstring)."""

    def __init__(self, app: faust.App, table: faust.Table, write_ahead_log: bool = True) -> None:
        self.app = app
        self.table = table
        self.write_ahead_log = write_ahead_log
        self._write_options = rocksdict.WriteOptions()
        self._write_options.disable_wal = not write_ahead_log
        self._key_counts: dict[int, int] = {}  # partition -> keys in its database, kept up to date by put

    def share_memory(self, cache_bytes: int, memtable_bytes: int) -> None:
        """Give every partition database one block cache of ``cache_bytes`` and one memtable budget
        of ``memtable_bytes`` (a RocksDB write-buffer manager), shared: Faust gives each partition
        database a block cache of its own, so 8 partitions held 8 caches and 8 sets of memtables.
        Call before the databases open (the worker does, on worker init)."""
        options = self.table.data.rocksdb_options
        original = options.as_options
        cache = rocksdict.Cache(cache_bytes)
        write_buffers = rocksdict.WriteBufferManager(memtable_bytes, False)  # flushes early, never stalls writes

        def as_options() -> rocksdict.Options:
            db_options = original()  # Faust's options, then its table factory rebuilt around the shared cache
            table_options = rocksdict.BlockBasedOptions()
            table_options.set_bloom_filter(options.bloom_filter_size, block_based=True)
            table_options.set_block_cache(cache)
            table_options.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
            db_options.set_block_based_table_factory(table_options)
            db_options.set_write_buffer_manager(write_buffers)
            return db_options

        options.as_options = as_options
        self.shared_cache, self.shared_write_buffers = cache, write_buffers

    @property
    def changelog(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def _db(self, partition: int) -> Any:
        return self.table.data._db_for_partition(partition)

    def get_raw(self, key: bytes, partition: int) -> bytes | None:
        """The stored bytes for ``key`` in ``partition``'s database, or ``None``."""
        raw = self._db(partition).get(key)
        if raw is not None:
            self.table.data._key_index[key] = partition  # lets partition-less reads (HTTP) find it directly
        return raw

    def get(self, key: bytes, partition: int) -> dict[str, Any] | None:
        """The value stored for ``key`` in ``partition``'s database, or ``None``."""
        raw = self.get_raw(key, partition)
        return None if raw is None else json.loads(raw)

    def get_any(self, key: bytes) -> dict[str, Any] | None:
        """The value for ``key`` from whichever local partition holds it (HTTP reads).

        Raises :class:`~stream.errors.InvalidRecord` (``bad_state``) when the stored bytes are not
        JSON: the changelog they were restored from is writable by any client.
        """
        try:
            return self.table.get(key)
        except Exception as e:  # Faust's codec error types vary with the serializer: any decode failure
            raise InvalidRecord("bad_state", f"stored user state does not decode: {str(e)[:100]}") from e

    def put(self, key: bytes, raw: bytes, partition: int, outbox: Outbox, new: bool = False) -> None:
        """Store the encoded value ``raw`` and queue its changelog record in ``outbox``;
        ``new``: the key was not in the database before."""
        self._db(partition).put(key, raw, write_opt=self._write_options)
        self.table.data._key_index[key] = partition
        outbox.add(self.changelog, partition, key, raw)
        if new and partition in self._key_counts:
            self._key_counts[partition] += 1

    def scan(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, stored bytes)`` of ``partition``'s database (not Faust's offset record)."""
        offset_key = self.table.data.offset_key
        for key, raw in self._db(partition).items():
            if key != offset_key:
                yield key, raw

    def key_count(self, partitions: list[int]) -> int:
        """How many keys the databases of ``partitions`` hold.

        A partition's database is scanned once (on first use after :meth:`forget_key_counts`),
        then counted by :meth:`put`: scanning them all every few seconds stalled the event loop
        for some 90 ms per 5,000 users.
        """
        total = 0
        for partition in partitions:
            if partition not in self._key_counts:
                offset_key = self.table.data.offset_key
                self._key_counts[partition] = sum(1 for k in self._db(partition).keys() if k != offset_key)
            total += self._key_counts[partition]
        return total

    def forget_key_counts(self) -> None:
        """Scan again on next use: after a rebalance, recovery and standbys wrote keys put did not count."""
        self._key_counts.clear()

    def track(self, sent: list[SentBatch]) -> None:
        """Record, once the broker acknowledges them, which changelog offsets the databases hold."""
        changelog = self.changelog
        for batch in sent:
            if batch.topic == changelog:
                batch.future.add_done_callback(partial(self._on_changelog_sent, batch.partition, batch.count))

    def _on_changelog_sent(self, partition: int, count: int, fut: asyncio.Future) -> None:
        # What Faust's Collection._on_changelog_sent does, once per record batch: remember
        # which changelog offset the database holds, so a restart replays only what came after.
        if fut.cancelled() or fut.exception() is not None:
            return  # not persisted: a restart replays from the previous offset
        offset = fut.result().offset + count - 1
        store = self.table.data
        if self.app.in_transaction:
            self.app.tables.persist_offset_on_commit(store, TP(self.changelog, partition), offset)
            return
        try:
            self._db(partition).put(store.offset_key, str(offset).encode(), write_opt=self._write_options)
        except Exception as e:  # the partition moved away meanwhile: its next owner restores it
            log.debug("changelog offset not recorded partition=%d error=%r", partition, e)

    def flush(self) -> None:
        """Write every open partition database's memtable to disk (a clean stop keeps it all)."""
        for partition, db in list(getattr(self.table.data, "_dbs", {}).items()):
            try:
                db.flush()
            except Exception as e:
                log.warning("RocksDB flush failed partition=%s error=%r", partition, e)

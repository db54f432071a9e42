"""The user-state table adapter (stream.runtime.state_store) on real rocksdict databases, without Kafka."""

import asyncio
import time
from types import SimpleNamespace

import rocksdict

from stream.runtime.outbox import Outbox, SentBatch
from stream.runtime.state_store import PartitionedTable

OFFSET_KEY = b"__faust\0offset__"


class FakeData:
    """The parts of Faust's RocksDB store the adapter uses: one database per partition."""

    offset_key = OFFSET_KEY

    def __init__(self, root):
        self.root = root
        self._dbs = {}
        self._key_index = {}

    def _db_for_partition(self, partition):
        if partition not in self._dbs:
            self._dbs[partition] = rocksdict.Rdict(str(self.root / f"p{partition}"),
                                                   options=rocksdict.Options(raw_mode=True))
        return self._dbs[partition]


def table(tmp_path, wal=False):
    fake = SimpleNamespace(data=FakeData(tmp_path), changelog_topic=SimpleNamespace(get_topic_name=lambda: "cl"))
    app = SimpleNamespace(in_transaction=False)
    return PartitionedTable(app, fake, write_ahead_log=wal)


def outbox():
    return Outbox(lambda partition: (None, None))


def test_put_stores_locally_and_queues_the_changelog_record(tmp_path):
    states = table(tmp_path)
    box = outbox()
    states.put(b"u1", b'{"history":[]}', 3, box, new=True)
    assert states.get(b"u1", 3) == {"history": []} and states.get(b"u1", 2) is None
    assert states.table.data._key_index[b"u1"] == 3
    assert box._records == {("cl", 3): [(b"u1", b'{"history":[]}')]}
    assert states._write_options is not None and not states.write_ahead_log


def test_key_count_scans_once_then_counts_new_keys(tmp_path):
    states = table(tmp_path)
    db = states.table.data._db_for_partition(0)
    for i in range(5):
        db.put(b"user%d" % i, b"{}")
    db.put(OFFSET_KEY, b"41")  # Faust's bookkeeping key is not a user
    assert states.key_count([0, 1]) == 5
    db.put(b"behind-its-back", b"{}")  # not through put: not counted until a rescan
    states.put(b"user0", b"{}", 0, outbox(), new=False)
    states.put(b"fresh", b"{}", 0, outbox(), new=True)
    states.put(b"other", b"{}", 1, outbox(), new=True)
    assert states.key_count([0, 1]) == 7
    states.forget_key_counts()
    assert states.key_count([0, 1]) == 8 and states.key_count([1]) == 1


def test_changelog_offset_recorded_is_the_last_record_of_the_batch(tmp_path):
    states = table(tmp_path)

    async def scenario():
        sent_future = asyncio.get_running_loop().create_future()
        states.track([SentBatch("cl", 2, 4, sent_future), SentBatch("recommendations", 2, 4, sent_future)])
        sent_future.set_result(SimpleNamespace(offset=100))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert states.table.data._db_for_partition(2).get(OFFSET_KEY) == b"103"


def test_without_the_wal_a_flush_keeps_the_writes(tmp_path):
    states = table(tmp_path)
    states.put(b"u", b"{}", 0, outbox(), new=True)
    states.flush()
    states.table.data._dbs[0].close()
    reopened = rocksdict.Rdict(str(tmp_path / "p0"), options=rocksdict.Options(raw_mode=True))
    assert reopened.get(b"u") == b"{}"
    reopened.close()


def test_faust_never_records_a_changelog_offset_handed_over_under_exactly_once():
    """The Faust defect stream/runtime/README.md calls "exactly_once never records the changelog
    offset", on the real TableManager: it keeps the pending offset by changelog partition and looks
    it up by the committed source partitions. When this fails Faust has fixed it: see the README."""
    import faust
    from faust.types import TP

    async def run():
        app = faust.App("on-commit", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
        written = []
        store = SimpleNamespace(set_persisted_offset=lambda tp, offset: written.append((tp, offset)))
        changelog = TP("on-commit-user-state-changelog", 0)
        app.tables.persist_offset_on_commit(store, changelog, 41)  # PartitionedTable._on_changelog_sent
        app.tables.on_commit({TP("events", 0): 100})  # what Consumer._commit_offsets passes
        missed = list(written)
        app.tables.on_commit({changelog: 1})  # only a changelog partition would find it
        return missed, written

    missed, written = asyncio.run(run())
    assert missed == []
    assert written == [(TP("on-commit-user-state-changelog", 0), 41)]


def test_partition_databases_share_one_block_cache_and_one_memtable_budget(tmp_path):
    """On a real Faust RocksDB store: every partition database it opens after share_memory uses the
    same cache and write-buffer manager, whose usage counts the writes of all of them."""
    import faust

    async def run():
        app = faust.App("shared-memory", broker="kafka://127.0.0.1:1", store="rocksdb://",
                        datadir=str(tmp_path / "faust"), autodiscover=False)
        user_state = app.Table("t", partitions=4, key_type=bytes)
        states = PartitionedTable(app, user_state)
        states.share_memory(cache_bytes=32 * 2**20, memtable_bytes=4 * 2**20)
        dbs = [states._db(p) for p in range(4)]
        for p, db in enumerate(dbs):
            for i in range(8000):
                db[f"u{i}".encode()] = bytes([p]) * 1500  # 12 MB a partition, 48 MB in all
        written_usage = states.shared_write_buffers.get_usage()
        # The manager never stalls writes, so on a loaded machine its background flushes may lag
        # the writes; once they catch up, usage is near the budget (without it, the 48 MB would
        # stay in memtables: each database's own would hold its 12 MB).
        deadline = time.monotonic() + 60
        settled = states.shared_write_buffers.get_usage()
        while settled > 12 * 2**20 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            settled = states.shared_write_buffers.get_usage()
        for db in dbs:
            db.flush()
        for db in dbs:
            for i in range(0, 8000, 7):
                assert db[f"u{i}".encode()][:1] in (b"\0", b"\1", b"\2", b"\3")
        cached = states.shared_cache.get_usage()
        for db in dbs:
            db.close()
        return written_usage, settled, cached

    written_usage, settled, cached = asyncio.run(run())
    assert written_usage > 2 * 2**20  # the one manager counts the writes of every partition
    assert settled <= 12 * 2**20  # 48 MB written: early flushes brought it near the 4 MiB budget
    assert cached > 0  # reads of every partition went through the one shared cache

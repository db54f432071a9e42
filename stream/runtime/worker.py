"""The streaming worker: Faust agent, RocksDB user-state table, catalogue and model feeds.

For each micro-batch of ``events`` records: validate, apply to the user's
state (``user-state`` table, RocksDB with a changelog topic), compute user
vectors, search the index, publish one recommendation per touched user to
``recommendations`` and every rejected record to ``dead-letter``. Outputs go to
the input record's partition number (the topics share partition counts), so
with ``exactly_once`` they join the same Kafka transaction as the state
changes and the consumed offsets.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import faiss
import faust
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from stream.core.announcements import ModelAnnouncement
from stream.core.codec import check_id
from stream.core.dead_letters import DeadLetter
from stream.core.experiments import (Experiment, InvalidExperiment, add_counts, counts_key, decode_counts,
                                     encode_counts, parse_model_update, promotion)
from stream.core.items import InvalidItem, parse_item
from stream.core.pacing import SlicePacer
from stream.core.records import Record
from stream.core.state import UserState, embedding_of, loads, max_state_bytes
from stream.core.topics import (DEAD_LETTER, EVENTS, EXPERIMENT_COUNTS_TABLE, ITEMS, MODEL_UPDATES,
                               RECOMMENDATIONS, TRENDING, USER_STATE_TABLE)
from stream.core.trending import SharedTrending, encode_snapshot, head, parse_snapshot
from stream.errors import ConfigError, InvalidRecord
from stream.kafka.feeds import follow_topic
from stream.kafka.reader import read_range
from stream.runtime import local_state, metrics
from stream.runtime.batch_feed import BatchFeed
from stream.runtime.holes import HoleFiller
from stream.runtime.metrics import OUTPUT_LABEL, STATE_LABEL
from stream.runtime.outbox import Outbox
from stream.runtime.state_store import PartitionedTable
from stream.serving.model import ModelHolder, ServingModel, bootstrap_model
from stream.serving.processor import BatchProcessor, BatchResult, UserUpdate
from stream.serving.users_index import UsersByVersion
from stream.settings import Settings

log = logging.getLogger(__name__)

# The largest user vector the state bound assumes (the towers' dim; 64 by default).
MAX_USER_DIM = 2048


def freeze_heap() -> None:
    """Collect garbage once, then exempt every surviving object from later collections.

    The worker's long-lived heap (PyTorch, FAISS, Faust, the catalogue and model: some
    270,000 objects) made each full collection take ~100 ms, and the allocations of a busy
    stream trigger them every few seconds: some 40% of processing time. Frozen, they are
    never traversed again; a model swap thaws, collects and refreezes once.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def limit_thread_pools() -> None:
    """One thread for every BLAS and OpenMP pool loaded so far (``streamrec worker`` also sets
    their environment variables before any loads; this covers other entry points and
    libraries a model loads later).

    Idle BLAS threads spin: on 2 cores they took a core from the broker and the clients,
    and freshness at 1,000 events/s went from p99 42 ms to 150 ms and more.
    """
    threadpool_limits(1)


def limit_worker_thread_pools() -> None:
    """One thread for PyTorch's intra-op pool, FAISS' OpenMP and every BLAS pool: what
    ``streamrec worker`` applies before it builds the :class:`Worker` (not at import).

    Small per-batch forward passes and searches run on the event loop: more threads only
    oversubscribe the cores that Kafka I/O also needs (spinning OpenMP threads on a busy
    2-core box cost 10x per search).
    """
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    limit_thread_pools()


def catalog_chunks(items: list[bytes], size: int = 20_000) -> Iterator[list[dict[str, Any]]]:
    """The catalogue's records (canonical JSON, see ``Worker.catalog``) decoded ``size`` at a time."""
    for start in range(0, len(items), size):
        yield [loads(raw) for raw in items[start:start + size]]


@dataclass
class SimilarUsers:
    """``GET /users/{id}/similar``'s answer: users and scores, best first, and how many workers
    answered (``missing``: the URLs of those that did not)."""

    users: list[tuple[str, float]]
    workers: int
    missing: list[str]


class Worker:
    """Registers the agent, table, feeds and timers of the worker on a Faust app."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        metrics.declare_label_values()
        self.holder = ModelHolder()
        self.trending = SharedTrending(settings.trending_half_life_s)
        # Under exactly_once a redelivered event's state and recommendation are already in
        # committed transactions (local state of an unclean stop is dropped, stream.runtime.local_state).
        self.processor = BatchProcessor(self.holder, self.trending, settings.top_k, settings.max_history,
                                        rewrite_redelivered=settings.processing_guarantee != "exactly_once")
        most = settings.batch_max_events  # may be below the pacers' usual minimums (it is >= 1)
        self.pacer = SlicePacer(settings.batch_slice_ms / 1000.0, minimum=min(16, most), maximum=most)
        self.apply_pacer = SlicePacer(settings.batch_slice_ms / 1000.0, minimum=min(64, most), maximum=most)
        self.catalog_ready = asyncio.Event()
        self.users = UsersByVersion(settings.index_config())  # STREAMREC_INDEX_*; refuses a bad one at start-up
        # Every live item record, by item id, as its canonical JSON bytes: a version loads with the
        # whole catalogue, and at 10^6 items dicts took ~1.2 KB each against ~0.3 KB of bytes.
        self.catalog: dict[str, bytes] = {}
        self._loading: str | None = None
        # Room under max.message.bytes for the key and the record batch's header.
        self.max_output_bytes = settings.topic_max_message_bytes - 2048
        bound = max_state_bytes(settings.max_history, settings.top_k, MAX_USER_DIM)
        if bound > self.max_output_bytes:
            raise ConfigError(f"a user state may take {bound:,} bytes (STREAMREC_MAX_HISTORY={settings.max_history}, "
                              f"STREAMREC_TOP_K={settings.top_k}, vectors up to {MAX_USER_DIM} floats), more than "
                              f"STREAMREC_TOPIC_MAX_MESSAGE_BYTES={settings.topic_max_message_bytes:,} allows: "
                              "lower the history or raise the topics' limit")
        self._deleted: set[str] = set()  # items taken down (tombstones): never served by any version
        # Catalogue changes (upserts, removed ids) seen while a version loads, applied to it before it serves.
        self._catalog_changes: list[tuple[list[dict[str, Any]], list[str]]] = []
        # Model versions (see "model versions" below): the catalogue read, the start-up walk over
        # model-updates done, the announcements kept until then, the last offset handled per partition.
        self._catalog_read = asyncio.Event()
        self._versions_walked = asyncio.Event()
        self._startup_announcements: dict[str, ModelAnnouncement] | None = {}
        self._startup_experiment: Experiment | None = None  # the last experiment record of the walk
        self._updates_done: dict[int, int] = {}

        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.events_topic = app.topic(settings.topic(EVENTS), partitions=settings.topic_partitions, **raw)
        self.recommendations_topic = app.topic(settings.topic(RECOMMENDATIONS),
                                               partitions=settings.topic_partitions, **raw)
        self.dead_letter_topic = app.topic(settings.topic(DEAD_LETTER), partitions=settings.topic_partitions, **raw)
        self.user_state = app.Table(
            USER_STATE_TABLE,
            partitions=settings.topic_partitions,
            # Raw UTF-8 keys (the app's default key serializer), as the producer sends
            # them: Faust's HTTP routing hashes the serialised key, which must land on
            # the event's partition. Values use the app's default, JSON.
            key_type=bytes,
            options={
                # Faust's default is a 2 GiB LRU block cache per partition database; the one it
                # creates for each is left unused and tiny (PartitionedTable.share_memory).
                "block_cache_size": 1024**2,
                "block_cache_compressed_size": 0,
                "write_buffer_size": settings.rocksdb_write_buffer_bytes,
            },
            help="Per-user history, embedding and counters (stream.core.state.UserState).",
        )
        self.states = PartitionedTable(app, self.user_state,
                                       write_ahead_log=settings.processing_guarantee == "exactly_once")
        # Each running experiment's online trials and hits per arm, per events partition: written with
        # the events they count (the same outbox, the same transaction), restored with the partition
        # wherever it moves; GET /experiments and `streamrec experiment status` sum its changelog.
        self.experiment_counts = app.Table(
            EXPERIMENT_COUNTS_TABLE, partitions=settings.topic_partitions, key_type=bytes,
            options={"block_cache_size": 1024**2, "block_cache_compressed_size": 0, "write_buffer_size": 1024**2},
            help="Online trials and hits per experiment arm (stream.core.experiments.encode_counts).",
        )
        self.counts = PartitionedTable(app, self.experiment_counts,
                                       write_ahead_log=settings.processing_guarantee == "exactly_once")
        # Every experiment seen on model-updates, by name, as last announced.
        self.experiments: dict[str, Experiment] = {}
        self._results_lock = asyncio.Lock()
        self._http: Any = None  # aiohttp.ClientSession to the other workers, made at the first fan-out
        # Partitions whose users' vectors are to be read back into the similar-users index (_load_users).
        self._users_to_load: set[int] = set()
        self._owned_partitions: set[int] = set()
        self._users_loader: asyncio.Future | None = None
        self._results_cache: tuple[float, list[dict[str, Any]] | None] = (0.0, None)
        self._holes: HoleFiller | None = None
        # The agent subscribes the group to the events topic (and co-partitions the table with
        # it); the records themselves reach _handle_records a fetch at a time (stream.runtime.batch_feed).
        self.feed = BatchFeed(app, self.events_topic.get_topic_name(), self._handle_records)
        app.agent(self.events_topic, name="process-events")(self._agent)
        app.task(self._follow_catalog)
        app.task(self._follow_model_updates)
        app.task(self._follow_trending)
        app.timer(interval=5.0)(self._report_gauges)
        app.timer(interval=settings.trending_publish_interval_s)(self._publish_trending)
        app.on_worker_init.connect(self._on_worker_init)
        app.on_partitions_assigned.connect(self._on_partitions_assigned)
        app.on_rebalance_complete.connect(self._on_rebalance_complete)
        app.task(self._undo_spinner_logging)

    # --- local state -------------------------------------------------------------
    def _on_worker_init(self, app: faust.App, **_: Any) -> None:
        """Before the tables open in a ``streamrec worker`` process: drop untrusted local state."""
        # Faust sets in_worker only in Worker.on_start, after this signal, and the consumer that
        # feed.install() creates caches app.in_transaction from it: left False here, an
        # exactly_once worker ran without any Kafka transaction (stream/runtime/README.md).
        app.in_worker = True
        self.feed.install()
        self.states.share_memory(self.settings.rocksdb_block_cache_bytes, self.settings.rocksdb_memtable_budget_bytes)
        self.counts.share_memory(4 * 1024**2, 4 * 1024**2)
        tabledir = Path(app.conf.tabledir)
        local_state.claim(tabledir, wipe_if_unclean=self.settings.processing_guarantee == "exactly_once")

        def release_if_clean() -> None:
            if app.crash_reason is None:
                self.states.flush()  # without the WAL, memtables are all a clean stop would lose
                self.counts.flush()
                local_state.release(tabledir)

        atexit.register(release_if_clean)

    async def _on_partitions_assigned(self, app: faust.App, assigned: Any, **_: Any) -> None:
        self.states.forget_key_counts()
        self.counts.forget_key_counts()
        events = self.events_topic.get_topic_name()
        owned = {tp.partition for tp in assigned if tp.topic == events}
        self.trending.assign(owned)
        # Users of partitions new to this worker are read back into the similar-users index after recovery.
        self._users_to_load = (self._users_to_load | (owned - self._owned_partitions)) & owned
        self._owned_partitions = owned
        forgotten = self.users.keep_partitions(owned)
        if forgotten:
            log.info("similar-users index forgot users of partitions given up count=%d", forgotten)

    async def _on_rebalance_complete(self, app: faust.App, **_: Any) -> None:
        """Recovery of the assigned partitions done: their users' vectors can be read back."""
        if self._users_to_load and (self._users_loader is None or self._users_loader.done()):
            self._users_loader = asyncio.ensure_future(self._load_users())

    async def _undo_spinner_logging(self) -> None:
        """Give the root logger back its configured level.

        At WARNING and above, Faust's worker drives a terminal spinner from a log handler and
        lowers the root logger to DEBUG for it, so every library's debug record (aiokafka logs
        each send) is built and handled: about a tenth of the worker's time at full load.
        """
        root = logging.getLogger()
        spinners = [h for h in root.handlers if type(h).__name__ == "SpinnerHandler"]
        for handler in spinners:
            root.removeHandler(handler)
        if spinners and root.handlers:
            root.setLevel(min(h.level for h in root.handlers) or logging.WARNING)

    # --- catalogue ---------------------------------------------------------------
    async def _follow_catalog(self) -> None:
        await follow_topic(self.settings, self.settings.topic(ITEMS), self._on_items,
                           on_caught_up=self._on_catalog_loaded)

    async def _on_items(self, records: list[Record]) -> None:
        """Apply catalogue records in order: upserts, tombstones (an item taken down); the rest is
        dead-lettered with its reason."""
        upserts: dict[str, dict[str, Any]] = {}
        removed: list[str] = []
        rejected: list[tuple[Record, str, str]] = []
        for record in records:
            try:
                if record.value is None:
                    item_id = check_id("item_id", (record.key or b"").decode("utf-8"), InvalidItem)
                    upserts.pop(item_id, None)
                    self.catalog.pop(item_id, None)
                    removed.append(item_id)
                    continue
                parsed = parse_item(record.value)
            except (InvalidRecord, UnicodeDecodeError) as e:
                reason, detail = (e.reason, e.detail) if isinstance(e, InvalidRecord) else ("bad_key", str(e))
                rejected.append((record, reason, f"catalogue record refused: {detail}"))
                continue
            upserts[parsed.item_id] = parsed.to_dict()
            # A copy of exact size: each bytes object orjson returns keeps its 4 KB working buffer
            # allocated (tracemalloc: ~4,097 bytes per object), 4.4 GB for a million items kept.
            self.catalog[parsed.item_id] = memoryview(parsed.encode()).tobytes()
            self._deleted.discard(parsed.item_id)
        self._deleted.update(removed)
        if rejected:
            await self._dead_letter_feed(ITEMS, rejected)
        if self._loading is not None:  # a version is loading: it gets these too before it serves
            self._catalog_changes.append((list(upserts.values()), removed))
        # The served version and, during an experiment, each arm's (the first model is built from
        # the whole catalogue once it is read).
        for model in self.holder.serving.models():
            self._apply_catalog(model, list(upserts.values()), removed)

    def _apply_catalog(self, model: ServingModel, upserts: list[dict[str, Any]], removed: list[str]) -> None:
        gone = [i for i in removed if i not in self.catalog]  # a tombstone followed by a new record stays
        for item_id in gone:
            self.trending.discard(item_id)
        dropped = model.remove_items(gone) if gone else 0
        added = model.add_items(upserts) if upserts else 0
        if (added or dropped) and model is self.holder.current:
            metrics.INDEX_ITEMS.set(len(model.positions))
            log.info("catalogue applied to the index added=%d removed=%d total=%d", added, dropped,
                     len(model.positions))

    async def _dead_letter_feed(self, topic: str, rejected: list[tuple[Record, str, str]]) -> None:
        """Send refused records of a feed (``items``, ``model-updates``) to the dead-letter topic.

        Feeds are read by every worker in full and replayed at each start, so such a dead letter
        may repeat: it names its topic, partition and offset, by which subscribers deduplicate.
        Never raises: a broker that refuses it leaves an error in the log, the feed goes on.
        """
        now_ms = int(time.time() * 1000)
        outbox = Outbox(self._plain_producer, self.settings.topic_max_message_bytes - 512)
        for record, reason, detail in rejected:
            log.warning("record refused topic=%s reason=%s detail=%s partition=%d offset=%d", record.topic,
                        reason, detail[:200], record.partition, record.offset)
            self._add_dead_letter(outbox, topic, record, reason, detail, now_ms)
        try:
            await self.app.producer.maybe_start()
            await asyncio.gather(*(batch.future for batch in await outbox.send()))
        except Exception as e:  # dead letters of a feed must never stop the feed
            log.error("dead letters not delivered topic=%s count=%d error=%r", topic, len(rejected), e)

    def _add_dead_letter(self, outbox: Outbox, topic: str, record: Record, reason: str, detail: str,
                         now_ms: int) -> None:
        """Queue ``record``'s dead letter in ``outbox`` and count it under ``topic`` (a logical name);
        its key and value are cut to ``STREAMREC_DEAD_LETTER_MAX_BYTES`` so it always fits."""
        metrics.RECORDS_REJECTED.labels(topic, reason).inc()
        limit = self.settings.dead_letter_max_bytes
        outbox.add(self.dead_letter_topic.get_topic_name(), record.partition % self.settings.topic_partitions,
                   record.key[:limit] if record.key else record.key,
                   DeadLetter.of(record, reason, detail, now_ms, limit).encode())

    async def send_events(self, events: list[Any]) -> list[Any]:
        """Write validated events (``stream.core.events.Event``) to ``events``, keyed by user, and wait
        for the broker's ``acks=all``: per event its record metadata or the exception that stopped it
        (``POST /events``). The producer is Faust's plain one, outside any transaction."""
        await self.app.producer.maybe_start()
        producer, _ = self._plain_producer(0)
        topic = self.events_topic.get_topic_name()
        futures = [await producer.send(topic, value=e.to_json_bytes(), key=e.user_id.encode()) for e in events]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    def _plain_producer(self, partition: int) -> tuple[Any, asyncio.Lock | None]:
        return self.app.producer._ensure_producer(), None  # outside any transaction: feeds commit nothing

    async def _on_catalog_loaded(self) -> None:
        self._catalog_read.set()
        await self._wait_for_first_version()  # a trained version that verifies serves from the first event on
        if self.holder.current is None:
            model = await asyncio.to_thread(self._bootstrap, list(self.catalog.values()))
            if self.holder.current is None:  # a walk past its wait may have served a version meanwhile
                self._serve(model)
        self.catalog_ready.set()

    # --- similar users ------------------------------------------------------------------
    USERS_LOAD_CHUNK = 5_000

    async def _load_users(self) -> None:
        """Read the vectors of every user of newly assigned partitions back from the user-state
        table into the similar-users index, once their recovery is done (Faust's
        ``on_rebalance_complete``): without this, a restarted worker, or one given a partition,
        found a user's neighbours only among users with an event since. The table is read in a
        thread; users an event upserted meanwhile keep their fresher vector
        (:meth:`UserVectors.upsert_missing`). A partition whose read a rebalance cut short is read
        again after the next one, if still owned."""
        while self._users_to_load:
            partition = self._users_to_load.pop()
            if partition not in self.assigned_partitions():
                continue
            loaded, started = 0, time.perf_counter()
            try:
                for version, users, vectors in await asyncio.to_thread(self._read_vectors, partition):
                    if partition in self.assigned_partitions():
                        loaded += self.users.upsert_missing(version, users, vectors, partition)
            except Exception as e:  # the partition's database closed under the read (a rebalance)
                log.info("similar-users index not refilled partition=%d error=%r", partition, e)
                self._owned_partitions.discard(partition)  # new again at the next assignment that has it
                continue
            log.info("similar-users index refilled from the table partition=%d users=%d seconds=%.2f", partition,
                     loaded, time.perf_counter() - started)

    def _read_vectors(self, partition: int) -> list[tuple[str, list[str], np.ndarray]]:
        """Every (model version, user ids, their vectors) of ``partition``'s database, a chunk per
        version and dimension; states that do not decode are skipped (the batch that next touches
        the user dead-letters them)."""
        chunks: list[tuple[str, list[str], np.ndarray]] = []
        found: list[tuple[str, str, np.ndarray]] = []

        def cut() -> None:
            groups: dict[tuple[str, int], list[int]] = {}
            for row, (version, _, vector) in enumerate(found):
                groups.setdefault((version, vector.shape[0]), []).append(row)
            for (version, _), rows in groups.items():
                chunks.append((version, [found[r][1] for r in rows], np.stack([found[r][2] for r in rows])))
            found.clear()

        for key, raw in self.states.scan(partition):
            try:
                vector, version = embedding_of(raw)
                user = bytes(key).decode("utf-8")
            except (InvalidRecord, UnicodeDecodeError):
                continue
            if vector is not None and version is not None:
                found.append((version, user, vector))
                if len(found) >= self.USERS_LOAD_CHUNK:
                    cut()
        if found:
            cut()
        return chunks

    # --- trending over all partitions --------------------------------------------------
    async def _follow_trending(self) -> None:
        await follow_topic(self.settings, self.settings.topic(TRENDING), self._on_trending, from_beginning=True)

    async def _on_trending(self, records: list[Record]) -> None:
        """Other partitions' trending counts (stream.core.trending); refused records are dead-lettered."""
        snapshots, refused = [], []
        for record in records:
            try:
                snapshots.append(parse_snapshot(record.value, self.settings.topic_partitions))
            except InvalidRecord as e:
                refused.append((record, e.reason, f"trending record refused: {e.detail}"))
        if refused:
            await self._dead_letter_feed(TRENDING, refused)
        self.trending.receive(snapshots)

    async def _publish_trending(self) -> None:
        """Publish the counts of every owned partition counted since the last time (one record each)."""
        counts = self.trending.changed_counts()
        if not counts:
            return
        snapshots = await asyncio.to_thread(lambda: [(p, ref, head(scores)) for p, ref, scores in counts])
        outbox = Outbox(self._plain_producer, self.settings.topic_max_message_bytes - 512)
        for partition, ref_ms, scores in snapshots:
            outbox.add(self.settings.topic(TRENDING), 0, str(partition).encode(),
                       encode_snapshot(partition, ref_ms, scores, self.trending.half_life_s))
        try:
            await self.app.producer.maybe_start()
            await asyncio.gather(*(batch.future for batch in await outbox.send()))
        except Exception as e:  # trending is best effort: the next interval sends the counts again
            self.trending.mark_changed(p for p, _, _ in snapshots)
            log.warning("trending counts not published partitions=%d error=%r", len(snapshots), e)

    # --- model versions ---------------------------------------------------------------
    # The worker reads model-updates from the beginning (one partition, small). At start-up it keeps
    # every valid announcement until the end seen then, and serves the newest one that loads and
    # verifies, walking back past the ones that do not; the bootstrap model serves only when none
    # does. Afterwards each fetch is handled the same way, newest first, down to the version served.
    # Every refusal, of a record or of a version, is counted (model_swaps_total{result="rejected"})
    # and logged with its reason; the version being served keeps serving.
    VERSIONS_WAIT_S = 60.0  # how long the first events wait for the start-up walk before the bootstrap model

    async def _follow_model_updates(self) -> None:
        await self._catalog_read.wait()  # a version loads with the whole catalogue
        await follow_topic(self.settings, self.settings.topic(MODEL_UPDATES), self._on_announcements,
                           on_caught_up=self._on_updates_caught_up, from_beginning=True)

    async def _wait_for_first_version(self) -> None:
        try:
            await asyncio.wait_for(self._versions_walked.wait(), self.VERSIONS_WAIT_S)
        except TimeoutError:  # model-updates unreachable or the walk slow: serve now, swap when it ends
            log.warning("model-updates not read within %.0fs: serving the bootstrap model meanwhile",
                        self.VERSIONS_WAIT_S)

    async def _on_announcements(self, records: list[Record]) -> None:
        """Handle model-updates records in order: version announcements and experiment records
        (:func:`stream.core.experiments.parse_model_update`); refused ones are dead-lettered."""
        refused: list[tuple[Record, str, str]] = []
        updates: list[ModelAnnouncement | Experiment] = []
        for record in records:
            if record.offset <= self._updates_done.get(record.partition, -1):
                continue  # replayed after the feed reconnected: handled already
            self._updates_done[record.partition] = record.offset
            try:
                updates.append(parse_model_update(record.value))
            except InvalidRecord as e:
                metrics.MODEL_SWAPS.labels("rejected").inc()
                log.error("model-updates record ignored reason=%s detail=%s offset=%d", e.reason, e.detail[:200],
                          record.offset)
                refused.append((record, e.reason, f"model-updates record refused: {e.detail}"))
        if refused:
            await self._dead_letter_feed(MODEL_UPDATES, refused)
        if self._startup_announcements is not None:  # walked once the start-up end is reached
            for update in updates:  # by version, in the order last announced; only the name is needed
                if isinstance(update, Experiment):
                    self.experiments[update.name] = self._startup_experiment = update
                    update = promotion(update)  # a stop that promoted an arm announced its version
                    if update is None:
                        continue
                self._startup_announcements.pop(update.version, None)
                self._startup_announcements[update.version] = ModelAnnouncement(update.version, update.created_ms)
            return
        run: list[ModelAnnouncement] = []  # consecutive announcements are walked together, newest first
        for update in updates:
            if isinstance(update, Experiment):
                await self._serve_newest(run)
                run = []
                self.experiments[update.name] = update
                await self._apply_experiment(update)
                promoted = promotion(update)
                if promoted is not None:  # served already, unless this worker had refused the experiment
                    run.append(promoted)
            else:
                run.append(update)
        await self._serve_newest(run)

    async def _on_updates_caught_up(self) -> None:
        kept, self._startup_announcements = self._startup_announcements or {}, None
        log.info("model-updates read versions=%d experiments=%d", len(kept), len(self.experiments))
        try:
            await self._serve_newest(list(kept.values()))
            if self._startup_experiment is not None and self._startup_experiment.running:
                await self._apply_experiment(self._startup_experiment)
        finally:
            self._startup_experiment = None
            self._versions_walked.set()

    async def _apply_experiment(self, experiment: Experiment) -> None:
        """Serve ``experiment`` (every arm's version loaded and verified first), or stop it.

        The last experiment record is the one in force: a new one replaces the running one. An
        experiment whose versions do not all load is refused (logged, counted) and what was served
        goes on. Stopping with a promoted arm serves that arm's model at once; the promoted
        version's announcement that follows the stop record then finds it served already.
        """
        current = self.holder.experiment
        if not experiment.running:
            if current is None or current.name != experiment.name:
                return
            promoted = self.holder.serving.arms.get(experiment.promoted) if experiment.promoted else None
            self.holder.stop_experiment()
            if promoted is not None:
                self._serve(promoted)
            metrics.EXPERIMENT_CHANGES.labels("stopped").inc()
            return
        if current == experiment:
            return
        loaded = {m.model_version: m for m in self.holder.serving.models()}
        for version in experiment.versions():
            if version not in loaded:
                model = await self._try_version(ModelAnnouncement(version, 0))
                if model is None:
                    metrics.EXPERIMENT_CHANGES.labels("rejected").inc()
                    log.error("experiment refused name=%s: version %s does not load", experiment.name, version)
                    return
                loaded[version] = model
        self.holder.start_experiment(experiment, loaded)
        metrics.EXPERIMENT_CHANGES.labels("started").inc()
        freeze_heap()
        limit_thread_pools()

    async def _serve_newest(self, announcements: list[ModelAnnouncement]) -> None:
        """Serve the newest of ``announcements`` (topic order) that loads and verifies; stop at the
        version being served (nothing newer verified). Each version is tried once per call."""
        tried: set[str] = set()
        for announcement in reversed(announcements):
            version = announcement.version
            current = self.holder.current
            serving = current.model_version if current is not None else None
            del current  # a reference kept here would freeze the previous version after the swap
            if version == serving:
                return
            if version in tried or version == self._loading:
                continue
            tried.add(version)
            model = await self._try_version(announcement)
            if model is not None:
                self._serve(model)
                return

    async def _try_version(self, announcement: ModelAnnouncement) -> ServingModel | None:
        """The announced version loaded and verified, with the catalogue as it is when it is ready;
        ``None`` (counted and logged with its reason) when it is refused."""
        from index import VectorIndexError
        from models.artifacts import ArtifactError

        version = announcement.version
        self._loading = version
        self._catalog_changes.clear()
        items, deleted = list(self.catalog.values()), set(self._deleted)  # snapshot: the thread never iterates them
        try:
            model = await asyncio.to_thread(self._load_version, announcement, items, deleted)
            for upserts, removed in self._catalog_changes:  # what the catalogue did meanwhile
                self._apply_catalog(model, upserts, removed)
        except Exception as e:  # a bad version must never stop serving the current one
            reason = (e.reason if isinstance(e, ArtifactError) else
                      "index" if isinstance(e, VectorIndexError) else "load_error")
            metrics.MODEL_SWAPS.labels("rejected").inc()
            log.error("model version rejected version=%s reason=%s error=%s", version, reason, str(e)[:500])
            return None
        finally:
            self._loading = None
            self._catalog_changes.clear()
        return model

    def _load_version(self, announcement: ModelAnnouncement, items: list[bytes],
                      deleted: set[str]) -> ServingModel:
        """Load and verify an announced version in a thread, with ``items`` added and ``deleted`` taken down.

        Only ``STREAMREC_ARTIFACTS_DIR/<version>`` is ever read (stream.serving.model.model_from_artifact,
        models.artifacts.load_version); the announcement's ``path`` is information only.
        """
        from stream.serving.model import model_from_artifact

        version = announcement.version
        key = self.settings.artifact_key
        started = time.perf_counter()
        model = model_from_artifact(self.settings.artifacts_dir, version,
                                    key=key.get_secret_value().encode() if key is not None else None,
                                    index_config=self.settings.index_config())
        gone = [item_id for item_id in deleted if model.has_item(item_id)]
        if gone:
            model.remove_items(gone)
        model.add_items(catalog_chunks(items), chunked=True)
        log.info("model version loaded version=%s signed=%s items=%d seconds=%.2f", version,
                 "checked" if key is not None else "unchecked", len(model.positions), time.perf_counter() - started)
        return model

    def _bootstrap(self, items: list[bytes]) -> ServingModel:
        """The ``content-v0`` version over ``items`` (a snapshot of the catalogue), built in a thread."""
        model = bootstrap_model([], index_config=self.settings.index_config())
        model.add_items(catalog_chunks(items), chunked=True)
        return model

    def _serve(self, model: ServingModel) -> None:
        first = self.holder.swap(model) is None  # the previous version is let go here ...
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels(model.model_version, model.index_version).set(1)
        metrics.INDEX_ITEMS.set(len(model.positions))  # items taken down are not in the index
        metrics.MODEL_SWAPS.labels("initial" if first else "ok").inc()
        freeze_heap()  # ... so this collects it rather than freezing it
        limit_thread_pools()  # a model may load libraries with pools of their own

    # --- the agent ---------------------------------------------------------------
    async def _agent(self, stream: faust.StreamT) -> Any:
        """Only reached when the batch feed is not installed (the app run without ``streamrec worker``)."""
        async for events in stream.take_events(self.settings.batch_max_events, within=0.005):
            log.warning("events reached the Faust agent: the batch feed is not installed")
            records = [Record(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                                e.message.value, int(e.message.timestamp * 1000)) for e in events]
            _, produced = await self._handle_records(records)
            await asyncio.gather(*produced)  # Faust acknowledges the events after this returns

    async def _handle_records(self, records: list[Record]) -> tuple[list[Record], list[asyncio.Future]]:
        """Process one fetched batch; returns the records processed (skipped ones refetched
        included) and the producer futures of everything it published.

        Every event of the batch is applied first, in slices of records; then the touched users get
        their recommendations in slices of users; each slice takes about ``batch_slice_ms``
        (:class:`SlicePacer`, sized by the measured cost per record or user), with the event loop
        let run between slices, so HTTP requests and the consumer's fetches wait for one slice,
        not for the batch. Each recommendation slice's states and recommendations are sent as
        soon as it is done.
        """
        await self.catalog_ready.wait()
        records, refetched = await self.holes.fill(records)
        metrics.EVENTS_REFETCHED.inc(len(refetched))
        metrics.EVENTS_CONSUMED.inc(len(records))
        metrics.BATCH_SIZE.observe(len(records))
        outbox = self._batch_outbox()
        new_users: set[str] = set()
        bad_states: list[tuple[Record, str, str]] = []

        def load_state(user_id: str, record: Record) -> UserState:
            stored = self.states.get_raw(user_id.encode(), record.partition)
            if stored is None:
                new_users.add(user_id)
            try:
                return UserState.from_bytes(stored)
            except InvalidRecord as e:  # written to the changelog by another client: start the user afresh
                bad_states.append((Record(self.states.changelog, record.partition, -1, user_id.encode(),
                                          bytes(stored), now_ms), e.reason, e.detail))
                return UserState()

        now_ms = int(time.time() * 1000)
        result, start = None, 0
        while start < len(records) or result is None:  # applied in slices too, the loop let run between
            part = records[start:start + self.apply_pacer.size()]
            began = time.perf_counter()
            result = self.processor.apply(part, load_state, now_ms=now_ms, into=result)
            self.apply_pacer.observe(len(part), time.perf_counter() - began)
            start += len(part)
            if start < len(records):
                await asyncio.sleep(0)
        for record, reason, detail in result.dead_letters:
            metrics.EVENTS_REJECTED.labels(reason).inc()
            log.debug("dead letter reason=%s partition=%d offset=%d", reason, record.partition, record.offset)
            self._add_dead_letter(outbox, EVENTS, record, reason, detail, now_ms)
        for record, reason, detail in bad_states:
            self._add_dead_letter(outbox, STATE_LABEL, record, reason, detail, now_ms)
        if result.experiment is not None and result.arm_counts:
            self._count_arms(outbox, result, now_ms)
        produced: list[asyncio.Future] = []
        users = list(result.updates)
        start = 0
        while True:
            part = users[start:start + self.pacer.size()]
            start += len(part)
            began = time.perf_counter()
            self.processor.recommend_updates(result, part, now_ms)
            published = self._write_updates(outbox, result, part, new_users, now_ms)
            self.pacer.observe(len(part), time.perf_counter() - began)
            sent = await outbox.send()
            self.states.track(sent)
            self.counts.track(sent)
            produced.extend(b.future for b in sent)
            now = time.time()
            metrics.RECOMMENDATIONS_PUBLISHED.inc(len(published))
            for update in published:
                metrics.FRESHNESS.observe(max(0.0, now - update.event.timestamp_ms / 1000.0))
                metrics.INGEST_LATENCY.observe(max(0.0, now - update.record.timestamp_ms / 1000.0))
            if start >= len(users):
                break
            outbox = self._batch_outbox()
            await asyncio.sleep(0)  # HTTP requests and fetches in, between slices
        metrics.EVENTS_APPLIED.inc(result.applied)
        metrics.EVENTS_DUPLICATE.inc(result.duplicates)
        metrics.ONLINE_TRIALS.inc(result.online_trials)
        metrics.ONLINE_HITS.inc(result.online_hits)
        if result.updates:
            metrics.RETRIEVAL_LATENCY.observe(result.retrieval_seconds)
        return records, produced

    def _count_arms(self, outbox: Outbox, result: BatchResult, now_ms: int) -> None:
        """Add the batch's online trials and hits by arm to each partition's experiment counts."""
        experiment = result.experiment
        assert experiment is not None
        key = counts_key(experiment)
        for partition, (trials, hits) in result.partition_counts().items():
            raw = self.counts.get_raw(key, partition)
            try:
                counts = decode_counts(raw) if raw is not None else {}
            except InvalidExperiment as e:  # written to the changelog by another client: count afresh
                self._add_dead_letter(outbox, STATE_LABEL, Record(self.counts.changelog, partition, -1, key,
                                                                  bytes(raw), now_ms), e.reason, e.detail, now_ms)
                counts = {}
            self.counts.put(key, encode_counts(add_counts(counts, trials, hits)), partition, outbox,
                            new=raw is None)
            for arm, n in trials.items():
                metrics.EXPERIMENT_TRIALS.labels(experiment.name, arm).inc(n)
                metrics.EXPERIMENT_HITS.labels(experiment.name, arm).inc(hits.get(arm, 0))

    def _batch_outbox(self) -> Outbox:
        return Outbox(self._producer_for, self.settings.topic_max_message_bytes - 512)

    def _write_updates(self, outbox: Outbox, result: BatchResult, users: list[str], new_users: set[str],
                       now_ms: int) -> list[UserUpdate]:
        """Store ``users``' new states and queue their recommendations in ``outbox``; returns the
        updates whose recommendation was queued."""
        recommendations_topic = self.recommendations_topic.get_topic_name()
        published = []
        limit = self.max_output_bytes
        for user_id in users:
            update = result.updates[user_id]
            key = user_id.encode()
            state = update.state.to_bytes()
            if len(state) > limit:  # bounded at start-up (max_state_bytes): a guard, not a path
                self._add_dead_letter(outbox, OUTPUT_LABEL, update.record, "output_too_large",
                                      f"user state of {len(state)} bytes exceeds {limit}: not stored", now_ms)
                continue
            self.states.put(key, state, update.record.partition, outbox, new=user_id in new_users)
            if update.recommendation is not None:
                update.recommendation.published_ms = int(time.time() * 1000)
                value = update.recommendation.encode()
                if len(value) > limit:
                    self._add_dead_letter(outbox, OUTPUT_LABEL, update.record, "output_too_large",
                                          f"recommendation of {len(value)} bytes exceeds {limit}: not published",
                                          now_ms)
                    continue
                outbox.add(recommendations_topic, update.record.partition, key, value)
                published.append(update)
        by_version: dict[str, list[tuple[str, UserUpdate]]] = {}
        for u in users:
            state = result.updates[u].state
            if state.embedding is not None and state.model_version is not None:
                by_version.setdefault(state.model_version, []).append((u, result.updates[u]))
        for version, with_vectors in by_version.items():  # an experiment's arms: one index each
            self.users.upsert(version, [u for u, _ in with_vectors],
                              np.stack([up.state.embedding for _, up in with_vectors]),
                              [up.record.partition for _, up in with_vectors])
        return published

    def _producer_for(self, partition: int) -> tuple[Any, asyncio.Lock | None]:
        """The aiokafka producer (and Faust's lock for it) that output of ``partition``'s events goes through.

        Under ``exactly_once``: the transactional producer Faust's transaction manager uses for
        the events partition and its changelog, so outputs commit with the consumed offsets.
        Not Faust's ``topic.send``: Faust picks a transaction only for topics its consumer
        subscribes to, so it sent ``recommendations`` and ``dead-letter`` outside any
        transaction and a crash published them again.
        """
        producer = self.app.producer
        if self.app.in_transaction:
            group = self.app.assignor.group_for_topic(self.events_topic.get_topic_name())
            transactional_id = f"{self.app.conf.id}-{group}-{partition}"
            return producer._transaction_producers[transactional_id], producer._trn_locks[transactional_id]
        return producer._ensure_producer(), None

    @property
    def holes(self) -> HoleFiller:
        if self._holes is None:  # the consumer exists once the app runs
            self._holes = HoleFiller(self.app.consumer, self.events_topic.get_topic_name(), self._read_events)
        return self._holes

    async def _read_events(self, partition: int, start: int, stop: int) -> list[Record]:
        return await read_range(self.settings, self.events_topic.get_topic_name(),
                                start={partition: start}, stop={partition: stop})

    EXPERIMENT_RESULTS_TTL_S = 2.0  # GET /experiments answers from results this fresh at most

    async def experiment_results(self) -> list[dict[str, Any]]:
        """Every experiment on model-updates with its results over all workers
        (:func:`stream.kafka.experiments.all_results`), read at most once per
        :attr:`EXPERIMENT_RESULTS_TTL_S` however many requests ask: each read opens Kafka clients."""
        from stream.kafka.experiments import all_results

        async with self._results_lock:
            cached_at, cached = self._results_cache
            if cached is None or time.monotonic() - cached_at > self.EXPERIMENT_RESULTS_TTL_S:
                cached = await all_results(self.settings)
                self._results_cache = (time.monotonic(), cached)
            return cached

    def assigned_partitions(self) -> list[int]:
        """The events-topic partitions this worker owns now."""
        name = self.events_topic.get_topic_name()
        return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == name)

    def state_of(self, user_id: str) -> UserState | None:
        """``user_id``'s stored state on this worker, ``None`` when it has none; raises
        :class:`~stream.errors.InvalidRecord` (``bad_state``) when what is stored is not a state."""
        raw = self.states.get_any(user_id.encode())
        return None if raw is None else UserState.from_json(raw)

    PEER_TIMEOUT_S = 2.0  # how long GET /users/{id}/similar waits for each other worker

    async def similar_users(self, user_id: str, k: int, authorization: str | None = None) -> SimilarUsers | None:
        """The ``k`` users nearest to ``user_id``'s current embedding over every worker, among users
        whose vector the same model version computed; ``None`` when the user has none yet.

        Scatter-gather: this worker (the user's owner) searches its own users and asks every
        other worker of the group for the users nearest to the same vector (``POST
        /users/nearest``, with the caller's ``Authorization``), then merges. A worker that does
        not answer within :attr:`PEER_TIMEOUT_S` leaves the answer partial, and says so.
        """
        try:
            state = self.state_of(user_id) or UserState()
        except InvalidRecord as e:  # a stored state another client wrote: no neighbours
            log.warning("stored user state unreadable user=%r error=%s", user_id[:64], e)
            return None
        if state.embedding is None:
            return None
        vector = np.asarray(state.embedding, dtype=np.float32)
        version = state.model_version or ""
        peers = self.peer_urls()
        answers = await asyncio.gather(*(self._ask_peer(url, version, vector, k, user_id, authorization)
                                         for url in peers))
        merged: dict[str, float] = {}
        for found in [self.users.nearest(version, vector, k, (user_id,)), *(a for a in answers if a is not None)]:
            for other, score in found:
                if other != user_id and score > merged.get(other, -np.inf):
                    merged[other] = score  # a user two workers hold during a rebalance counts once
        best = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:k]  # equal scores by id: any layout alike
        missing = [url for url, a in zip(peers, answers) if a is None]
        return SimilarUsers(best, workers=1 + len(peers) - len(missing), missing=missing)

    def peer_urls(self) -> list[str]:
        """The web URLs of the group's other workers, from the partition assignor's table metadata."""
        own = str(self.app.conf.canonical_url).rstrip("/")
        hosts = {str(h).rstrip("/") for h in self.app.router.tables_metadata()}
        return sorted(hosts - {own})

    async def _ask_peer(self, url: str, version: str, vector: np.ndarray, k: int, user_id: str,
                        authorization: str | None) -> list[tuple[str, float]] | None:
        """Another worker's users nearest to ``vector``; ``None`` (logged) when it does not answer well."""
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.PEER_TIMEOUT_S))
        headers = {"Authorization": authorization} if authorization else {}
        body = {"vector": vector.tolist(), "k": k, "exclude": [user_id], "model_version": version}
        try:
            async with self._http.post(f"{url}/users/nearest", json=body, headers=headers) as response:
                if response.status != 200:
                    raise ValueError(f"answered {response.status}")
                data = await response.json()
            return [(str(u["user_id"]), float(u["score"])) for u in data["users"]][:k]
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError) as e:
            log.warning("similar users: worker %s did not answer error=%r", url, e)
            return None

    # --- gauges ------------------------------------------------------------------
    async def _report_gauges(self) -> None:
        if not (self.app.rebalancing or getattr(self.app, "in_recovery", False)):  # after recovery wrote its keys
            try:
                metrics.TABLE_KEYS.set(self.states.key_count(self.assigned_partitions()))
            except Exception as e:  # the store may be mid-rebalance
                log.debug("table size unavailable error=%r", e)
        consumer = self.app.consumer
        metrics.CONSUMER_LAG.clear()  # partitions moved to another worker must not linger
        for tp in consumer.assignment():
            if tp.topic != self.events_topic.get_topic_name():
                continue
            highwater = consumer.highwater(tp)
            position = await consumer.position(tp)
            if highwater is not None and position is not None:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - position))

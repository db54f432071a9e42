"""Every private name of Faust, mode and aiokafka that the runtime reads, writes, calls or replaces.

The runtime lives partly inside these libraries (the batch feed replaces the
consumer's drain loop, the commit fix replaces its commit check, the state
store and the outbox reach past Faust's table and producer), and none of
those names is an API: a patch release may rename or reshape any of them.
Hence the exact pins in ``pyproject.toml`` (:data:`PINNED`), this list, and
:func:`check`, which the unit tests run against the real installed classes
and ``streamrec worker`` runs before it starts (:func:`require_supported_runtime`).

A few public names are listed too: the ones the runtime replaces, and those it
only uses because it copies a private method (the drain loop) or rebuilds a
private value (transactional ids); they change as freely as the private ones.
Moving a pin means running ``tests/unit/stream/test_private_names.py`` and the
worker integration tests on the new release, then updating the entries here.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from stream.errors import ConfigError

#: The releases the entries below were checked against (keep equal to pyproject.toml's pins).
PINNED: Mapping[str, str] = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}

Kind = Literal["read", "write", "call", "replace"]


@dataclass(frozen=True, slots=True)
class PrivateName:
    """One name the runtime uses, on the class (or module) that really holds it.

    ``kind``: ``read``; ``write`` (read and assigned or mutated); ``call``;
    ``replace`` (our function installed in its place). ``instance``: an
    attribute that ``__init__`` sets, so it is not on the class. ``signature``:
    ``str(inspect.signature(...))`` as pinned, compared for every replaced name
    and for calls whose arguments we pass. ``value``: the pinned value of a
    constant whose meaning we rely on.
    """

    owner: str
    name: str
    kind: Kind
    where: str
    why: str
    instance: bool = False
    signature: str | None = None
    value: Any = None

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}"


_CONSUMER = "faust.transport.consumer.Consumer"  # base of the app's faust.transport.drivers.aiokafka.Consumer
_TP = "faust.types.tuples.TP"

PRIVATE_NAMES: tuple[PrivateName, ...] = (
    # --- the consumer's offset bookkeeping: acknowledgements and commits ------------------
    PrivateName(_CONSUMER, "_acked", "write", "batch_feed.acknowledge, faust_fixes._new_offset",
                "acknowledge a batch's offsets as Consumer.ack does; deduplicate before the commit check",
                instance=True),
    PrivateName(_CONSUMER, "_acked_index", "write", "batch_feed.acknowledge",
                "the set Consumer.ack keeps next to _acked", instance=True),
    PrivateName(_CONSUMER, "_committed_offset", "read",
                "batch_feed.acknowledge, holes.HoleFiller._starts, faust_fixes._new_offset",
                "skip offsets already committed; where a partition's delivery must start; the fixed check",
                instance=True),
    PrivateName(_CONSUMER, "_n_acked", "write", "batch_feed.acknowledge, BatchFeed.drain",
                "count acknowledgements for broker_commit_every, as Consumer.ack and _drain_messages do"),
    PrivateName(_CONSUMER, "_waiting_for_ack", "read", "batch_feed.acknowledge",
                "wake a commit waiting for acknowledgements, as Consumer.ack does"),
    PrivateName(_CONSUMER, "_gap", "read", "faust_fixes._new_offset",
                "offsets a fetch skipped: the fixed check leaves those to the original method", instance=True),
    PrivateName(_CONSUMER, "_new_offset", "replace", "faust_fixes.apply",
                "commit-check off-by-one and duplicate acknowledgements (stream/runtime/README.md)",
                signature=f"(self, tp: {_TP}) -> Optional[int]"),
    PrivateName("faust.transport.drivers.aiokafka.AIOKafkaConsumerThread", "_create_worker_consumer", "replace",
                "faust_fixes.apply", "the worker's consumer built with a shorter fetch wait than Faust's "
                "fixed 1,500 ms (stream/runtime/README.md)",
                signature="(self, transport: 'Transport') -> aiokafka.consumer.consumer.AIOKafkaConsumer"),
    PrivateName("aiokafka.consumer.consumer.AIOKafkaConsumer", "_fetch_max_wait_ms", "write",
                "faust_fixes._create_worker_consumer", "the fetch wait AIOKafkaConsumer.start gives its Fetcher",
                instance=True),
    # --- the consumer's drain loop, replaced by the batch feed -----------------------------
    PrivateName(_CONSUMER, "_drain_messages", "replace", "BatchFeed.install (per consumer instance)",
                "the events topic a fetch at a time instead of an event at a time",
                signature="(self, fetcher: mode.types.services.ServiceT) -> None"),
    PrivateName(_CONSUMER, "wait_empty", "replace", "BatchFeed.install (per consumer instance)",
                "a rebalance or shutdown also waits for the batch in flight and its acknowledgements",
                signature="(self) -> None"),
    PrivateName(_CONSUMER, "_wait_next_records", "call", "BatchFeed.drain",
                "the fetch step of Consumer.getmany, without its per-message wrapping",
                signature=f"(self, timeout: float) -> Tuple[Optional[Mapping[{_TP}, List[Any]]], "
                          f"Optional[Set[{_TP}]]]"),
    PrivateName(_CONSUMER, "_read_offset", "write", "BatchFeed._split, BatchFeed._to_faust",
                "the last offset delivered per partition, which _drain_messages keeps", instance=True),
    PrivateName(_CONSUMER, "_add_gap", "call", "BatchFeed._split, BatchFeed._to_faust",
                "record offsets no record holds (transaction markers) so the commit steps over them",
                signature=f"(self, tp: {_TP}, offset_from: int, offset_to: int) -> None"),
    PrivateName(_CONSUMER, "_buffered_partitions", "read", "BatchFeed._split",
                "the partitions Consumer.getmany delivers besides the active ones", instance=True),
    PrivateName(_CONSUMER, "_commit_every", "read", "BatchFeed.drain",
                "broker_commit_every, read as _drain_messages does", instance=True),
    PrivateName(_CONSUMER, "_stopped", "read", "BatchFeed.drain",
                "mode.Service's stopped event: the loop's exit test in _drain_messages", instance=True),
    PrivateName("faust.transport.consumer.Fetcher", "_stopped", "read", "BatchFeed.drain",
                "the fetcher service's stopped event, the other half of the exit test", instance=True),
    PrivateName("faust.transport.drivers.aiokafka.Consumer", "_to_message", "call", "BatchFeed._to_faust",
                "build Faust's message for records of other topics (changelogs), as getmany does",
                signature=f"(self, tp: {_TP}, record: Any) -> faust.types.tuples.ConsumerMessage"),
    PrivateName(_CONSUMER, "callback", "call", "BatchFeed._to_faust",
                "the conductor callback _drain_messages hands each message to", instance=True),
    PrivateName(_CONSUMER, "suspend_flow", "read", "BatchFeed._to_faust",
                "the event _drain_messages waits on beside each callback", instance=True),
    PrivateName(_CONSUMER, "flow_active", "read", "BatchFeed.drain, BatchFeed._split",
                "false while a rebalance is under way: stop delivering, as getmany does"),
    PrivateName(_CONSUMER, "perform_seek", "call", "BatchFeed.drain",
                "what getmany does when a fetch arrives while flow is stopped",
                signature="(self) -> None"),
    PrivateName("faust.transport.drivers.aiokafka.Consumer", "consumer_stopped_errors", "read",
                "BatchFeed.drain", "the errors _drain_messages treats as the broker stopping the consumer"),
    # --- the table's RocksDB store, read and written by partition ---------------------------
    PrivateName("faust.stores.rocksdb.Store", "_db_for_partition", "call", "PartitionedTable._db",
                "the partition's database, named by us instead of by the current event",
                signature="(self, partition: int) -> Rdict"),
    PrivateName("faust.stores.rocksdb.Store", "rocksdb_options", "read", "PartitionedTable.share_memory",
                "the options object that opens each partition database", instance=True),
    PrivateName("faust.stores.rocksdb.RocksDBOptions", "as_options", "replace",
                "PartitionedTable.share_memory (per options instance)",
                "every partition database opened with one shared block cache and memtable budget",
                signature="(self) -> Options"),
    PrivateName("faust.stores.rocksdb.RocksDBOptions", "bloom_filter_size", "read",
                "PartitionedTable.share_memory", "the bloom filter Faust's table factory sets, set again",
                value=3),
    PrivateName("faust.stores.rocksdb.Store", "_key_index", "write", "PartitionedTable.get_raw, .put",
                "where a key lives, so Faust's partition-less reads (HTTP) find it as after its own _set",
                instance=True),
    PrivateName("faust.stores.rocksdb.Store", "_dbs", "read", "PartitionedTable.flush",
                "the open partition databases, flushed at a clean stop (no WAL under at-least-once)",
                instance=True),
    PrivateName("faust.stores.rocksdb.Store", "offset_key", "read",
                "PartitionedTable.key_count, ._on_changelog_sent",
                "the key under which Faust keeps a database's changelog offset: written by us, read "
                "by Faust's recovery; not a user key"),
    PrivateName("faust.tables.manager.TableManager", "persist_offset_on_commit", "call",
                "PartitionedTable._on_changelog_sent",
                "what Faust's Collection._on_changelog_sent calls under exactly_once",
                signature=f"(self, store: faust.types.stores.StoreT, tp: {_TP}, offset: int) -> None"),
    # --- the producers that outputs go through ---------------------------------------------
    PrivateName("faust.transport.drivers.aiokafka.Producer", "_transaction_producers", "read",
                "Worker._producer_for",
                "the transactional aiokafka producer of an events partition, so outputs join its transaction"),
    PrivateName("faust.transport.drivers.aiokafka.Producer", "_trn_locks", "read", "Worker._producer_for",
                "the lock Faust holds around that producer's sends and commits"),
    PrivateName("faust.transport.drivers.aiokafka.Producer", "_ensure_producer", "call",
                "Worker._producer_for", "the plain aiokafka producer under at-least-once",
                signature="(self) -> aiokafka.producer.producer.AIOKafkaProducer"),
    PrivateName("faust.transport.consumer.TransactionManager", "transactional_id_format", "read",
                "Worker._producer_for", "Worker._producer_for builds the transactional id the same way",
                value="{group_id}-{tpg.group}-{tpg.partition}"),
    PrivateName("aiokafka.producer.producer.AIOKafkaProducer", "_txn_manager", "read", "outbox._send_partition",
                "whether the producer is transactional: a record batch must say so", instance=True),
    PrivateName("aiokafka.producer.producer.AIOKafkaProducer", "_message_accumulator", "read",
                "outbox._send_partition", "to read the producer's compression type", instance=True),
    PrivateName("aiokafka.producer.message_accumulator.MessageAccumulator", "_compression_type", "read",
                "outbox._send_partition", "record batches compressed as the producer's own", instance=True),
    PrivateName("aiokafka.producer.transaction_manager.TransactionManager", "transactional_id", "read",
                "outbox._send_partition", "None on a producer without transactions", instance=True),
    PrivateName("aiokafka.producer.message_accumulator", "BatchBuilder", "call", "outbox._send_partition",
                "record batches of up to 1 MB: AIOKafkaProducer.create_batch, the public way, sizes "
                "them by max_batch_size (16 kB in Faust)",
                signature="(batch_size, compression_type, *, is_transactional=0, key_serializer=None, "
                          "value_serializer=None)"),
    # --- logging -----------------------------------------------------------------------------
    PrivateName("faust.utils.terminal.spinners", "SpinnerHandler", "read", "Worker._undo_spinner_logging",
                "the handler Faust's worker adds to the root logger (matched by class name)"),
)


class UnsupportedRuntime(ConfigError):
    """Faust, mode or aiokafka is not the release the runtime was built against."""


def check(names: Iterable[PrivateName] = PRIVATE_NAMES, instances: Mapping[str, object] | None = None) -> list[str]:
    """What does not hold of ``names`` in the installed libraries: one line per bad entry, ``[]`` if none.

    Each owner must import and hold the name, callable where called or replaced,
    with the pinned ``signature`` and ``value`` where given. Instance attributes
    are looked up on ``instances[owner]`` (a real object of that class) when
    given, otherwise as an assignment ``self.<name> =`` in the ``__init__`` of
    the owner or one of its bases.
    """
    problems = []
    for entry in names:
        try:
            problem = _problem(entry, (instances or {}).get(entry.owner))
        except Exception as e:  # an owner that no longer imports is a finding, not a crash
            problem = f"cannot be checked: {e!r}"
        if problem:
            problems.append(f"{entry.label} ({entry.kind}, {entry.where}): {problem}")
    return problems


def _problem(entry: PrivateName, instance: object | None) -> str | None:
    owner = _resolve(entry.owner)
    if entry.instance:
        if instance is not None:
            if not isinstance(instance, owner):
                return f"the instance given is a {type(instance).__qualname__}, not a {entry.owner}"
            if not hasattr(instance, entry.name):
                return "missing on a real instance"
            value = getattr(instance, entry.name)
        elif isinstance(owner, type) and _assigned_in_init(owner, entry.name):
            return None  # nothing more to check without an instance
        else:
            return "assigned in no __init__ of the class or its bases"
    else:
        try:
            inspect.getattr_static(owner, entry.name)
        except AttributeError:
            return "missing"
        value = getattr(owner, entry.name)
    if entry.kind in ("call", "replace") and not callable(value):
        return f"not callable (a {type(value).__qualname__})"
    if entry.signature is not None:
        found = str(inspect.signature(value))
        if found != entry.signature:
            return f"signature changed: {found}, pinned {entry.signature}"
    if entry.value is not None and value != entry.value:
        return f"value changed: {value!r}, pinned {entry.value!r}"
    return None


def _resolve(dotted: str) -> Any:
    """The module, or the class in a module, that ``dotted`` names."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, attr = dotted.rpartition(".")
        return getattr(importlib.import_module(module), attr)


def _assigned_in_init(cls: type, name: str) -> bool:
    pattern = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]+)?=(?!=)")
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not inspect.isfunction(init):
            continue
        try:
            if pattern.search(inspect.getsource(init)):
                return True
        except (OSError, TypeError):
            continue
    return False


def version_problems(lookup: Callable[[str], str] | None = None) -> list[str]:
    """``["<distribution> <installed> (pinned <version>)", ...]`` for every release that differs."""
    lookup = lookup or version
    problems = []
    for dist, pinned in PINNED.items():
        try:
            installed = lookup(dist)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned:
            problems.append(f"{dist} {installed} (pinned {pinned})")
    return problems


def require_supported_runtime() -> None:
    """Raise :class:`UnsupportedRuntime` unless the pinned releases are installed and every
    entry of :data:`PRIVATE_NAMES` holds in them (the ``streamrec worker`` start-up check)."""
    pins = ", ".join(f"{dist}=={v}" for dist, v in PINNED.items())
    wrong = version_problems()
    if wrong:
        raise UnsupportedRuntime(
            f"the worker runs only on {pins}: it depends on their private internals "
            f"(stream/runtime/private.py). Installed: {'; '.join(wrong)}. "
            "Install the pinned releases (pip install -e . installs them).")
    broken = check()
    if broken:
        raise UnsupportedRuntime(f"the installed {pins} do not hold the private names the worker uses "
                                 f"(a modified install?): " + "; ".join(broken))

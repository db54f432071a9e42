"""The trainer's snapshot: the training window of ``events`` as NumPy columns, and the whole catalogue as columns.

The window (``STREAMREC_TRAIN_WINDOW_EVENTS``, ``STREAMREC_TRAIN_WINDOW_DAYS``)
is read from the topic's end backwards (:mod:`stream.kafka.window`); each
fetched batch is validated record by record with
:func:`stream.core.events.parse_event`, as strictly as the worker validates,
and written straight into preallocated columns at the slot its offset gives
(so rows come out in partition then offset order, the order the worker's
partitions saw them), never kept as one object per event. Memory is
therefore set by the window: :data:`PEAK_BYTES_PER_EVENT` bytes per event up to
a trained model, checked against the memory available before anything is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from models.data.columns import BYTES_PER_EVENT, TYPE_CODE, CatalogColumns, EventColumns
from stream.core.events import parse_event
from stream.core.items import parse_item
from stream.core.topics import EVENTS, ITEMS
from stream.errors import ConfigError, InvalidEvent, InvalidRecord
from stream.kafka.window import Batch, Window, plan_window, read_window
from stream.settings import Settings

log = logging.getLogger(__name__)

# Measured (tracemalloc, 10^5 and 10^6 generated events, bench/README.md): snapshot and cleaning
# peak at about 150 bytes per event (the columns, the cleaning's sort keys and orders), the
# training windows at max_len 50 about 100 more while the interactions (28) and their split
# are held; 250 leaves room for the model's own tensors on top.
PEAK_BYTES_PER_EVENT = 250
ID_OVERHEAD_BYTES = 150  # a str object, its dict slot and list entry, and its share of the id maps
MEMORY_SHARE = 0.7  # of MemAvailable: the rest for the model, the optimizer, the catalogue and the OS


@dataclass
class SnapshotReport:
    """What a snapshot read: the window's offsets, its events, the invalid ones by reason, its time span."""

    window: dict[str, Any] = field(default_factory=dict)
    offsets: int = 0  # offsets in the window: records plus transaction markers and compacted gaps
    events: int = 0
    invalid: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None
    read_seconds: float = 0.0
    column_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def memory_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes, ``None`` where the kernel does not say (not Linux)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(events: int, available: int | None) -> None:
    """Raise ``ConfigError`` naming the window settings when ``events`` would not fit in memory."""
    need = events * PEAK_BYTES_PER_EVENT
    if available is not None and need > MEMORY_SHARE * available:
        fits = int(MEMORY_SHARE * available // PEAK_BYTES_PER_EVENT)
        raise ConfigError(
            f"the training window holds {events:,} events, about {need / 2**30:.1f} GiB to train on "
            f"({PEAK_BYTES_PER_EVENT} bytes each), more than {MEMORY_SHARE:.0%} of the "
            f"{available / 2**30:.1f} GiB available: lower STREAMREC_TRAIN_WINDOW_EVENTS (about {fits:,} fit) "
            f"or STREAMREC_TRAIN_WINDOW_DAYS")


class ColumnsBuilder:
    """Columns of a window's valid events, filled batch by batch (:meth:`add`), read once (:meth:`columns`)."""

    def __init__(self, window: Window, now_ms: int, max_id_bytes: int | None = None) -> None:
        self.now_ms = now_ms
        # Ids are kept once each, not per event, but hostile producers can make every event's id new.
        self.max_id_bytes = max_id_bytes
        self.id_bytes = 0
        self.starts = {p: start for p, (start, _) in window.ranges.items()}
        self.bases: dict[int, int] = {}
        total = 0
        for p, (start, end) in sorted(window.ranges.items()):
            self.bases[p] = total
            total += end - start
        self.user = np.full(total, -1, dtype=np.int32)  # -1: no valid event at this slot
        self.item = np.zeros(total, dtype=np.int32)
        self.event_type = np.zeros(total, dtype=np.int8)
        self.value = np.zeros(total, dtype=np.float64)
        self.timestamp = np.zeros(total, dtype=np.int64)
        self.users: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.invalid: Counter[str] = Counter()

    def add(self, batch: Batch) -> None:
        """Validate and store one batch; invalid records are counted by reason, never raised."""
        users, items, now = self.users, self.items, self.now_ms
        slots, u, i, t, v, ts = [], [], [], [], [], []
        base = self.bases[batch.partition] - self.starts[batch.partition]
        for offset, raw in zip(batch.offsets, batch.values):
            try:
                event = parse_event(raw or b"", now_ms=now)
            except InvalidEvent as e:
                self.invalid[e.reason] += 1
                continue
            slots.append(base + offset)
            user, item = users.get(event.user_id), items.get(event.item_id)
            if user is None:
                user = users[event.user_id] = len(users)
                self.id_bytes += ID_OVERHEAD_BYTES + len(event.user_id)
            if item is None:
                item = items[event.item_id] = len(items)
                self.id_bytes += ID_OVERHEAD_BYTES + len(event.item_id)
            u.append(user)
            i.append(item)
            t.append(TYPE_CODE[event.event_type.value])
            v.append(np.nan if event.value is None else event.value)
            ts.append(event.timestamp_ms)
        if slots:
            self.user[slots], self.item[slots], self.event_type[slots] = u, i, t
            self.value[slots], self.timestamp[slots] = v, ts
        if self.max_id_bytes is not None and self.id_bytes > self.max_id_bytes:
            raise ConfigError(
                f"the training window's {len(users):,} user and {len(items):,} item ids take more than the "
                f"{self.max_id_bytes / 2**30:.1f} GiB left beside its events: lower STREAMREC_TRAIN_WINDOW_EVENTS "
                f"or STREAMREC_TRAIN_WINDOW_DAYS")

    def columns(self) -> EventColumns:
        """The valid events in partition then offset order; empty slots (invalid records, transaction
        markers, compacted gaps) compacted away in place."""
        cols = [self.user, self.item, self.event_type, self.value, self.timestamp]
        kept = np.flatnonzero(self.user >= 0)
        if len(kept) < len(self.user):
            for col in cols:
                col[: len(kept)] = col[kept]
                col.resize(len(kept), refcheck=False)  # shrinks the buffer in place: no second copy
        return EventColumns(*cols, user_ids=list(self.users), item_ids=list(self.items))


def snapshot_events(settings: Settings, progress: bool = False, available: int | None = None,
                    now_ms: int | None = None) -> tuple[EventColumns, SnapshotReport]:
    """The training window of ``events`` as columns, and what was read.

    ``available`` (bytes; default MemAvailable) is what :func:`check_fits` compares the
    window's estimated footprint with before reading anything.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    max_events, days = settings.train_window_events, settings.train_window_days
    started = time.perf_counter()
    window = asyncio.run(plan_window(settings, settings.topic(EVENTS), max_events, days, now_ms=now_ms))
    available = memory_available() if available is None else available
    check_fits(window.events, available)
    left = None if available is None else int(MEMORY_SHARE * available) - window.events * PEAK_BYTES_PER_EVENT
    builder = ColumnsBuilder(window, now_ms, max_id_bytes=left)
    bar = tqdm(total=window.events, unit="ev", unit_scale=True, desc="snapshot events", disable=not progress,
               leave=False)

    def on_batch(batch: Batch) -> None:
        builder.add(batch)
        bar.update(len(batch.offsets))

    try:
        asyncio.run(read_window(settings, window, on_batch))
    finally:
        bar.close()
    columns = builder.columns()
    report = SnapshotReport(window=window.as_dict(), offsets=window.events, events=len(columns),
                            invalid=sum(builder.invalid.values()), invalid_reasons=dict(builder.invalid),
                            read_seconds=time.perf_counter() - started, column_bytes=columns.nbytes)
    if len(columns):
        report.first_ms, report.last_ms = int(columns.timestamp.min()), int(columns.timestamp.max())
    log.info("snapshot events=%d invalid=%d offsets=%d seconds=%.1f bytes_per_event=%d reasons=%s", report.events,
             report.invalid, report.offsets, report.read_seconds, BYTES_PER_EVENT,
             ",".join(f"{k}:{v}" for k, v in sorted(report.invalid_reasons.items())) or "none")
    return columns, report


def add_items(catalog: CatalogColumns, batch: Batch) -> int:
    """Apply one fetched batch of the ``items`` topic to ``catalog`` in offset order: a valid record
    replaces its item's row, a tombstone removes it; returns how many records were invalid (the
    worker logs and ignores those too)."""
    invalid = 0
    keys = batch.keys or [None] * len(batch.values)
    for key, raw in zip(keys, batch.values):
        if raw is None:
            if key is not None:
                catalog.remove(key.decode("utf-8", "replace"))
            continue
        try:
            item = parse_item(raw)
        except InvalidRecord:
            invalid += 1
            continue
        catalog.put(item.item_id, item.title, item.text, item.category, item.tags)
    return invalid


def snapshot_items(settings: Settings, progress: bool = False) -> CatalogColumns:
    """The latest valid record of each catalogue item (the compacted ``items`` topic, read whole), as columns.

    Records are applied as they are fetched, one partition after another (so an
    id written to two partitions ends as a read in partition then offset order
    would leave it), never collected first.
    """
    window = asyncio.run(plan_window(settings, settings.topic(ITEMS)))
    catalog = CatalogColumns()
    invalid = 0
    bar = tqdm(total=window.events, unit="rec", unit_scale=True, desc="snapshot items", disable=not progress,
               leave=False)

    def on_batch(batch: Batch) -> None:
        nonlocal invalid
        invalid += add_items(catalog, batch)
        bar.update(len(batch.offsets))

    try:
        for partition, offsets in sorted(window.ranges.items()):  # an empty one returns at once
            asyncio.run(read_window(settings, Window(window.topic, {partition: offsets}), on_batch))
    finally:
        bar.close()
    log.info("snapshot items=%d invalid=%d offsets=%d", len(catalog), invalid, window.events)
    return catalog

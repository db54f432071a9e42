"""The producer client that event producers import (kafka-python based).

    from stream.kafka.producer import EventProducer
    with EventProducer() as producer:           # settings from STREAMREC_* variables
        producer.send({"user_id": "u1", "item_id": "i9", "event_type": "click",
                       "timestamp_ms": 1767225600000})

Events are validated before they leave the process (a bad event raises
:class:`~stream.errors.InvalidEvent` at the call site, where it can be fixed),
keyed by user id so one user's events stay in order on one partition, and sent
idempotently with ``acks=all``: a retry after a network error cannot duplicate
or reorder them.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from kafka import KafkaProducer
from kafka.errors import KafkaError
from tqdm import tqdm

from stream.core.events import Event, parse_event
from stream.core.items import Item, parse_item
from stream.core.topics import EVENTS, ITEMS
from stream.errors import InvalidEvent, StreamError
from stream.kafka.config import kafka_python_options
from stream.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class SendReport:
    """What a bulk send did: events sent, and invalid ones skipped by reason."""

    sent: int = 0
    invalid: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class EventProducer:
    """Validating, keyed, idempotent producer of events to the ``events`` topic."""

    def __init__(self, settings: Settings | None = None, topic: str | None = None, **producer_options: Any) -> None:
        self.settings = settings or get_settings()
        self.topic = topic or self.settings.topic(EVENTS)
        options: dict[str, Any] = {
            **kafka_python_options(self.settings),
            "acks": "all",
            "enable_idempotence": True,
            # A few ms of linger batches bursts without delaying a lone event noticeably.
            "linger_ms": 2,
            "max_block_ms": 30_000,
            "allow_auto_create_topics": False,
            # What the topics would refuse is refused here, at the call site.
            "max_request_size": self.settings.topic_max_message_bytes,
        }
        options.update(producer_options)
        self._producer = KafkaProducer(**options)

    def send(self, event: Event | Mapping[str, Any] | bytes | str):
        """Validate and send one event; returns kafka-python's future of the record metadata.

        Raises :class:`InvalidEvent` for a bad event (nothing is sent).
        """
        if not isinstance(event, Event):
            event = parse_event(event)
        return self._producer.send(self.topic, key=event.user_id.encode(), value=event.to_json_bytes())

    def send_many(
        self,
        events: Iterable[Event | Mapping[str, Any]],
        rate: float | None = None,
        total: int | None = None,
        progress: bool = False,
        strict: bool = False,
    ) -> SendReport:
        """Send events in order, at most ``rate`` per second (``None``: as fast as possible).

        Invalid events are skipped and counted by reason in the report (logged
        once per reason), or raise at the first one when ``strict``. Flushes
        before returning, so every counted event is acknowledged.
        """
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        report = SendReport()
        start = time.perf_counter()
        bar = tqdm(total=total, unit="ev", disable=not progress, desc=f"producing to {self.topic}")
        try:
            for n, item in enumerate(events):
                if rate is not None:
                    # Pace against the schedule, not the previous send, so the mean rate holds.
                    delay = start + n / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                try:
                    self.send(item)
                except InvalidEvent as e:
                    if strict:
                        raise
                    if not report.invalid[e.reason]:
                        log.warning("skipping invalid event reason=%s detail=%s", e.reason, e.detail)
                    report.invalid[e.reason] += 1
                    continue
                report.sent += 1
                bar.update(1)
            self.flush()
        finally:
            bar.close()
        report.seconds = time.perf_counter() - start
        return report

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until every sent event is acknowledged by the broker."""
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as e:
            raise StreamError(f"events not acknowledged within {timeout}s: {e}") from e

    def close(self, timeout: float | None = 30.0) -> None:
        self._producer.close(timeout=timeout)

    def queue_time_ms(self) -> dict[str, float]:
        """How long sent records waited in this client before going to the broker (kafka-python's
        ``record-queue-time-avg``/``-max`` of its recent window, ms): a benchmark's own producer
        delay, which freshness measured from ``send()`` includes."""
        metrics = self._producer.metrics().get("producer-metrics", {})
        return {"avg": float(metrics.get("record-queue-time-avg", 0.0) or 0.0),
                "max": float(metrics.get("record-queue-time-max", 0.0) or 0.0)}

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_event_file(path: Path, rebase_to_ms: int | None = None) -> Iterator[dict[str, Any] | str]:
    """Yield raw events from a JSON-lines (``.jsonl``/``.json``) or CSV file, in file order.

    CSV needs a header with the event fields (``user_id,item_id,event_type,
    timestamp_ms[,value]``). With ``rebase_to_ms``, timestamps are shifted so
    the first event happens at that instant and gaps are kept (replaying an old
    log as if it happened now). Lines that are not JSON are passed through as
    text, so the caller's validation reports them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no event file at {path}")
    offset: int | None = None

    def rebase(record: dict[str, Any]) -> dict[str, Any]:
        nonlocal offset
        ts = record.get("timestamp_ms")
        if rebase_to_ms is not None and isinstance(ts, int) and not isinstance(ts, bool):
            if offset is None:
                offset = rebase_to_ms - ts
            record = {**record, "timestamp_ms": ts + offset}
        return record

    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield rebase(_csv_row(row))
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield line
                continue
            yield rebase(record) if isinstance(record, dict) else line


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    for key, cast in (("timestamp_ms", int), ("value", float)):
        if key in out:
            try:
                out[key] = cast(out[key])
            except ValueError:
                pass  # left as text: validation reports it with its reason
    return out


def publish_catalog(settings: Settings, items: Iterable[Item | Mapping[str, Any]]) -> int:
    """Validate catalogue records and publish them to the compacted ``items`` topic, keyed by item id;
    returns how many. Raises :class:`~stream.core.items.InvalidItem` before sending anything when one
    is invalid; acknowledged by the broker before returning.
    """
    records = [it if isinstance(it, Item) else parse_item(it) for it in items]
    producer = KafkaProducer(**kafka_python_options(settings), acks="all", linger_ms=5,
                             allow_auto_create_topics=False)
    try:
        for item in records:
            producer.send(settings.topic(ITEMS), key=item.item_id.encode(), value=item.encode())
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=30)
    return len(records)

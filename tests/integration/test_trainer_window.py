"""The trainer's window on the real broker: the newest events by count and by Kafka timestamp, hostile
records counted by reason, columns in partition then offset order."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from kafka import KafkaProducer

from stream.core.topics import EVENTS, ITEMS
from stream.kafka.config import kafka_python_options
from stream.kafka.reader import end_offsets
from stream.kafka.window import DAY_MS, plan_window
from stream.trainer.snapshot import snapshot_events

pytestmark = pytest.mark.kafka


def _produce(settings, records: list[tuple[str, bytes | None, int | None]]) -> None:
    """(user key, raw value, Kafka timestamp or None for now), sent in order and acknowledged."""
    producer = KafkaProducer(**kafka_python_options(settings), acks="all")
    try:
        for key, value, ts in records:
            producer.send(settings.topic(EVENTS), key=key.encode(), value=value, timestamp_ms=ts)
        producer.flush(30)
    finally:
        producer.close(10)


def _event(user: str, item: str, ts: int) -> bytes:
    return json.dumps({"user_id": user, "item_id": item, "event_type": "click", "timestamp_ms": ts}).encode()


def test_the_count_window_takes_each_partitions_newest_share(settings, topics):
    now = int(time.time() * 1000)
    _produce(settings, [(f"u{k % 20}", _event(f"u{k % 20}", f"i{k}", now - 10_000 + k), None) for k in range(400)])
    ends = asyncio.run(end_offsets(settings, settings.topic(EVENTS)))
    window = asyncio.run(plan_window(settings, settings.topic(EVENTS), max_events=100))
    assert window.events == 100
    for p, (start, end) in window.ranges.items():
        assert end == ends[p] and abs((end - start) - 100 * ends[p] / 400) <= 1

    columns, report = snapshot_events(settings.model_copy(update={"train_window_events": 100}))
    assert len(columns) == report.events == 100 and report.invalid == 0
    assert min(int(i[1:]) for i in columns.item_ids) >= 200  # none from the older half of any partition
    assert report.window["partitions"] and report.read_seconds > 0 and report.last_ms <= now


def test_the_days_window_starts_at_the_first_record_after_the_cut_off(settings, topics):
    now = int(time.time() * 1000)
    old = [(f"u{k}", _event(f"u{k}", f"old{k}", now - 100 * DAY_MS), now - 100 * DAY_MS) for k in range(30)]
    new = [(f"u{k}", _event(f"u{k}", f"new{k}", now - DAY_MS), now - DAY_MS) for k in range(30)]
    _produce(settings, old + new)
    columns, report = snapshot_events(settings.model_copy(update={"train_window_days": 90.0,
                                                                    "train_window_events": None}))
    assert sorted(columns.item_ids) == sorted(f"new{k}" for k in range(30))
    assert report.offsets == 30 and report.window["since_ms"] <= now - 90 * DAY_MS + 60_000


def test_hostile_records_in_the_window_are_counted_by_reason(settings, topics):
    now = int(time.time() * 1000)
    records = [("u1", _event("u1", "i1", now - 3), None), ("u1", b"{broken", None), ("u1", None, None),
               ("u1", b"\xff\xfe", None), ("u1", b"x" * 20_000, None),
               ("u1", json.dumps({"user_id": "u1", "item_id": "i2", "event_type": "click"}).encode(), None),
               ("u1", _event("u1", "i3", now - 1), None)]
    _produce(settings, records)
    columns, report = snapshot_events(settings)
    assert [columns.item_ids[i] for i in columns.item] == ["i1", "i3"]
    assert report.invalid == 5 and report.invalid_reasons["too_large"] == 1
    assert report.invalid_reasons["missing_field"] == 1


@pytest.mark.parametrize("nproc", [1, 2])
def test_a_trainer_run_trains_on_its_window_only(settings, topics, nproc):
    from models.data.synthetic import generate_demo_dataset
    from models.train.config import TrainConfig
    from stream.kafka.producer import EventProducer, publish_catalog
    from stream.trainer.run import train_once

    data = generate_demo_dataset(n_users=120, n_items=60, events_per_user=20, seed=2)
    publish_catalog(settings, data.items)
    with EventProducer(settings) as producer:
        producer.send_many(data.events)
    window = len(data.events) * 3 // 5
    config = TrainConfig(tower="mean", dim=16, epochs=2, patience=2, content="none", progress=False)
    run = train_once(settings.model_copy(update={"train_window_events": window}), config, publish=False,
                     select="fixed", nproc=nproc)
    assert run.reason == "publishing disabled", run.summary()
    assert run.snapshot.offsets == window and run.events == window and run.invalid_events == 0
    assert run.snapshot.first_ms > min(e["timestamp_ms"] for e in data.events)  # the oldest events left out
    assert f"window_offsets={window}" in run.summary()


def test_the_catalogue_snapshot_keeps_each_items_latest_valid_record(settings, topics):
    from models.data.dataset import IdMap
    from stream.trainer.snapshot import snapshot_items

    records = [(b"a", {"item_id": "a", "title": "first"}), (b"b", {"item_id": "b", "title": "B", "category": "Jazz"}),
               (b"c", {"item_id": "c", "title": "C"}), (b"a", {"item_id": "a", "title": "second", "tags": ["x"]}),
               (b"c", None), (b"d", b"{broken"), (b"e", {"item_id": "e", "tags": "not a list"})]
    producer = KafkaProducer(**kafka_python_options(settings), acks="all")
    try:
        for key, value in records:
            raw = value if value is None or isinstance(value, bytes) else json.dumps(value).encode()
            producer.send(settings.topic(ITEMS), key=key, value=raw)
        producer.flush(30)
    finally:
        producer.close(10)
    catalog = snapshot_items(settings)
    assert sorted(catalog.row) == ["a", "b"]  # c taken down by its tombstone, d and e invalid
    built = catalog.catalog(IdMap(("a", "b", "c")))
    assert built.title == ["second", "B", "c"] and built.tags == [["x"], ["jazz"], []]

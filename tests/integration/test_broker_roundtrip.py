"""Events sent with kafka-python (the producer client) read back with aiokafka, on the real broker."""

import asyncio
import json
from collections import defaultdict

import pytest

from models.feedback import EventType
from stream.core.events import Event, parse_event
from stream.core.topics import EVENTS
from stream.kafka.producer import EventProducer
from stream.kafka.reader import end_offsets, read_range

pytestmark = pytest.mark.kafka


def test_events_keep_content_and_per_user_order(settings, topics):
    sent = [
        Event.create(f"user-{u}", f"item-{(u * 7 + n) % 13}", EventType.PLAY if n % 3 else EventType.SKIP,
                     timestamp_ms=1_767_225_600_000 + n * 1000 + u, value=float(10 + n))
        for n in range(40) for u in range(6)
    ]
    with EventProducer(settings) as producer:
        report = producer.send_many(sent)
    assert report.sent == len(sent) and not report.invalid

    records = asyncio.run(read_range(settings, settings.topic(EVENTS)))
    assert len(records) == len(sent)

    received = defaultdict(list)
    partitions = defaultdict(set)
    for r in records:
        event = parse_event(r.value)
        assert r.key == event.user_id.encode()
        received[event.user_id].append(event)
        partitions[event.user_id].add(r.partition)
    for user in {e.user_id for e in sent}:
        assert received[user] == [e for e in sent if e.user_id == user]  # content and order
        assert len(partitions[user]) == 1  # keyed: one user, one partition
    assert len({p for ps in partitions.values() for p in ps}) > 1  # users spread over partitions


def test_invalid_events_are_refused_before_sending(settings, topics):
    from stream.errors import InvalidEvent

    with EventProducer(settings) as producer:
        with pytest.raises(InvalidEvent) as info:
            producer.send({"user_id": "u1", "item_id": "i1", "event_type": "zap", "timestamp_ms": 1_767_225_600_000})
        assert info.value.reason == "unknown_event_type"
        report = producer.send_many([
            {"user_id": "u1", "item_id": "i1", "event_type": "click", "timestamp_ms": 1_767_225_600_000},
            b"{oops",
            {"user_id": "u1", "item_id": "i2", "event_type": "click"},
        ])
    assert report.sent == 1 and dict(report.invalid) == {"bad_json": 1, "missing_field": 1}
    assert sum(asyncio.run(end_offsets(settings, settings.topic(EVENTS))).values()) == 1


def test_rate_limited_send_holds_the_rate(settings, topics):
    events = [{"user_id": "u1", "item_id": f"i{n}", "event_type": "click", "timestamp_ms": 1_767_225_600_000 + n}
              for n in range(50)]
    with EventProducer(settings) as producer:
        report = producer.send_many(events, rate=100.0)
    assert report.sent == 50
    assert report.seconds >= 0.45  # 50 events at 100/s cannot finish in less than ~0.49 s


def test_read_range_reads_only_the_new_records(settings, topics):
    topic = settings.topic(EVENTS)
    event = {"user_id": "u1", "item_id": "i1", "event_type": "click", "timestamp_ms": 1_767_225_600_000}
    with EventProducer(settings) as producer:
        producer.send_many([event] * 3)
        before = asyncio.run(end_offsets(settings, topic))
        producer.send_many([{**event, "item_id": "i2"}] * 2)
    records = asyncio.run(read_range(settings, topic, start=before))
    assert [json.loads(r.value)["item_id"] for r in records] == ["i2", "i2"]

"""The main job on the embedded default: generated catalogue and events through a real broker.

:func:`run_demo` creates the topics, publishes the generated catalogue to
``items`` and the events to ``events`` (validated, keyed by user), reads
exactly what it produced back with aiokafka, checks per-user order, and
returns a summary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from models.data.synthetic import generate_demo_dataset
from stream.core.topics import EVENTS
from stream.kafka.admin import ensure_topics
from stream.kafka.producer import EventProducer, publish_catalog
from stream.kafka.reader import end_offsets, read_range
from stream.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DemoReport:
    """What the demo did, for printing and for tests."""

    topics: dict[str, str]
    items_published: int
    events_sent: int
    events_read: int
    produce_seconds: float
    users: int
    by_type: Counter
    by_partition: Counter
    top_items: list[tuple[str, int]]
    order_violations: int
    sample_user: str
    sample_history: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.events_sent / self.produce_seconds if self.produce_seconds else 0.0
        out = [
            f"topics: {', '.join(f'{t} ({s})' for t, s in self.topics.items())}",
            f"catalogue: {self.items_published} items published to the compacted items topic",
            f"events: {self.events_sent} produced in {self.produce_seconds:.1f}s ({rate:,.0f}/s), "
            f"{self.events_read} read back with aiokafka",
            f"users: {self.users}; events by type: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.by_type.items())),
            "events by partition: " + ", ".join(f"p{k}={v}" for k, v in sorted(self.by_partition.items())),
            "most played items: " + ", ".join(f"{i} ({n})" for i, n in self.top_items),
            f"per-user order preserved: {'yes' if self.order_violations == 0 else f'NO ({self.order_violations})'}",
            f"user {self.sample_user}'s last events: {'; '.join(self.sample_history)}",
        ]
        return out


def run_demo(
    settings: Settings,
    n_users: int = 300,
    n_items: int = 200,
    events_per_user: int = 30,
    seed: int = 7,
    progress: bool = True,
) -> DemoReport:
    """Run the demo end to end against the configured broker and return what happened."""
    topics = ensure_topics(settings)
    dataset = generate_demo_dataset(n_users=n_users, n_items=n_items, events_per_user=events_per_user, seed=seed)
    events_topic = settings.topic(EVENTS)
    before = asyncio.run(end_offsets(settings, events_topic))

    n_items_published = publish_catalog(settings, dataset.items)
    with EventProducer(settings) as producer:
        report = producer.send_many(dataset.events, total=len(dataset.events), progress=progress, strict=True)

    records = asyncio.run(read_range(settings, events_topic, start=before))
    by_type: Counter = Counter()
    by_partition: Counter = Counter()
    items: Counter = Counter()
    history: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        event = json.loads(r.value)
        by_type[event["event_type"]] += 1
        by_partition[r.partition] += 1
        if event["event_type"] in ("play", "purchase", "like"):
            items[event["item_id"]] += 1
        history[event["user_id"]].append(event)
    sent_order: dict[str, list[tuple]] = defaultdict(list)
    for e in dataset.events:
        sent_order[e["user_id"]].append((e["item_id"], e["timestamp_ms"]))
    violations = sum(
        1 for user, evs in history.items()
        if [(e["item_id"], e["timestamp_ms"]) for e in evs] != sent_order[user]
    )
    sample = max(history, key=lambda u: len(history[u])) if history else ""
    titles = {it["item_id"]: it["title"] for it in dataset.items}
    return DemoReport(
        topics=topics,
        items_published=n_items_published,
        events_sent=report.sent,
        events_read=len(records),
        produce_seconds=report.seconds,
        users=len(history),
        by_type=by_type,
        by_partition=by_partition,
        top_items=[(f"{i} {titles[i]!r}", n) for i, n in items.most_common(5)],
        order_violations=violations,
        sample_user=sample,
        sample_history=[
            f"{e['event_type']} {titles.get(e['item_id'], e['item_id'])!r}"
            f" at {time.strftime('%Y-%m-%d %H:%M', time.gmtime(e['timestamp_ms'] / 1000))}"
            for e in history.get(sample, [])[-5:]
        ],
    )

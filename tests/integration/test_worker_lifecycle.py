"""Worker lifecycle on the real broker: restarts, a second worker, and hot swaps of trained versions."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections import Counter

import pytest

from models.data.synthetic import generate_demo_dataset
from models.train.config import TrainConfig
from stream.kafka.admin import ensure_topics
from stream.kafka.producer import EventProducer, publish_catalog
from stream.kafka.reader import end_offsets, read_range
from stream.settings import Settings
from stream.trainer.run import latest_announcement, train_once
from tests.helpers import free_port
from tests.worker_harness import WorkerProcess, recommendations_for, schema_violations, topic_json, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=60, n_items=60, events_per_user=12, seed=9)


def make_settings(kafka_bootstrap: str, root, **overrides) -> Settings:
    prefix = f"itl-{uuid.uuid4().hex[:10]}."
    return Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, topic_partitions=4,
                    data_dir=root / "state", artifacts_dir=root / "artifacts", web_port=free_port(),
                    app_id=f"streamrec-{prefix.rstrip('.')}", top_k=5, **overrides)


def history_length(worker: WorkerProcess, user: str) -> int | None:
    status, body = worker.get(f"/recommendations/{user}")
    return body["history_length"] if status == 200 else None


def test_state_survives_restarts_exactly_once(kafka_bootstrap, tmp_path, data):
    settings = make_settings(kafka_bootstrap, tmp_path, processing_guarantee="exactly_once")
    ensure_topics(settings)
    publish_catalog(settings, data.items)
    events = [e for e in data.events if e["user_id"] == data.user_ids[0]]
    user = events[0]["user_id"]
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        with EventProducer(settings) as producer:
            producer.send_many(events[:6])
        wait_for(lambda: history_length(worker, user) == 6, what="six events applied")
        worker.stop()  # graceful
        worker.start()
        assert history_length(worker, user) == 6
        with EventProducer(settings) as producer:
            producer.send_many(events[6:8])
        wait_for(lambda: history_length(worker, user) == 8, what="eight events applied")
        worker.stop(signal.SIGKILL)  # no goodbye: state comes back from RocksDB + changelog
        worker.start()
        with EventProducer(settings) as producer:
            producer.send_many(events[8:9])
        wait_for(lambda: history_length(worker, user) == 9, what="nine events applied")
        time.sleep(2)
        assert history_length(worker, user) == 9  # nothing applied twice
        # Each transaction's commit marker takes an offset: outputs written outside any
        # transaction would end exactly at their record count.
        for topic in (settings.topic("recommendations"), f"{settings.app_id}-user-state-changelog"):
            ends = asyncio.run(end_offsets(settings, topic))
            counts = Counter(r.partition for r in asyncio.run(read_range(settings, topic)))
            assert counts and all(ends[p] > n for p, n in counts.items()), (topic, ends, counts)
    finally:
        worker.stop()


def test_second_worker_takes_partitions_with_their_state(kafka_bootstrap, tmp_path, data):
    settings = make_settings(kafka_bootstrap, tmp_path)
    ensure_topics(settings)
    publish_catalog(settings, data.items)
    first = WorkerProcess(settings, tmp_path / "a.log").start()
    second = None
    try:
        users = data.user_ids[:20]
        sent = [e for e in data.events if e["user_id"] in users]
        with EventProducer(settings) as producer:
            producer.send_many(sent)
        counts = {u: sum(1 for e in sent if e["user_id"] == u) for u in users}
        wait_for(lambda: all(history_length(first, u) == min(counts[u], settings.max_history) for u in users),
                 timeout=60, what="all users applied on the first worker")
        other = Settings(**{**settings.model_dump(), "web_port": free_port(), "data_dir": tmp_path / "state-b"})
        second = WorkerProcess(other, tmp_path / "b.log").start()
        wait_for(lambda: first.get("/healthz")[1]["partitions"] and second.get("/healthz")[1]["partitions"]
                 and len(first.get("/healthz")[1]["partitions"]) + len(second.get("/healthz")[1]["partitions"]) == 4,
                 timeout=60, what="partitions shared by both workers")
        owned = set(second.get("/healthz")[1]["partitions"])
        from kafka.partitioner.default import murmur2
        moved = [u for u in users if (murmur2(u.encode()) & 0x7FFFFFFF) % 4 in owned]
        assert moved, "no user landed on the second worker's partitions"
        for u in users:  # either worker answers for any user (routed to the owner), state intact
            for w in (first, second):
                assert wait_for(lambda: history_length(w, u) == counts[u], timeout=30, what=f"{u} via {w.url}")
        u = moved[0]
        with EventProducer(settings) as producer:
            producer.send({"user_id": u, "item_id": data.items[0]["item_id"], "event_type": "click",
                           "timestamp_ms": int(time.time() * 1000)})
        wait_for(lambda: history_length(second, u) == counts[u] + 1, what="the moved user's new event applied")
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_trainer_publishes_and_worker_swaps_without_pausing(kafka_bootstrap, tmp_path, data):
    settings = make_settings(kafka_bootstrap, tmp_path)
    ensure_topics(settings)
    publish_catalog(settings, data.items)
    with EventProducer(settings) as producer:
        producer.send_many(data.events)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        user = data.user_ids[1]
        wait_for(lambda: history_length(worker, user), timeout=60, what="events applied")
        answers: list[tuple[int, str | None, str | None]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                status, body = worker.get(f"/recommendations/{user}")
                answers.append((status, body.get("model_version"), body.get("index_version")))
                time.sleep(0.02)

        poller = threading.Thread(target=poll)
        poller.start()
        config = TrainConfig(tower="mean", dim=32, epochs=3, patience=2, content="tfidf", progress=False,
                             loss="full_softmax", batch_size=64)
        run = train_once(settings, config, margin=1.0, select="fixed")
        assert run.published and run.version and run.events == len(data.events)
        # the default window (5,000,000 events, 90 days) holds them all, read from the topic's end
        assert run.snapshot.offsets == len(data.events) and run.snapshot.last_ms is not None
        assert (settings.artifacts_dir / run.version / "index" / "manifest.json").is_file()
        announced = latest_announcement(settings)
        assert announced.version == run.version and "ndcg@10" in announced.metrics
        assert schema_violations("model-updates", [v for _, v in topic_json(settings, "model-updates")]) == []
        wait_for(lambda: worker.get("/healthz")[1]["model_version"] == run.version, timeout=60,
                 what="the worker serving the new version")
        time.sleep(0.5)
        stop.set()
        poller.join()
        assert answers and all(status == 200 for status, _, _ in answers)  # serving never paused
        versions = [(m, i) for _, m, i in answers]
        assert versions[0][0] == "content-v0" and versions[-1][0] == run.version
        assert {m for m, _ in versions} == {"content-v0", run.version}
        # a response never mixes versions: each model version comes with its own index version
        assert len({i for m, i in versions if m == run.version}) == 1
        with EventProducer(settings) as producer:
            producer.send({"user_id": user, "item_id": data.items[2]["item_id"], "event_type": "play",
                           "timestamp_ms": int(time.time() * 1000), "value": 100.0})
        recs = wait_for(lambda: [r for r in recommendations_for(settings, user) if r["model_version"] == run.version],
                        what="a recommendation from the new version")
        assert recs[-1]["source"] == "personal"

        # a second run is gated against the version being served, on the same held-out tail
        second = train_once(settings, config, margin=0.0, select="fixed")
        assert second.current_version == run.version and second.current_metrics is not None
        assert second.warm_started and not run.warm_started
        assert second.published == (second.metrics["ndcg@10"] >= second.current_metrics["ndcg@10"])
    finally:
        worker.stop()

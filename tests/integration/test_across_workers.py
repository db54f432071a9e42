"""Answers over all workers, on the real broker: similar users and trending items from two workers
equal those of one worker holding every user and event."""

from __future__ import annotations

import pytest

from models.data.synthetic import generate_demo_dataset
from stream.core.topics import TRENDING
from stream.kafka.producer import EventProducer
from stream.settings import Settings
from tests.helpers import free_port
from tests.worker_harness import WorkerProcess, schema_violations, start_catalogue_worker, topic_json, wait_for

pytestmark = pytest.mark.kafka


def close(got: list[dict], want: list[dict], key: str) -> bool:
    return [g[key] for g in got] == [w[key] for w in want] and all(
        abs(g["score"] - w["score"]) <= 2e-6 for g, w in zip(got, want))


def test_similar_users_and_trending_over_two_workers_equal_one_worker_holding_everything(kafka_bootstrap, tmp_path):
    data = generate_demo_dataset(n_users=40, n_items=50, events_per_user=8, seed=17)
    # A half-life of the generated events' month, so every event counts (with an hour, all but the
    # last few hours' would decay below the counters' 1e-9 floor, and the tail's order be noise).
    quick = {"trending_publish_interval_s": 1.0, "trending_half_life_s": 30 * 86400.0}
    _, single = start_catalogue_worker(kafka_bootstrap, tmp_path / "one", "itaw1", 4, data.items, **quick)
    settings, first = start_catalogue_worker(kafka_bootstrap, tmp_path / "two", "itaw2", 4, data.items, **quick)
    second = None
    try:
        other = Settings(**{**settings.model_dump(), "web_port": free_port(), "data_dir": tmp_path / "b" / "state"})
        second = WorkerProcess(other, tmp_path / "b.log").start()
        pair = (first, second)
        wait_for(lambda: [len(w.get("/healthz")[1]["partitions"]) for w in pair] == [2, 2], timeout=90,
                 what="the four partitions shared by the two workers")
        for target in (single.settings, settings):
            with EventProducer(target) as producer:
                producer.send_many(data.events)
        n = len(data.events)
        wait_for(lambda: single.metric("streamrec_worker_events_applied_total") == n
                 and sum(w.metric("streamrec_worker_events_applied_total") for w in pair) == n,
                 timeout=120, what="every event applied on both sides")
        assert all(w.metric("streamrec_worker_events_applied_total") > 0 for w in pair)  # both took a share

        # Trending: each worker adds the other's published counts to its own.
        want = single.get("/items/trending?k=15")[1]["items"]
        assert len(want) == 15 and want[-1]["score"] > 0.01
        for worker in pair:
            wait_for(lambda w=worker: close(w.get("/items/trending?k=15")[1]["items"], want, "item_id"), timeout=30,
                     what=f"{worker.url}'s trending equal to the single worker's")
        category = data.items[0]["category"]
        want = single.get(f"/items/trending?k=5&category={category}")[1]["items"]
        assert want and close(first.get(f"/items/trending?k=5&category={category}")[1]["items"], want, "item_id")
        snapshots = [v for _, v in topic_json(settings, TRENDING)]
        assert sorted({s["partition"] for s in snapshots}) == [0, 1, 2, 3]
        assert schema_violations(TRENDING, snapshots) == []

        # Similar users: the owner searches its users and asks the other worker for its nearest.
        owned = {w.url: set(w.get("/healthz")[1]["partitions"]) for w in pair}
        from kafka.partitioner.default import murmur2

        def partition(user: str) -> int:
            return (murmur2(user.encode()) & 0x7FFFFFFF) % 4

        crossed = 0
        for user in data.user_ids[:12]:
            status, want = single.get(f"/users/{user}/similar?k=6")
            assert status == 200 and want["workers"] == 1 and not want["partial"]
            for worker in pair:
                status, got = worker.get(f"/users/{user}/similar?k=6")
                assert status == 200 and got["workers"] == 2 and not got["partial"], got
                assert close(got["users"], want["users"], "user_id"), (user, got, want)
            home = next(url for url, parts in owned.items() if partition(user) in parts)
            crossed += any(partition(u["user_id"]) not in owned[home] for u in want["users"])
        assert crossed, "some neighbours live on the other worker: the answer is not one worker's alone"

        # A restarted worker reads its users' vectors back from the table: no event needed.
        second.stop()
        second.start()
        wait_for(lambda: [len(w.get("/healthz")[1]["partitions"]) for w in pair] == [2, 2], timeout=90,
                 what="the partitions shared again")
        for user in data.user_ids[:12]:
            want = single.get(f"/users/{user}/similar?k=6")[1]
            wait_for(lambda u=user, want=want: close(first.get(f"/users/{u}/similar?k=6")[1]["users"], want["users"],
                                                     "user_id"), timeout=30, what=f"{user}'s neighbours after the restart")
    finally:
        if second is not None:
            second.stop()
        first.stop()
        single.stop()

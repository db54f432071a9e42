"""The worker's HTTP API on the real broker: the bearer token, requests routed to the owning
worker, and Faust's built-in /table and /router views switched off."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from models.data.synthetic import generate_demo_dataset
from stream.kafka.admin import ensure_topics
from stream.kafka.producer import EventProducer, publish_catalog
from stream.settings import Settings
from tests.helpers import free_port
from tests.worker_harness import WorkerProcess, wait_for

pytestmark = pytest.mark.kafka

TOKEN = "it-token-" + uuid.uuid4().hex
PARTITIONS = 4


def make_settings(kafka_bootstrap: str, root, **overrides) -> Settings:
    prefix = f"ith-{uuid.uuid4().hex[:10]}."
    return Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS,
                    data_dir=root / "state", artifacts_dir=root / "artifacts", web_port=free_port(),
                    app_id=f"streamrec-{prefix.rstrip('.')}", top_k=5, **overrides)


def raw_get(worker: WorkerProcess, path: str, authorization: str | None = None) -> tuple[int, dict, object]:
    """``(status, headers, body)`` of a GET with exactly the Authorization header given."""
    request = urllib.request.Request(worker.url + path)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, headers, body = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, headers, body = e.code, dict(e.headers), e.read()
    try:
        return status, headers, json.loads(body)
    except ValueError:
        return status, headers, body.decode(errors="replace")


def owner_partition(user: str) -> int:
    from kafka.partitioner.default import murmur2

    return (murmur2(user.encode()) & 0x7FFFFFFF) % PARTITIONS


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=40, n_items=40, events_per_user=8, seed=14)


def start_with_events(settings: Settings, data, users: list[str], log) -> tuple[WorkerProcess, dict[str, int]]:
    ensure_topics(settings)
    publish_catalog(settings, data.items)
    worker = WorkerProcess(settings, log).start()
    sent = [e for e in data.events if e["user_id"] in users]
    with EventProducer(settings) as producer:
        producer.send_many(sent)
    counts = {u: sum(1 for e in sent if e["user_id"] == u) for u in users}
    return worker, counts


def history_length(worker: WorkerProcess, user: str) -> int | None:
    status, body = worker.get(f"/recommendations/{user}")
    return body["history_length"] if status == 200 else None


def test_token_on_every_endpoint_and_on_requests_routed_to_the_owner(kafka_bootstrap, tmp_path, data):
    settings = make_settings(kafka_bootstrap, tmp_path, api_token=TOKEN)
    users = data.user_ids[:16]
    first, counts = start_with_events(settings, data, users, tmp_path / "a.log")
    second = None
    try:
        wait_for(lambda: all(history_length(first, u) == counts[u] for u in users), timeout=60,
                 what="all users applied on the first worker")
        other = Settings(**{**settings.model_dump(), "web_port": free_port(), "data_dir": tmp_path / "state-b"})
        second = WorkerProcess(other, tmp_path / "b.log").start()
        wait_for(lambda: first.get("/healthz")[1]["partitions"] and second.get("/healthz")[1]["partitions"]
                 and len(first.get("/healthz")[1]["partitions"]) + len(second.get("/healthz")[1]["partitions"])
                 == PARTITIONS, timeout=60, what="partitions shared by both workers")
        owned_by = {w: set(w.get("/healthz")[1]["partitions"]) for w in (first, second)}
        # A user each worker must forward to the other, and one it answers itself.
        remote = {w: [u for u in users if owner_partition(u) not in owned_by[w]] for w in (first, second)}
        assert remote[first] and remote[second], owned_by
        for w in (first, second):
            for u in users:
                wait_for(lambda: history_length(w, u) == counts[u], timeout=30, what=f"{u} via {w.url}")
            wait_for(lambda: w.get(f"/users/{remote[w][0]}/similar?k=3")[0] == 200, timeout=30,
                     what=f"similar users of {remote[w][0]} via {w.url}")

        item = data.items[0]["item_id"]
        for w in (first, second):
            routed, local = remote[w][0], next(u for u in users if u not in remote[w])
            paths = [f"/recommendations/{routed}", f"/recommendations/{local}?k=3", f"/users/{routed}/similar?k=3",
                     f"/users/{local}/similar", f"/items/{item}/similar?k=4", "/metrics", "/"]
            for path in paths:
                for header in (None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
                    status, headers, body = raw_get(w, path, header)
                    assert status == 401, (w.url, path, header, status, body)
                    assert body["status"] == 401 and "bearer token" in body["error"]
                    assert headers["WWW-Authenticate"].startswith("Bearer")
                status, _, body = raw_get(w, path, f"Bearer {TOKEN}")
                assert status == 200, (w.url, path, status, body)
            # The routed answers are the owner's: the forwarded request carried the token.
            assert raw_get(w, f"/recommendations/{routed}", f"Bearer {TOKEN}")[2]["history_length"] == counts[routed]
            # Bounded as without a token: a bad k or id is still 400, with the token.
            assert raw_get(w, f"/recommendations/{routed}?k=100000", f"Bearer {TOKEN}")[0] == 400
            assert raw_get(w, "/recommendations/" + "x" * 300, f"Bearer {TOKEN}")[0] == 400
            assert raw_get(w, "/healthz")[0] == 200
            for path in (f"/table/user-state/{routed}/", f"/table/user-state/{local}/", "/table/", "/router/",
                         "/router/user-state/", "/nothing"):
                assert raw_get(w, path)[0] == 401
                status, _, body = raw_get(w, path, f"Bearer {TOKEN}")
                assert (status, body) == (404, {"error": "not found", "status": 404}), (w.url, path)
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_without_a_token_faust_views_are_gone_and_metrics_can_be_public(kafka_bootstrap, tmp_path, data):
    settings = make_settings(kafka_bootstrap, tmp_path)
    users = data.user_ids[:4]
    worker, counts = start_with_events(settings, data, users, tmp_path / "w.log")
    try:
        wait_for(lambda: all(history_length(worker, u) == counts[u] for u in users), timeout=60,
                 what="all users applied")
        for path in (f"/table/user-state/{users[0]}/", "/table/", "/router/", "/router/user-state/"):
            assert raw_get(worker, path)[:3:2] == (404, {"error": "not found", "status": 404}), path
        assert raw_get(worker, f"/recommendations/{users[0]}")[0] == 200
        assert raw_get(worker, "/metrics")[0] == 200
        worker.stop()
        # A token, with /metrics public for a scraper on a private network.
        worker = WorkerProcess(Settings(**{**settings.model_dump(), "api_token": TOKEN, "metrics_public": True}),
                               tmp_path / "w.log").start()
        assert raw_get(worker, "/metrics")[0] == 200
        assert raw_get(worker, f"/recommendations/{users[0]}")[0] == 401
        assert raw_get(worker, f"/recommendations/{users[0]}", f"Bearer {TOKEN}")[0] == 200
    finally:
        worker.stop()

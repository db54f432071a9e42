"""The streaming worker end to end on the real broker: events in, recommendations out."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from models.data.synthetic import generate_demo_dataset
from stream.kafka.producer import EventProducer
from tests.worker_harness import recommendations_for, schema_violations, start_catalogue_worker, topic_json, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=30, n_items=80, events_per_user=6, seed=5)


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory, data):
    """Topics, the catalogue and one running worker, shared by this module's tests."""
    settings, worker = start_catalogue_worker(kafka_bootstrap, tmp_path_factory.mktemp("worker"), "itw", 4,
                                              data.items)
    yield settings, worker
    worker.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


def send(settings, *events) -> None:
    with EventProducer(settings) as producer:
        for e in events:
            producer.send(e)


def play(user: str, item: str, seconds: float = 150.0) -> dict:
    return {"user_id": user, "item_id": item, "event_type": "play", "timestamp_ms": now_ms(), "value": seconds}


def test_events_lead_to_fresh_recommendations(world, data):
    settings, worker = world
    items = [it["item_id"] for it in data.items]
    send(settings, play("alice", items[0]), play("alice", items[1]))
    recs = wait_for(lambda: recommendations_for(settings, "alice"), what="a recommendation for alice")
    rec = recs[-1]
    assert set(rec) >= {"user_id", "items", "model_version", "index_version", "event_timestamp_ms",
                        "published_ms", "source"}
    assert rec["user_id"] == "alice" and rec["source"] == "personal"
    assert len(rec["items"]) == 5
    assert all(set(r) == {"item_id", "score", "reason"} and r["reason"].startswith("because you played")
               for r in rec["items"])
    consumed = {items[0], items[1]}
    assert not consumed & {r["item_id"] for r in rec["items"]}

    first = {r["item_id"] for r in rec["items"]}
    top = rec["items"][0]["item_id"]
    send(settings, play("alice", top))
    newer = wait_for(lambda: [r for r in recommendations_for(settings, "alice")
                              if r["event_timestamp_ms"] > rec["event_timestamp_ms"]], what="a newer recommendation")
    assert top not in {r["item_id"] for r in newer[-1]["items"]}
    assert {r["item_id"] for r in newer[-1]["items"]} != first


def test_malformed_events_go_to_dead_letter_and_valid_ones_are_processed(world, data):
    settings, worker = world
    item = data.items[3]["item_id"]
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=list(settings.kafka_bootstrap))
    topic = settings.topic("events")
    bad = [
        (b"bob", b"{not json"),
        (b"bob", json.dumps({"user_id": "bob", "item_id": item}).encode()),
        (b"bob", json.dumps({"user_id": "bob", "item_id": item, "event_type": "zap", "timestamp_ms": now_ms()}).encode()),
        (b"bob", json.dumps({"user_id": 7.5, "item_id": item, "event_type": "play", "timestamp_ms": now_ms()}).encode()),
        (b"bob", json.dumps({"user_id": "bob", "item_id": item, "event_type": "play",
                             "timestamp_ms": now_ms() + 10 * 86_400_000}).encode()),
        (b"bob", b"x" * 20_000),
        (b"bob", json.dumps({"user_id": "bob", "item_id": "nope", "event_type": "play", "timestamp_ms": now_ms()}).encode()),
    ]
    producer.send(topic, key=b"bob", value=json.dumps(play("bob", item)).encode())
    for key, value in bad:
        producer.send(topic, key=key, value=value)
    producer.send(topic, key=b"bob", value=json.dumps(play("bob", data.items[4]["item_id"])).encode())
    producer.flush()
    producer.close()

    letters = wait_for(lambda: [v for k, v in topic_json(settings, "dead-letter") if k == b"bob"] if len(
        [1 for k, _ in topic_json(settings, "dead-letter") if k == b"bob"]) >= len(bad) else None,
        timeout=30, what="dead letters")
    assert [l["reason"] for l in letters] == ["bad_json", "missing_field", "unknown_event_type", "wrong_type",
                                              "bad_timestamp", "too_large", "unknown_item"]
    import base64
    assert base64.b64decode(letters[0]["value_b64"]) == b"{not json"
    assert all(l["topic"] == topic and l["offset"] >= 0 for l in letters)
    state = wait_for(lambda: (lambda s: s if s[0] == 200 and s[1]["history_length"] == 2 else None)(
        worker.get("/recommendations/bob")), what="bob's two valid events applied")
    assert state[1]["user_id"] == "bob"


def test_http_api_answers_and_rejects_bad_input(world, data):
    settings, worker = world
    items = [it["item_id"] for it in data.items]
    send(settings, play("carol", items[5]), play("dan", items[5]), play("dan", items[6]))
    wait_for(lambda: recommendations_for(settings, "dan"), what="dan's recommendation")

    status, body = worker.get("/recommendations/carol?k=3")
    assert status == 200 and len(body["items"]) == 3 and items[5] not in [r["item_id"] for r in body["items"]]
    status, body = worker.get(f"/items/{items[5]}/similar?k=4")
    assert status == 200 and len(body["items"]) == 4 and items[5] not in [r["item_id"] for r in body["items"]]
    topic = next(it["category"] for it in data.items if it["item_id"] == items[5])
    same = {it["item_id"] for it in data.items if it["category"] == topic}
    assert body["items"][0]["item_id"] in same
    status, body = worker.get("/users/carol/similar?k=5")
    assert status == 200 and "dan" in [u["user_id"] for u in body["users"]]

    assert worker.get("/recommendations/nobody")[0] == 404
    assert worker.get("/items/nothing/similar")[0] == 404
    assert worker.get("/users/nobody/similar")[0] == 404
    for bad in ("?k=0", "?k=-1", "?k=abc", "?k=1000001", f"?k={settings.max_k + 1}"):
        status, body = worker.get("/recommendations/carol" + bad)
        assert status == 400 and "k must be" in body["error"], bad
    status, body = worker.get("/recommendations/" + urllib.parse.quote("x" * 200))
    assert status == 400
    status, body = worker.get("/healthz")
    assert status == 200 and body["model_version"] == "content-v0"
    status, text = worker.get("/metrics")
    assert status == 200 and "streamrec_worker_events_consumed_total" in text


def test_query_time_filters_on_the_http_api(world, data):
    settings, worker = world
    items = [it["item_id"] for it in data.items]
    category = {it["item_id"]: it["category"] for it in data.items}
    send(settings, play("gina", items[9]), play("gina", items[10]))
    wait_for(lambda: (lambda s: s if s[0] == 200 and s[1]["history_length"] == 2 else None)(
        worker.get("/recommendations/gina")), what="gina's events applied")
    wanted = next(c for c in sorted(set(category.values())) if c != category[items[9]])
    members = sorted(i for i, c in category.items() if c == wanted)
    left_out = ",".join(members[:2])
    status, body = worker.get(f"/recommendations/gina?k=4&category={urllib.parse.quote(wanted)}&exclude={left_out}")
    assert status == 200 and len(body["items"]) == min(4, len(members) - 2), body
    assert {category[r["item_id"]] for r in body["items"]} == {wanted}
    assert not {r["item_id"] for r in body["items"]} & set(members[:2])
    status, body = worker.get(f"/items/{items[9]}/similar?k=3&category={urllib.parse.quote(wanted)}")
    assert status == 200 and len(body["items"]) == 3 and {category[r["item_id"]] for r in body["items"]} == {wanted}
    for hostile in ("%00", "%ff%fe", "a%0Ab", ","):
        status, body = worker.get(f"/recommendations/gina?category={hostile}&exclude={hostile}")
        assert status in (200, 400) and "error" in body or "items" in body, (hostile, status, body)
    status, body = worker.get("/recommendations/gina?category=no-such-thing")
    assert status == 400 and "not in the catalogue" in body["error"]
    assert worker.get(f"/items/{items[9]}/similar?category=no-such-thing")[0] == 400
    assert worker.get("/recommendations/gina?exclude=" + ",".join(["x"] * 1001))[0] == 400
    assert worker.get("/recommendations/gina?category=" + "x" * 500)[0] == 400


def test_events_posted_over_http_are_validated_written_and_applied(world, data):
    settings, worker = world
    items = [it["item_id"] for it in data.items]
    events = [play("hana", items[3]), {"user_id": "hana", "item_id": items[4], "event_type": "teleport",
                                       "timestamp_ms": now_ms()}, "not an object", play("ivan", items[3])]
    status, body = worker.get("/events", body=json.dumps(events).encode())
    assert status == 202 and body["accepted"] == 2, body
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(1, "unknown_event_type"), (2, "not_an_object")]
    # Written to the events topic, keyed by user, before the answer; the worker applies them.
    import asyncio

    from stream.kafka.reader import read_range

    written = [(r.key, r.value) for r in asyncio.run(read_range(settings, settings.topic("events")))]
    assert [json.loads(v)["item_id"] for k, v in written if k == b"hana"] == [items[3]]
    assert [json.loads(v)["user_id"] for k, v in written if k == b"ivan"] == ["ivan"]
    state = wait_for(lambda: (lambda s: s if s[0] == 200 else None)(worker.get("/recommendations/hana")),
                     what="hana's posted event applied")
    assert state[1]["history_length"] == 1
    status, body = worker.get("/events", body=json.dumps(play("ivan", items[5])).encode())  # one object
    assert status == 202 and body == {"accepted": 1, "rejected": []}
    huge_int = b'{"user_id": "x", "item_id": "i", "event_type": "play", "timestamp_ms": ' + b"9" * 40 + b"}"
    for bad in (b"{not json", b"[]", b"[" * 5000 + b"]" * 5000, json.dumps([play("x", items[0])] * 1001).encode(),
                b"\xff\xfe\x00", b""):
        status, body = worker.get("/events", body=bad)
        assert status == 400 and body["status"] == 400, bad[:20]
    status, body = worker.get("/events", body=huge_int)  # a JSON body, one bad event in it: a 202 that says why
    assert status == 202 and body["accepted"] == 0 and [r["index"] for r in body["rejected"]] == [0], body
    status, body = worker.get("/events", body=b" " * (1024 * 1024 + 10))
    assert status == 413
    assert worker.metric("streamrec_worker_http_events_total") >= 5


def test_cold_start_user_and_new_item(world, data):
    settings, worker = world
    items = [it["item_id"] for it in data.items]
    send(settings, {"user_id": "erin", "item_id": items[7], "event_type": "skip", "timestamp_ms": now_ms(),
                    "value": 2.0})
    rec = wait_for(lambda: recommendations_for(settings, "erin"), what="erin's recommendation")[-1]
    assert rec["source"] == "trending" and items[7] not in [r["item_id"] for r in rec["items"]]

    fresh = {"item_id": "fresh-1", "title": "Brand New Jazz", "text": "saxophone swing trio bebop smoky brass blue",
             "tags": ["jazz"], "category": "jazz", "kind": "track"}
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=list(settings.kafka_bootstrap))
    producer.send(settings.topic("items"), key=b"fresh-1", value=json.dumps(fresh).encode()).get(timeout=10)
    producer.close()
    jazz = next(it["item_id"] for it in data.items if it["category"] == "jazz")
    similar = wait_for(lambda: (lambda s: s[1] if s[0] == 200 and "fresh-1" in [i["item_id"] for i in s[1]["items"]]
                                else None)(worker.get(f"/items/{jazz}/similar?k=20")), what="fresh item indexed")
    assert similar
    send(settings, play("frank", "fresh-1"))
    assert wait_for(lambda: recommendations_for(settings, "frank"), what="frank's recommendation")


def test_hostile_catalogue_records_and_announcements_never_stop_the_worker(world, data):
    # Records an outside client may write: each used to crash the worker, and the compacted
    # items topic replayed it on every restart.
    settings, worker = world
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=list(settings.kafka_bootstrap))
    for value in (b'{"item_id":"i9","title":"Bad","tags":5}', b"null", b"[1,2]", b"\xff\xfe", b'"text"',
                  b'{"item_id": {"nested": 1}}', b'{"title": "no id"}', b"{" * 5000):
        producer.send(settings.topic("items"), key=b"i9", value=value)
    rejected_before = worker.metric("streamrec_worker_model_swaps_total")
    for value in (b"null", b"[]", b'"v1"', b'{"version": "../../etc"}', b'{"version": "/tmp/x"}',
                  b'{"version": 7}', b"{not json"):
        producer.send(settings.topic("model-updates"), key=b"v", value=value)
    # Hostile experiment records (model-updates) and trending counts (trending).
    for value in (b'{"experiment": 5}', b'{"experiment": {"name": "x", "arms": [], "started_ms": 1}}',
                  b'{"experiment": {"name": "../x", "arms": [{"name": "a", "version": "v", "share": 1}], '
                  b'"started_ms": 1}}'):
        producer.send(settings.topic("model-updates"), key=b"experiment:x", value=value)
    for value in (b"null", b'{"partition": 99, "ref_ms": 1, "scores": {}}', b'{"partition": 0, "ref_ms": 1, '
                  b'"scores": {"i1": -5}}', b'{"partition": 0, "ref_ms": 1, "scores": {"i1": 1e308}}', b"\xff"):
        producer.send(settings.topic("trending"), key=b"0", value=value)
    good = {"item_id": "after-bad", "title": "Quiet Harbour", "tags": ["jazz"], "category": "jazz"}
    producer.send(settings.topic("items"), key=b"after-bad", value=json.dumps(good).encode())
    producer.flush()
    producer.close()
    jazz = next(it["item_id"] for it in data.items if it["category"] == "jazz")
    wait_for(lambda: "after-bad" in [i["item_id"] for i in worker.get(f"/items/{jazz}/similar?k=100")[1]["items"]],
             what="the valid item after the bad ones indexed")
    wait_for(lambda: worker.metric("streamrec_worker_model_swaps_total") >= rejected_before + 10,
             what="the bad announcements and experiment records refused")
    assert worker.get("/healthz")[1]["model_version"] == "content-v0"
    items_topic = settings.topic("items")
    letters = wait_for(lambda: (lambda ls: ls if len(ls) >= 8 else None)(
        [v for _, v in topic_json(settings, "dead-letter") if v["topic"] == items_topic]), what="items' dead letters")
    assert {l["reason"] for l in letters} >= {"wrong_type", "not_an_object", "bad_encoding", "missing_field", "bad_json"}
    assert worker.metric("streamrec_worker_records_rejected_total") >= 8
    trending_topic = settings.topic("trending")
    letters = wait_for(lambda: (lambda ls: ls if len(ls) >= 5 else None)(
        [v for _, v in topic_json(settings, "dead-letter") if v["topic"] == trending_topic]),
        what="trending's dead letters")
    assert {l["reason"] for l in letters} == {"not_an_object", "bad_partition", "bad_value", "bad_encoding"}
    assert worker.get("/items/trending?k=3")[0] == 200
    # A user state that is not one, written to the changelog by another client: restored into
    # RocksDB at the next start.
    changelog = f"{settings.app_id}-user-state-changelog"
    producer = KafkaProducer(bootstrap_servers=list(settings.kafka_bootstrap))
    producer.send(changelog, key=b"mallory", value=b'{"history": 5, "embedding": [1]}').get(timeout=10)
    producer.close()
    worker.stop()
    worker.start()  # the bad records are replayed: the worker must start and serve all the same
    status, health = worker.get("/healthz")
    assert status == 200 and health["model_version"] == "content-v0"
    assert worker.get("/items/after-bad/similar?k=3")[0] == 200
    status, body = worker.get("/recommendations/mallory")
    assert status == 503 and "unreadable" in body["error"]
    send(settings, play("mallory", data.items[2]["item_id"]))
    wait_for(lambda: worker.get("/recommendations/mallory")[1].get("history_length") == 1,
             what="mallory starting afresh")
    letter = wait_for(lambda: [v for k, v in topic_json(settings, "dead-letter") if v["topic"] == changelog],
                      what="the bad state dead-lettered")[0]
    assert letter["reason"] == "bad_state" and letter["offset"] == -1 and letter["key_b64"] == "bWFsbG9yeQ=="


def test_a_tombstone_takes_an_item_down(world, data):
    settings, worker = world
    items = [it["item_id"] for it in data.items]
    target, seed = items[20], items[21]
    assert worker.get(f"/items/{target}/similar")[0] == 200
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=list(settings.kafka_bootstrap))
    producer.send(settings.topic("items"), key=target.encode(), value=None).get(timeout=10)
    producer.close()
    wait_for(lambda: worker.get(f"/items/{target}/similar")[0] == 404, what="the item taken down")
    similar = worker.get(f"/items/{seed}/similar?k=100")[1]["items"]
    assert target not in [i["item_id"] for i in similar]
    send(settings, play("ivan", seed), play("ivan", target))  # an event of the item taken down: unknown now
    rec = wait_for(lambda: recommendations_for(settings, "ivan"), what="ivan's recommendation")[-1]
    assert target not in [r["item_id"] for r in rec["items"]]
    wait_for(lambda: [v for k, v in topic_json(settings, "dead-letter") if k == b"ivan" and v["reason"] == "unknown_item"],
             what="the event of the removed item dead-lettered")


def test_http_answers_what_was_published_and_every_record_fits_its_schema(world, data):
    # Last in this module: nothing is sent after greta's events, so GET must recompute exactly
    # the recommendation the worker published (one builder for both).
    settings, worker = world
    items = [it["item_id"] for it in data.items]
    send(settings, play("greta", items[10]), play("greta", items[11]), play("greta", items[12]))
    published = wait_for(lambda: [r for r in recommendations_for(settings, "greta") if r["event_offset"] is not None
                                  and worker.get("/recommendations/greta")[1].get("history_length") == 3],
                         what="greta's recommendation")[-1]
    status, answer = worker.get("/recommendations/greta")
    assert status == 200 and answer["history_length"] == 3
    assert answer["items"] == published["items"] and len(answer["items"]) == settings.top_k
    for field in ("user_id", "source", "model_version", "index_version", "event_offset", "event_timestamp_ms"):
        assert answer[field] == published[field], field

    import asyncio

    from stream.core.events import parse_event
    from stream.core.items import parse_item
    from stream.errors import InvalidRecord
    from stream.kafka.reader import read_range

    def accepted(parse):  # InvalidEvent is an InvalidRecord
        def check(raw: bytes) -> bool:
            try:
                parse(raw)
                return True
            except InvalidRecord:
                return False
        return check

    def published(topic: str, valid=lambda raw: True) -> list:  # topics outside clients wrote to are filtered
        return [json.loads(r.value) for r in asyncio.run(read_range(settings, settings.topic(topic)))
                if r.value is not None and valid(r.value)]

    records = {"events": published("events", accepted(parse_event)), "items": published("items", accepted(parse_item)),
               "recommendations": published("recommendations"), "dead-letter": published("dead-letter")}
    assert all(records.values()), {t: len(v) for t, v in records.items()}
    assert [v for topic, values in records.items() for v in schema_violations(topic, values)] == []

"""The worker's batch logic on a real (flat FAISS) index, without Kafka."""

import json

import numpy as np
import pytest

from models.data.synthetic import generate_demo_dataset
from stream.core.dead_letters import DeadLetter
from stream.core.records import Record
from stream.core.state import UserState
from stream.core.trending import TrendingCounter
from stream.serving.model import ModelHolder, bootstrap_model
from stream.serving.processor import KEY_MISMATCH, MISSING_KEY, NO_MODEL, UNKNOWN_ITEM, BatchProcessor

NOW = 1_767_300_000_000


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=20, n_items=60, events_per_user=5, seed=11)


@pytest.fixture
def processor(data):
    holder = ModelHolder(bootstrap_model(data.items, dim=32))
    return BatchProcessor(holder, TrendingCounter(), top_k=5, max_history=50)


class Store(dict):
    def load(self, user_id: str, record: Record | None = None) -> UserState:
        return UserState.from_json(self.get(user_id))


def record(offset: int, value, key: bytes | None = None, partition: int = 0) -> Record:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    if key is None and isinstance(value, dict) and isinstance(value.get("user_id"), str):
        key = value["user_id"].encode()
    return Record("events", partition, offset, key, raw, NOW)


def ev(user: str, item: str, etype: str = "play", ts: int = NOW - 10_000, value: float | None = 120.0) -> dict:
    out = {"user_id": user, "item_id": item, "event_type": etype, "timestamp_ms": ts}
    if value is not None:
        out["value"] = value
    return out


def test_recommendations_exclude_consumed_and_explain(processor, data):
    items = [it["item_id"] for it in data.items]
    batch = [record(0, ev("alice", items[0])), record(1, ev("alice", items[1], ts=NOW - 5000)),
             record(2, ev("bob", items[2]))]
    result = processor.process(batch, Store().load, now_ms=NOW)
    assert not result.dead_letters and result.applied == 3
    assert set(result.updates) == {"alice", "bob"}  # one recommendation per user per batch
    rec = result.updates["alice"].recommendation.to_dict()
    assert rec["event_offset"] == 1 and rec["event_timestamp_ms"] == NOW - 5000
    assert rec["source"] == "personal" and rec["model_version"] == "content-v0"
    got = [r["item_id"] for r in rec["items"]]
    assert len(got) == 5 and not {items[0], items[1]} & set(got)
    titles = {it["item_id"]: it["title"] for it in data.items}
    assert all(r["reason"] in (f"because you played {titles[items[0]]}", f"because you played {titles[items[1]]}")
               for r in rec["items"])
    assert result.updates["alice"].state.embedding.shape == (32,)


def test_content_vectors_recommend_the_same_topic(processor, data):
    by_topic = {}
    for it in data.items:
        by_topic.setdefault(it["category"], []).append(it["item_id"])
    topic, members = next((t, m) for t, m in by_topic.items() if len(m) >= 5)
    batch = [record(n, ev("carol", item)) for n, item in enumerate(members[:3])]
    rec = processor.process(batch, Store().load, now_ms=NOW).updates["carol"].recommendation.to_dict()
    topic_of = {it["item_id"]: it["category"] for it in data.items}
    assert topic_of[rec["items"][0]["item_id"]] == topic


def test_bad_records_become_dead_letters_and_the_rest_is_processed(processor, data):
    item = data.items[0]["item_id"]
    batch = [
        record(0, b"{not json", key=b"x"),
        record(1, ev("dave", item)),
        record(2, ev("dave", "no-such-item")),
        record(3, ev("erin", item), key=b"mallory"),
        record(4, {**ev("erin", item), "event_type": "zap"}),
        record(5, None, key=b"k"),
        record(6, ev("erin", item)),
    ]
    batch[5] = Record("events", 0, 5, b"k", None, NOW)
    result = processor.process(batch, Store().load, now_ms=NOW)
    reasons = [(r.offset, reason) for r, reason, _ in result.dead_letters]
    assert reasons == [(0, "bad_json"), (2, UNKNOWN_ITEM), (3, KEY_MISMATCH), (4, "unknown_event_type"),
                       (5, "bad_json")]
    assert set(result.updates) == {"dave", "erin"} and result.applied == 2
    letter = json.loads(DeadLetter.of(batch[0], "bad_json", "detail", NOW).encode())
    assert letter["offset"] == 0 and letter["reason"] == "bad_json"
    import base64
    assert base64.b64decode(letter["value_b64"]) == b"{not json"


def test_redelivered_offsets_are_not_applied_twice(processor, data):
    store = Store()
    item = data.items[0]["item_id"]
    first = processor.process([record(7, ev("frank", item))], store.load, now_ms=NOW)
    store["frank"] = first.updates["frank"].state.to_json()
    again = processor.process([record(7, ev("frank", item)), record(8, ev("frank", data.items[1]["item_id"]))],
                              store.load, now_ms=NOW)
    assert again.duplicates == 1 and again.applied == 1
    assert again.updates["frank"].state.counts == {"play": 2}


def test_redelivery_alone_rewrites_state_and_republishes(processor, data):
    # After a crash the local database can hold a state whose changelog record (and
    # recommendation) never reached Kafka; the redelivered event must write both again.
    store = Store()
    item = data.items[0]["item_id"]
    first = processor.process([record(7, ev("frank", item))], store.load, now_ms=NOW)
    store["frank"] = first.updates["frank"].state.to_json()
    again = processor.process([record(7, ev("frank", item))], store.load, now_ms=NOW)
    assert again.duplicates == 1 and again.applied == 0
    update = again.updates["frank"]
    assert update.state.to_json()["history"] == store["frank"]["history"]
    assert update.state.counts == {"play": 1} and update.state.last_offset == 7
    assert update.recommendation is not None and update.recommendation.event_offset == 7


def test_skip_only_user_gets_trending_items(processor, data):
    ids = [it["item_id"] for it in data.items]
    warm = [record(n, ev(f"w{n}", ids[5])) for n in range(3)] + [record(3, ev("w9", ids[6]))]
    processor.process(warm, Store().load, now_ms=NOW)
    result = processor.process([record(10, ev("gina", ids[0], "skip", value=2.0))], Store().load, now_ms=NOW)
    rec = result.updates["gina"].recommendation.to_dict()
    assert rec["source"] == "trending"
    assert [r["item_id"] for r in rec["items"]][:2] == [ids[5], ids[6]]


def test_online_hit_rate_counts_hits_against_the_last_recommendation(processor, data):
    store = Store()
    item = data.items[0]["item_id"]
    first = processor.process([record(0, ev("hank", item))], store.load, now_ms=NOW)
    state = first.updates["hank"].state
    store["hank"] = state.to_json()
    recommended = state.last_recs[0]
    second = processor.process([record(1, ev("hank", recommended)),
                                record(2, ev("hank", recommended, "skip"))], store.load, now_ms=NOW)
    assert (second.online_trials, second.online_hits) == (1, 1)  # the skip is not a trial


def test_without_a_model_events_are_dead_lettered_not_dropped(data):
    processor = BatchProcessor(ModelHolder(None), TrendingCounter())
    result = processor.process([record(0, ev("ivy", data.items[0]["item_id"]))], Store().load, now_ms=NOW)
    assert [reason for _, reason, _ in result.dead_letters] == [NO_MODEL]


def test_new_catalogue_item_is_recommendable_at_once(processor, data):
    model = processor.holder.current
    fresh = {"item_id": "brand-new", "title": "Fresh Jazz", "text": "saxophone swing trio bebop smoky brass",
             "tags": ["jazz"], "category": "jazz"}
    assert model.add_items([fresh]) == 1 and model.add_items([fresh]) == 0
    jazz = [it["item_id"] for it in data.items if it["category"] == "jazz"]
    assert "brand-new" in [i for i, _ in model.similar_items(jazz[0], 10)]
    assert model.similar_items("brand-new", 3)[0][0] in jazz


def test_exactly_once_does_not_republish_a_redelivery(data, processor):
    # Under exactly_once the redelivered event's state and recommendation were committed
    # in an earlier transaction: publishing again would show a duplicate to consumers.
    eos = BatchProcessor(processor.holder, processor.trending, rewrite_redelivered=False)
    store = Store()
    item = data.items[0]["item_id"]
    store["frank"] = eos.process([record(7, ev("frank", item))], store.load, now_ms=NOW).updates["frank"].state.to_json()
    again = eos.process([record(7, ev("frank", item))], store.load, now_ms=NOW)
    assert again.duplicates == 1 and again.updates == {}


def test_records_without_a_key_are_dead_lettered(processor, data):
    item = data.items[0]["item_id"]
    batch = [Record("events", 0, 0, None, json.dumps(ev("hank", item)).encode(), NOW),
             Record("events", 0, 1, b"", json.dumps(ev("hank", item)).encode(), NOW),
             record(2, ev("hank", item))]
    result = processor.process(batch, Store().load, now_ms=NOW)
    assert [(r.offset, reason) for r, reason, _ in result.dead_letters] == [(0, MISSING_KEY), (1, MISSING_KEY)]
    assert result.applied == 1 and result.updates["hank"].state.last_offset == 2

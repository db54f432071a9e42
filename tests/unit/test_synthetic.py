import numpy as np
import pytest

from models.data.synthetic import TOPICS, generate_demo_dataset
from stream.core.events import parse_event


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=150, n_items=120, events_per_user=30, seed=3)


def test_same_seed_same_data(data):
    again = generate_demo_dataset(n_users=150, n_items=120, events_per_user=30, seed=3)
    assert again.events == data.events and again.items == data.items
    other = generate_demo_dataset(n_users=150, n_items=120, events_per_user=30, seed=4)
    assert other.events != data.events


def test_every_event_is_valid_and_in_time_order(data):
    now = data.events[-1]["timestamp_ms"]
    for e in data.events:
        parse_event(e, now_ms=now)
    ts = [e["timestamp_ms"] for e in data.events]
    assert ts == sorted(ts)
    item_ids = {it["item_id"] for it in data.items}
    assert {e["item_id"] for e in data.events} <= item_ids


def test_catalogue_has_text_metadata(data):
    for item in data.items:
        assert item["category"] in TOPICS
        assert item["category"] in item["text"] and item["title"]
        assert item["category"] in item["tags"]


def test_users_follow_their_latent_taste(data):
    # The share of a user's events on their favourite topic is far above uniform (1/12).
    topic_of = {it["item_id"]: list(TOPICS).index(it["category"]) for it in data.items}
    shares = []
    for u, uid in enumerate(data.user_ids):
        events = [topic_of[e["item_id"]] for e in data.events if e["user_id"] == uid]
        favourite = int(np.argmax(data.user_topics[u]))
        shares.append(np.mean([t == favourite for t in events]))
    assert np.mean(shares) > 0.4


def test_poor_matches_are_skipped_more(data):
    topic_of = {it["item_id"]: list(TOPICS).index(it["category"]) for it in data.items}
    uindex = {uid: i for i, uid in enumerate(data.user_ids)}
    aff = {"skip": [], "play": []}
    for e in data.events:
        if e["event_type"] in aff:
            aff[e["event_type"]].append(data.user_topics[uindex[e["user_id"]], topic_of[e["item_id"]]])
    assert np.mean(aff["play"]) > np.mean(aff["skip"])


def test_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        generate_demo_dataset(n_users=0)

"""Query-time filters (issue: category and exclude on the HTTP API), applied inside retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from index import IndexConfig
from models.data.synthetic import generate_demo_dataset
from stream.core.state import UserState, apply_event
from stream.core.trending import TrendingCounter
from stream.serving.model import bootstrap_model
from stream.serving.processor import BatchProcessor

NOW = 1_767_300_000_000


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=20, n_items=400, events_per_user=5, seed=4)


@pytest.fixture(params=["flat", "hnsw"])
def model(request, data):
    return bootstrap_model(data.items, dim=32, index_config=IndexConfig(kind=request.param, hnsw_m=8))


def category_of(data):
    return {it["item_id"]: it["category"] for it in data.items}


def user_with(items):
    state = UserState()
    for offset, item in enumerate(items):
        apply_event(state, item, "play", NOW - 1000 + offset, None, offset, 50)
    return state


def test_a_category_filter_gives_k_items_of_that_category_and_nothing_consumed(model, data):
    categories = category_of(data)
    history = [it["item_id"] for it in data.items[:8]]
    wanted = categories[data.items[-1]["item_id"]]
    in_wanted = sorted(i for i, c in categories.items() if c == wanted)
    allowed = model.in_category(wanted)
    assert sorted(model.item_ids[p] for p in allowed) == in_wanted
    processor = BatchProcessor(None, TrendingCounter(), top_k=10)
    [rec], _ = processor.recommend(model, ["u"], [user_with(history)], 10, NOW, allowed=allowed,
                                   exclude_items=in_wanted[:3])
    assert rec.source == "personal" and len(rec.item_ids) == 10
    assert {categories[i] for i in rec.item_ids} == {wanted}
    assert not set(rec.item_ids) & (set(history) | set(in_wanted[:3]))
    # Without the filter the same user gets the nearest items of any category.
    [plain], _ = processor.recommend(model, ["u"], [user_with(history)], 10, NOW)
    assert len({categories[i] for i in plain.item_ids}) >= 1 and not set(plain.item_ids) & set(history)


def test_k_results_whenever_k_match_even_when_few_do(model, data):
    categories = category_of(data)
    rare = data.items[5]
    model.add_items([{**rare, "item_id": f"rare-{n}", "category": "rare-cat"} for n in range(3)])
    allowed = model.in_category("rare-cat")
    assert allowed.size == 3
    processor = BatchProcessor(None, TrendingCounter(), top_k=10)
    [rec], _ = processor.recommend(model, ["u"], [user_with([data.items[0]["item_id"]])], 10, NOW, allowed=allowed)
    assert sorted(rec.item_ids) == ["rare-0", "rare-1", "rare-2"]
    model.remove_items(["rare-1"])  # taken down: out of the filter too
    assert sorted(model.item_ids[p] for p in model.in_category("rare-cat")) == ["rare-0", "rare-2"]
    assert model.in_category("no-such-category").size == 0
    assert categories  # the generated catalogue has categories


def test_users_served_trending_items_get_the_filter_too(model, data):
    categories = category_of(data)
    trending = TrendingCounter()
    for n, it in enumerate(data.items[:60]):
        trending.add(it["item_id"], NOW, 1.0 + n)
    wanted = categories[data.items[0]["item_id"]]
    processor = BatchProcessor(None, trending, top_k=10)
    skipped = UserState()
    apply_event(skipped, data.items[1]["item_id"], "skip", NOW, None, 0, 50)  # no positive signal: trending
    [rec], _ = processor.recommend(model, ["v"], [skipped], 5, NOW, allowed=model.in_category(wanted),
                                   exclude_items=[data.items[0]["item_id"]])
    assert rec.source == "trending" and rec.item_ids
    assert {categories[i] for i in rec.item_ids} == {wanted} and data.items[0]["item_id"] not in rec.item_ids


def test_similar_items_take_the_filters(model, data):
    categories = category_of(data)
    anchor = data.items[10]["item_id"]
    other = next(c for c in sorted(set(categories.values())) if c != categories[anchor])
    similar = model.similar_items(anchor, 7, exclude=[data.items[11]["item_id"]], allowed=model.in_category(other))
    assert len(similar) == 7 and {categories[i] for i, _ in similar} == {other}
    assert anchor not in [i for i, _ in similar] and data.items[11]["item_id"] not in [i for i, _ in similar]
    scores = [s for _, s in similar]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_equal(model.category_of(anchor), categories[anchor])

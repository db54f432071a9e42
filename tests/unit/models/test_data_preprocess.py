"""Cleaning rules: invalid rows with reasons, de-duplication, weights, repeats, k-core, id maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.data.dataset import IdMap, load_dataset
from models.data.loaders import from_events, load_log, load_raw
from models.data.preprocess import RawData, natural_key, preprocess
from models.errors import DataError
from models.feedback import event_weight


def _events() -> list[dict]:
    base = 1_767_225_600_000
    return [
        {"user_id": "u1", "item_id": "a", "event_type": "play", "timestamp_ms": base, "value": 120.0},
        {"user_id": "u1", "item_id": "a", "event_type": "play", "timestamp_ms": base, "value": 120.0},  # dup
        {"user_id": "u1", "item_id": "b", "event_type": "skip", "timestamp_ms": base + 1, "value": 3.0},
        {"user_id": "u1", "item_id": "c", "event_type": "like", "timestamp_ms": base + 2, "value": None},
        {"user_id": None, "item_id": "c", "event_type": "click", "timestamp_ms": base + 3, "value": None},
        {"user_id": "u2", "item_id": "", "event_type": "click", "timestamp_ms": base + 3, "value": None},
        {"user_id": "u2", "item_id": "a", "event_type": "teleport", "timestamp_ms": base + 4, "value": None},
        {"user_id": "u2", "item_id": "a", "event_type": "click", "timestamp_ms": "not a time", "value": None},
        {"user_id": "u2", "item_id": "a", "event_type": "PURCHASE", "timestamp_ms": base + 5, "value": 9.5},
        {"user_id": "u2", "item_id": "c", "event_type": "play", "timestamp_ms": base + 6, "value": "abc"},
        {"user_id": "u1", "item_id": "a", "event_type": "click", "timestamp_ms": base + 7, "value": None},  # repeat
    ]


ITEMS = [
    {"item_id": "a", "title": "Alpha", "text": "first item", "tags": ["x"], "category": "rock"},
    {"item_id": "b", "title": "Beta", "text": None, "tags": []},
]


def test_invalid_rows_are_dropped_with_reasons() -> None:
    inter, catalog, report = preprocess(from_events(_events(), ITEMS))
    assert report.n_input == 11
    assert report.dropped == {
        "missing_user": 1, "missing_item": 1, "bad_timestamp": 1, "bad_value": 1,
        "unknown_event_type": 1, "duplicate": 1, "not_positive": 1, "repeated_pair": 1,
    }
    assert report.n_output == len(inter) == 3
    assert [inter.users.ids[u] for u in inter.user] == ["u1", "u1", "u2"]
    assert [inter.items.ids[i] for i in inter.item] == ["a", "c", "a"]
    # Weights follow models.feedback; the repeated (u1, a) pair keeps its first time and largest weight.
    np.testing.assert_allclose(inter.weight, [event_weight("play", 120.0), 2.0, 4.0])
    assert inter.timestamp.dtype == np.int64 and inter.timestamp[0] == 1_767_225_600_000


def test_catalog_is_aligned_and_missing_metadata_filled() -> None:
    inter, catalog, report = preprocess(from_events(_events(), ITEMS), include_unseen_items=True)
    assert catalog.items == inter.items
    assert list(catalog.items.ids) == ["a", "b", "c"]
    assert catalog.title == ["Alpha", "Beta", "c"]
    assert catalog.text == ["first item", "Beta", ""]  # no words made up from an id
    assert catalog.tags[0] == ["x", "rock"]
    assert report.items_filled == 2


def test_require_metadata_drops_unknown_items() -> None:
    inter, _, report = preprocess(from_events(_events(), ITEMS), require_metadata=True)
    assert report.dropped["unknown_item"] == 1
    assert set(inter.items.ids) == {"a"}


def test_repeats_keep_all_or_last() -> None:
    keep, _, _ = preprocess(from_events(_events()), repeats="keep")
    last, _, _ = preprocess(from_events(_events()), repeats="last")
    assert len(keep) == 4
    assert last.timestamp.max() == 1_767_225_600_007


def _ratings(rows: list[tuple]) -> RawData:
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return RawData(events=df, items=None, name="t", timestamp_unit="s", rating_range=(1, 5))


def test_ratings_all_count_unless_min_rating_and_out_of_range_dropped() -> None:
    raw = _ratings([(1, 10, 5, 3), (1, 11, 1, 1), (2, 10, 3, 2), (2, 12, 9, 4), (2, 13, None, 5)])
    inter, _, report = preprocess(raw)
    assert report.dropped == {"bad_rating": 2}
    assert len(inter) == 3 and np.all(inter.weight == 1.0)
    assert inter.timestamp.tolist() == [1000, 2000, 3000]
    inter, _, report = preprocess(raw, min_rating=4, rating_weight=True)
    assert report.dropped["below_min_rating"] == 2
    np.testing.assert_allclose(inter.weight, [1.0])


def test_k_core_is_iterated_to_a_fixed_point() -> None:
    # User 3's only item is 'z'; dropping it leaves item 'y' with one user, which then goes too.
    rows = [(1, "x", 5, 1), (1, "y", 5, 2), (2, "x", 5, 3), (2, "w", 5, 4), (1, "w", 5, 5), (3, "z", 5, 6),
            (3, "y", 5, 7)]
    inter, _, report = preprocess(_ratings(rows), k_core=2)
    assert set(inter.users.ids) == {"1", "2"}
    assert set(inter.items.ids) == {"x", "w"}
    for counts in (np.bincount(inter.user), np.bincount(inter.item)):
        assert counts.min() >= 2
    assert report.dropped["k_core"] == 3


def test_id_maps_are_stable_natural_order_and_round_trip(tmp_path) -> None:
    inter, _, _ = preprocess(_ratings([(10, "2", 5, 1), (9, "10", 5, 2), (10, "b", 5, 3), (2, "a", 5, 4)]))
    assert inter.users.ids == ("2", "9", "10")
    assert inter.items.ids == ("2", "10", "a", "b")
    assert sorted(["b", "10", "2", "a"], key=natural_key) == ["2", "10", "a", "b"]
    again = IdMap.from_json(json.loads(json.dumps(inter.items.to_json())))
    assert again == inter.items and again.index("a") == 2 and len(again) == 4
    inter.users.save(tmp_path / "users.json")
    assert IdMap.load(tmp_path / "users.json") == inter.users
    with pytest.raises(KeyError):
        again.index("zzz")
    with pytest.raises(DataError):
        IdMap(("a", "a"))
    with pytest.raises(DataError):
        IdMap.from_json([1, 2])


def test_sequences_and_matrix() -> None:
    inter, _, _ = preprocess(_ratings([(1, "a", 5, 3), (1, "b", 5, 1), (2, "a", 5, 2)]))
    seqs = inter.sequences()
    assert [s.tolist() for s in seqs] == [[1, 0], [0]]
    m = inter.matrix()
    assert m.shape == (2, 2) and m.dtype == np.float32
    assert m.toarray().tolist() == [[1.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_generic_logs_in_every_format(tmp_path, suffix: str) -> None:
    df = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2"],
        "item_id": ["a", "b", "a", "c"],
        "timestamp": [1_700_000_000, 1_700_000_001, 1_700_000_002, 1_700_000_003],  # seconds: auto-detected
        "event_type": ["click", "like", "skip", "purchase"],
    })
    path = tmp_path / f"events.{suffix}"
    {"csv": lambda: df.to_csv(path, index=False),
     "jsonl": lambda: df.to_json(path, orient="records", lines=True),
     "parquet": lambda: df.to_parquet(path)}[suffix]()
    for raw in (load_log(path), load_raw(tmp_path), load_raw(path)):
        inter, _, report = preprocess(raw)
        assert len(inter) == 3 and report.dropped == {"not_positive": 1}
        assert inter.timestamp[0] == 1_700_000_000_000
        np.testing.assert_allclose(inter.weight, [1.0, 2.0, 4.0])


def test_iso_timestamps_are_parsed(tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp,rating\n1,a,2026-01-01T00:00:00Z,4\n1,b,yesterday,4\n")
    inter, _, report = preprocess(load_log(path))
    assert inter.timestamp.tolist() == [1_767_225_600_000]
    assert report.dropped == {"bad_timestamp": 1}


def test_demo_and_unknown_names() -> None:
    inter, catalog = load_dataset("demo", n_users=30, n_items=24, events_per_user=8)
    assert inter.n_users == 30 and len(catalog) == inter.n_items
    assert np.all(np.diff(inter.timestamp) >= 0) and np.all(inter.weight > 0)
    with pytest.raises(DataError):
        load_dataset("no-such-data-set-or-path")

"""Events as columns clean into exactly what preprocess(from_events(...)) makes of the same events."""

from __future__ import annotations

import numpy as np
import pytest

from models.data.columns import (BYTES_PER_EVENT, TYPES, CatalogColumns, EventColumns, interactions_from_columns,
                                 weights)
from models.data.dataset import IdMap
from models.data.loaders import from_events
from models.data.preprocess import preprocess
from models.data.synthetic import generate_demo_dataset
from models.errors import DataError
from models.feedback import event_weight


def _events_with_replays_and_ties() -> tuple[list[dict], list[dict]]:
    data = generate_demo_dataset(n_users=60, n_items=40, events_per_user=25, seed=3)
    events = list(data.events)
    events += events[5:40]  # at-least-once replays: exact duplicates
    tied = dict(events[0], item_id=events[1]["item_id"])  # same time, another item: a tie kept in source order
    events.insert(3, tied)
    events.append({"user_id": "10", "item_id": "7", "event_type": "play", "timestamp_ms": events[-1]["timestamp_ms"]})
    return events, list(data.items)[:30]  # some items without a catalogue record


def test_columns_clean_into_what_the_dataframe_path_makes():
    events, items = _events_with_replays_and_ties()
    old, old_catalog, old_report = preprocess(from_events(events, items, name="t"))
    new, new_catalog, new_report = interactions_from_columns(EventColumns.from_records(events), items, name="t")
    assert new.users == old.users and new.items == old.items
    for col in ("user", "item", "timestamp", "weight"):
        np.testing.assert_array_equal(getattr(new, col), getattr(old, col), err_msg=col)
    assert (new_catalog.title, new_catalog.text, new_catalog.tags) == (old_catalog.title, old_catalog.text,
                                                                       old_catalog.tags)
    assert new_report.dropped == old_report.dropped
    assert {"duplicate", "not_positive", "repeated_pair"} <= set(new_report.dropped)
    assert (new_report.n_output, new_report.items_filled) == (old_report.n_output, old_report.items_filled)


def test_weights_follow_the_feedback_rule():
    rows = [(t, v) for t in TYPES for v in (None, 0.0, 6.0, 184.0, 1e6)]
    code = np.array([TYPES.index(t) for t, _ in rows], dtype=np.int8)
    value = np.array([np.nan if v is None else v for _, v in rows], dtype=np.float64)
    expected = [event_weight(t, v) for t, v in rows]
    np.testing.assert_allclose(weights(code, value), expected, rtol=1e-6)


def test_columns_are_checked_and_sized():
    cols = EventColumns.from_records([{"user_id": "u", "item_id": "i", "event_type": "click",
                                       "timestamp_ms": 1_767_225_600_000}])
    assert cols.nbytes == BYTES_PER_EVENT
    with pytest.raises(DataError, match="user"):
        EventColumns(cols.user.astype(np.int64), cols.item, cols.event_type, cols.value, cols.timestamp, ["u"], ["i"])


def test_nothing_positive_left_is_a_data_error():
    skips = [{"user_id": "u", "item_id": "i", "event_type": "skip", "timestamp_ms": 1_767_225_600_000}]
    with pytest.raises(DataError, match="no interactions"):
        interactions_from_columns(EventColumns.from_records(skips))


def test_catalogue_columns_fill_as_the_dataframe_path_does():
    events, _ = _events_with_replays_and_ties()
    data_items = list(generate_demo_dataset(n_users=60, n_items=40, events_per_user=25, seed=3).items)
    items = [
        *data_items[:25],
        {"item_id": data_items[3]["item_id"], "title": "Replaced", "category": "Noise|Jazz, Rock"},  # later wins
        {"item_id": data_items[4]["item_id"], "title": "  ", "text": None, "tags": ["  Spaced ", "spaced"]},
        {"item_id": data_items[5]["item_id"], "text": "text only", "tags": "single"},
        {"item_id": "not-in-events", "title": "never consumed"},
    ]
    _, old_catalog, old_report = preprocess(from_events(events, items, name="t"))
    columns = CatalogColumns.from_records(items)
    assert len(columns) == 26  # 25 ids, three replaced, one extra
    new, new_catalog, new_report = interactions_from_columns(EventColumns.from_records(events), columns, name="t")
    assert new_catalog.items == old_catalog.items
    assert (new_catalog.title, new_catalog.text, new_catalog.tags) == (old_catalog.title, old_catalog.text,
                                                                       old_catalog.tags)
    assert new_report.items_filled == old_report.items_filled > 0
    at = new_catalog.items.index(data_items[3]["item_id"])
    assert (new_catalog.title[at], new_catalog.tags[at]) == ("Replaced", ["noise", "jazz", "rock"])


def test_catalogue_columns_remove_and_reuse_rows():
    catalog = CatalogColumns()
    catalog.put("a", "A", tags=["x"])
    catalog.put("b", "B", category="Cat")
    catalog.remove("a")
    catalog.remove("never-held")
    assert len(catalog) == 1 and len(catalog.title) == 2
    catalog.put("c", "C")
    assert len(catalog) == 2 and len(catalog.title) == 2  # a's row is reused
    built = catalog.catalog(IdMap(("a", "b", "c")))
    assert built.title == ["a", "B", "C"]  # a was taken down: filled from its id
    assert built.tags == [[], ["cat"], []]

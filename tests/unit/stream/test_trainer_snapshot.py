"""The trainer's columnar snapshot without a broker: hostile records, slot order, the memory check, budgets."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from models.data.columns import TYPES, CatalogColumns, EventColumns, interactions_from_columns
from models.data.dataset import IdMap
from models.data.loaders import from_events
from models.data.preprocess import preprocess
from models.data.synthetic import generate_demo_dataset
from stream.core.events import MAX_RECORD_BYTES
from stream.errors import ConfigError
from stream.kafka.window import Batch, Window, split_budget
from stream.trainer.snapshot import PEAK_BYTES_PER_EVENT, ColumnsBuilder, add_items, check_fits, memory_available

NOW = 1_767_225_600_000


def _event(user: str, item: str, ts: int, kind: str = "click", value: float | None = None) -> bytes:
    record = {"user_id": user, "item_id": item, "event_type": kind, "timestamp_ms": ts}
    if value is not None:
        record["value"] = value
    return json.dumps(record).encode()


def test_hostile_records_are_counted_by_reason_and_skipped():
    window = Window("events", {0: (10, 20)})
    builder = ColumnsBuilder(window, NOW)
    values = [
        _event("u1", "i1", NOW - 5, "play", 120.0),
        b"\xff\xfe not utf-8",
        b"{not json",
        b"[1, 2]",
        None,  # a tombstone on events
        b"x" * (MAX_RECORD_BYTES + 1),
        _event("u1", "i2", NOW + 2 * 86_400_000),  # two days ahead
        json.dumps({"user_id": "u2", "item_id": "i1", "event_type": "click", "timestamp_ms": NOW,
                    "extra": 1}).encode(),
        _event("u2", "i1", NOW - 1, "teleport"),
        _event("u2", "i3", NOW - 3, "skip"),
    ]
    builder.add(Batch(0, list(range(10, 20)), values, [NOW] * 10))
    cols = builder.columns()
    assert len(cols) == 2 and sum(builder.invalid.values()) == 8
    assert builder.invalid["too_large"] == 1 and builder.invalid["bad_timestamp"] == 1
    assert builder.invalid["unknown_field"] == 1 and builder.invalid["unknown_event_type"] == 1
    assert [cols.user_ids[u] for u in cols.user] == ["u1", "u2"]
    assert [TYPES[t].value for t in cols.event_type] == ["play", "skip"]
    assert cols.value[0] == 120.0 and np.isnan(cols.value[1])


def test_rows_come_out_in_partition_then_offset_order_whatever_the_fetch_order():
    window = Window("events", {0: (0, 3), 1: (5, 8)})
    builder = ColumnsBuilder(window, NOW)
    builder.add(Batch(1, [6, 7], [_event("b", "i", NOW - 2), _event("c", "i", NOW - 1)], [0, 0]))
    builder.add(Batch(0, [0, 2], [_event("x", "i", NOW - 9), _event("y", "i", NOW - 8)], [0, 0]))  # 1: a marker
    builder.add(Batch(1, [5], [_event("a", "i", NOW - 3)], [0]))
    cols = builder.columns()
    assert [cols.user_ids[u] for u in cols.user] == ["x", "y", "a", "b", "c"]
    assert cols.timestamp.tolist() == [NOW - 9, NOW - 8, NOW - 3, NOW - 2, NOW - 1]


def test_a_snapshot_of_valid_events_cleans_as_the_old_dict_snapshot_did():
    data = generate_demo_dataset(n_users=40, n_items=30, events_per_user=15, seed=5)
    events = [e for e in data.events]
    window = Window("events", {0: (0, len(events))})
    builder = ColumnsBuilder(window, max(e["timestamp_ms"] for e in events))
    builder.add(Batch(0, list(range(len(events))), [json.dumps(e).encode() for e in events], [0] * len(events)))
    new, _, _ = interactions_from_columns(builder.columns(), data.items)
    old, _, _ = preprocess(from_events(events, data.items))
    assert new.users == old.users and np.array_equal(new.item, old.item) and np.array_equal(new.weight, old.weight)


def test_columns_cost_a_fixed_few_bytes_per_event_not_a_python_object_each():
    n = 50_000
    events = [_event(f"u{k % 997}", f"i{k % 313}", NOW - n + k, "play", float(k % 300)) for k in range(n)]
    window = Window("events", {0: (0, n)})
    tracemalloc.start()
    builder = ColumnsBuilder(window, NOW)
    for start in range(0, n, 5000):
        builder.add(Batch(0, list(range(start, start + 5000)), events[start:start + 5000], [0] * 5000))
    cols = builder.columns()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(cols) == n
    # About 25 bytes of columns per event plus the id maps; a dict per event would be over 600.
    assert held < 40 * n and peak < 80 * n, (held / n, peak / n)


def test_a_window_too_large_for_memory_is_refused_naming_the_settings():
    check_fits(1_000_000, available=10 * 1_000_000 * PEAK_BYTES_PER_EVENT)
    check_fits(10**9, available=None)  # unknown memory: nothing to compare with
    with pytest.raises(ConfigError, match="STREAMREC_TRAIN_WINDOW_EVENTS.*STREAMREC_TRAIN_WINDOW_DAYS"):
        check_fits(10**8, available=8 * 2**30)


def test_memory_available_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683568 kB\nMemAvailable:   22782952 kB\n")
    assert memory_available(meminfo) == 22782952 * 1024
    assert memory_available(tmp_path / "absent") is None


@pytest.mark.parametrize("sizes, budget, expected", [
    ({0: 100, 1: 100}, 1000, {0: 100, 1: 100}),
    ({0: 300, 1: 100}, 100, {0: 75, 1: 25}),
    ({0: 1, 1: 1, 2: 1}, 2, {0: 1, 1: 1, 2: 0}),
    ({0: 0, 1: 7}, 3, {0: 0, 1: 3}),
])
def test_the_event_budget_is_shared_in_proportion_to_partition_sizes(sizes, budget, expected):
    shares = split_budget(sizes, budget)
    assert shares == expected and sum(shares.values()) == min(budget, sum(sizes.values()))
    assert all(shares[p] <= sizes[p] for p in sizes)


def test_event_columns_from_records_match_the_builder():
    cols = EventColumns.from_records([{"user_id": "u", "item_id": "i", "event_type": "like", "timestamp_ms": NOW}])
    assert cols.user_ids == ["u"] and TYPES[int(cols.event_type[0])].value == "like"


def test_a_window_reaches_the_trainer_metrics():
    from stream.trainer import metrics
    from stream.trainer.snapshot import SnapshotReport

    value = metrics.REGISTRY.get_sample_value
    before = value("streamrec_trainer_invalid_events_total", {"reason": "bad_json"}) or 0.0
    metrics.record_window(SnapshotReport(offsets=12, events=10, invalid=2, invalid_reasons={"bad_json": 2},
                                         first_ms=NOW - 5000, last_ms=NOW, read_seconds=1.5))
    assert value("streamrec_trainer_window_events") == 10 and value("streamrec_trainer_window_offsets") == 12
    assert (value("streamrec_trainer_window_last_event_timestamp_seconds")
            - value("streamrec_trainer_window_first_event_timestamp_seconds")) == 5.0
    assert value("streamrec_trainer_snapshot_read_seconds") == 1.5
    assert value("streamrec_trainer_invalid_events_total", {"reason": "bad_json"}) == before + 2


def test_a_window_of_ever_new_ids_is_stopped_before_the_ids_fill_memory():
    window = Window("events", {0: (0, 100)})
    builder = ColumnsBuilder(window, NOW, max_id_bytes=10_000)
    batch = Batch(0, list(range(100)), [_event(f"user-{k}-" + "x" * 100, f"i{k}", NOW - 1) for k in range(100)],
                  [0] * 100)
    with pytest.raises(ConfigError, match="ids take more than.*STREAMREC_TRAIN_WINDOW_EVENTS"):
        builder.add(batch)


def test_catalogue_batches_replace_remove_and_skip_hostile_records():
    catalog = CatalogColumns()
    item = lambda **f: json.dumps(f).encode()  # noqa: E731
    values = [item(item_id="a", title="A", category="Jazz"), item(item_id="b", title="B"),
              b"{not json", item(item_id="c", tags="not a list"), item(title="no id"),
              item(item_id="a", title="A2", tags=["x"]), None, None, item(item_id="d", text="D")]
    keys = [b"a", b"b", b"x", b"c", None, b"a", b"b", None, b"d"]  # a tombstone without a key is ignored
    invalid = add_items(catalog, Batch(0, list(range(len(values))), values, [0] * len(values), keys))
    assert invalid == 3
    assert sorted(catalog.row) == ["a", "d"]
    built = catalog.catalog(IdMap(("a", "b", "d")))
    assert built.title == ["A2", "b", "d"] and built.text == ["A2", "", "D"]  # text falls back to the record's own title
    assert built.tags == [["x"], [], []]

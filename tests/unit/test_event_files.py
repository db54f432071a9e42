import json

import pytest

from stream.kafka.producer import read_event_file

EVENTS = [
    {"user_id": "u1", "item_id": "i1", "event_type": "click", "timestamp_ms": 1_767_225_600_000},
    {"user_id": "u2", "item_id": "i2", "event_type": "play", "timestamp_ms": 1_767_225_660_000, "value": 30.0},
]


def test_jsonl_passes_bad_lines_through_for_validation(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(EVENTS[0]), "not json", "", json.dumps(EVENTS[1]), "[1]"]) + "\n")
    assert list(read_event_file(path)) == [EVENTS[0], "not json", EVENTS[1], "[1]"]


def test_csv_with_types(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event_type,timestamp_ms,value\n"
                    "u1,i1,click,1767225600000,\nu2,i2,play,1767225660000,30\n")
    assert list(read_event_file(path)) == EVENTS


def test_rebase_keeps_gaps(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in EVENTS))
    out = list(read_event_file(path, rebase_to_ms=2_000_000_000_000))
    assert [e["timestamp_ms"] for e in out] == [2_000_000_000_000, 2_000_000_060_000]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(read_event_file(tmp_path / "nope.jsonl"))

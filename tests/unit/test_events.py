import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.feedback import EventType
from stream.errors import InvalidEvent
from stream.core.events import (
    MAX_RECORD_BYTES,
    MIN_TIMESTAMP_MS,
    REASONS,
    Event,
    parse_event,
)

NOW = 1_790_000_000_000
VALID = {"user_id": "u1", "item_id": "i9", "event_type": "play", "timestamp_ms": NOW - 1000, "value": 95.5}


def reason_of(raw, now=NOW) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, now_ms=now)
    assert info.value.reason in REASONS
    return info.value.reason


def test_valid_event_round_trips():
    raw = json.dumps({**VALID, "context": {"device": "ios", "position": 3}}).encode()
    event = parse_event(raw, now_ms=NOW)
    assert event == Event("u1", "i9", EventType.PLAY, NOW - 1000, 95.5, {"device": "ios", "position": 3})
    assert parse_event(event.to_json_bytes(), now_ms=NOW) == event
    assert event.weight == pytest.approx(95.5 / 60)


def test_integer_ids_become_strings():
    event = parse_event({**VALID, "user_id": 42, "item_id": 7}, now_ms=NOW)
    assert (event.user_id, event.item_id) == ("42", "7")


def test_create_defaults_timestamp_to_now():
    event = Event.create("u1", "i1", EventType.CLICK)
    assert event.timestamp_ms > MIN_TIMESTAMP_MS


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "bad_encoding"),
        (b'{"user_id": "u1",', "bad_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b"x" * (MAX_RECORD_BYTES + 1), "too_large"),
        (json.dumps({k: v for k, v in VALID.items() if k != "item_id"}), "missing_field"),
        (json.dumps({**VALID, "user_id": None}), "missing_field"),
        (json.dumps({**VALID, "colour": "red"}), "unknown_field"),
        (json.dumps({**VALID, "user_id": ["u1"]}), "wrong_type"),
        (json.dumps({**VALID, "user_id": True}), "wrong_type"),
        (json.dumps({**VALID, "user_id": ""}), "bad_id"),
        (json.dumps({**VALID, "user_id": " u1"}), "bad_id"),
        (json.dumps({**VALID, "user_id": "u\n1"}), "bad_id"),
        (json.dumps({**VALID, "item_id": "i" * 129}), "bad_id"),
        (json.dumps({**VALID, "item_id": -3}), "bad_id"),
        (json.dumps({**VALID, "event_type": "zap"}), "unknown_event_type"),
        (json.dumps({**VALID, "event_type": 3}), "wrong_type"),
        (json.dumps({**VALID, "timestamp_ms": "1790000000000"}), "wrong_type"),
        (json.dumps({**VALID, "timestamp_ms": 1.5e12}), "wrong_type"),
        (json.dumps({**VALID, "timestamp_ms": 1_790_000_000}), "bad_timestamp"),  # seconds, not ms
        (json.dumps({**VALID, "timestamp_ms": -5}), "bad_timestamp"),
        (json.dumps({**VALID, "timestamp_ms": NOW + 3 * 86_400_000}), "bad_timestamp"),
        (json.dumps({**VALID, "value": "95"}), "wrong_type"),
        (json.dumps({**VALID, "value": -1}), "bad_value"),
        (json.dumps({**VALID, "value": 1e300}), "bad_value"),
        ('{"user_id":"u1","item_id":"i9","event_type":"play","timestamp_ms":1789999999000,"value":NaN}', "bad_value"),
        ('{"user_id":"u1","item_id":"i9","event_type":"play","timestamp_ms":1789999999000,"value":Infinity}',
         "bad_value"),
        (json.dumps({**VALID, "context": "ios"}), "bad_context"),
        (json.dumps({**VALID, "context": {"k": {"nested": 1}}}), "bad_context"),
        (json.dumps({**VALID, "context": {str(i): i for i in range(17)}}), "bad_context"),
        (json.dumps({**VALID, "context": {"k": "v" * 300}}), "bad_context"),
    ],
)
def test_each_kind_of_bad_input_has_its_reason(raw, reason):
    assert reason_of(raw) == reason


def test_deeply_nested_json_is_bad_json_not_a_crash():
    assert reason_of("[" * 100_00 + "]" * 100_00) in ("bad_json", "too_large")
    assert reason_of("[" * 5000 + "]" * 5000) in ("bad_json", "not_an_object")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw):
    try:
        parse_event(raw, now_ms=NOW)
    except InvalidEvent as e:
        assert e.reason in REASONS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(VALID) + ["context", "extra"]), json_values, max_size=7))
def test_arbitrary_objects_are_valid_or_rejected_with_a_reason(data):
    try:
        event = parse_event(data, now_ms=NOW)
    except InvalidEvent as e:
        assert e.reason in REASONS
    else:
        assert parse_event(event.to_json_bytes(), now_ms=NOW) == event

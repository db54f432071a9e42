"""One schema per topic: the record definitions in stream/core, their JSON Schemas in docs/schemas, and
that both agree on what is valid."""

from __future__ import annotations

import json

import jsonschema
import pytest

from bench.faults.malformed import malformed
from models.data.synthetic import generate_demo_dataset
from stream.core import schemas
from stream.core.announcements import InvalidAnnouncement, ModelAnnouncement, parse_announcement
from stream.core.dead_letters import DeadLetter
from stream.core.events import parse_event
from stream.core.items import InvalidItem, parse_item
from stream.core.records import Record
from stream.core.recommendations import InvalidRecommendation, Recommendation
from stream.errors import InvalidEvent

NOW = 1_767_225_600_000


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft202012Validator]:
    out = {}
    for name, text in schemas.schema_documents().items():
        document = json.loads(text)
        jsonschema.Draft202012Validator.check_schema(document)
        out[document["x-topic"]] = jsonschema.Draft202012Validator(document)
    return out


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=40, n_items=60, events_per_user=8, seed=3)


def test_the_schema_files_are_fresh():
    assert schemas.stale() == [], "docs/schemas is stale: run python -m stream.core.schemas"
    assert sorted(json.loads(t)["x-topic"] for t in schemas.schema_documents().values()) == sorted(
        ["events", "items", "recommendations", "dead-letter", "model-updates", "trending"])


def test_experiment_records_and_trending_counts_fit_their_topics_schemas(validators):
    import dataclasses

    from stream.core.announcements import ModelAnnouncement
    from stream.core.experiments import Arm, experiment_record, new_experiment
    from stream.core.trending import encode_snapshot

    updates = validators["model-updates"]
    experiment = new_experiment("ab", [Arm("control", "v1", 0.5), Arm("treatment", "v2", 0.5)], 7)
    for record in (experiment, dataclasses.replace(experiment, stopped_ms=9, promoted="treatment")):
        assert updates.is_valid(json.loads(experiment_record(record)[1]))
    assert updates.is_valid(json.loads(ModelAnnouncement("v3", 1).encode()))
    assert not updates.is_valid({"experiment": {"name": "ab", "arms": [], "started_ms": 1}})
    assert not updates.is_valid({"experiment": {"name": "../x", "arms": [{"name": "a", "version": "v", "share": 1},
                                                                         {"name": "b", "version": "v", "share": 1}],
                                                "started_ms": 1}})
    trending = validators["trending"]
    assert trending.is_valid(json.loads(encode_snapshot(3, 1000, {"i1": 2.5}, 3600.0)))
    assert not trending.is_valid({"partition": 3, "ref_ms": 1, "scores": {"i1": -1}})


def test_stale_files_are_reported(tmp_path):
    schemas.write(tmp_path)
    assert schemas.stale(tmp_path) == []
    (tmp_path / "items.schema.json").write_text("{}")
    (tmp_path / "events.schema.json").unlink()
    assert sorted(schemas.stale(tmp_path)) == ["events.schema.json", "items.schema.json"]
    assert schemas.main(["--check", "--out", str(tmp_path)]) == 1


def test_every_valid_event_fits_the_schema_and_malformed_ones_mostly_do_not(validators, data):
    events = validators["events"]
    for e in data.events:
        assert events.is_valid(parse_event(e, now_ms=2**62).to_dict())
    ids = [it["item_id"] for it in data.items]
    accepted = rejected_by_both = 0
    for name, (_key, value, _reasons) in malformed(400, ids, seed=3):
        try:
            parse_event(value)
        except InvalidEvent:
            try:
                document = json.loads(value)
            except (ValueError, TypeError, RecursionError):
                rejected_by_both += 1  # not JSON: no schema applies
                continue
            rejected_by_both += not events.is_valid(document)
            continue
        accepted += 1  # valid events of unknown items or other keys: the worker's checks
        assert events.is_valid(json.loads(value)), name
    # What only the parser can tell (printable ids, timestamps ahead of the clock) is rare.
    assert rejected_by_both >= 0.9 * (400 - accepted)


def test_items_schema_and_parser_agree(validators, data):
    items = validators["items"]
    for it in data.items:
        item = parse_item(json.dumps(it).encode())
        assert items.is_valid(item.to_dict()) and parse_item(item.encode()) == item
        assert item.to_dict() == it  # other fields (kind, price) are kept as written
    bad = [{"item_id": "i9", "title": "Bad", "tags": 5}, {"title": "no id"}, {"item_id": None},
           {"item_id": "i1", "title": 7}, {"item_id": "i1", "tags": ["ok", 3]}, {"item_id": " padded"},
           {"item_id": "i1", "tags": ["t"] * 65}, {"item_id": "i1", "category": "c" * 129}, {"item_id": ["x"]}]
    for record in bad:
        with pytest.raises(InvalidItem):
            parse_item(json.dumps(record).encode())
        assert not items.is_valid(record), record
    for raw, reason in ((b"\xff", "bad_encoding"), (b"[1]", "not_an_object"), (b"{", "bad_json"),
                        (b'{"item_id": "x", "p": NaN}', "bad_value"), (b" " * 70_000, "too_large")):
        with pytest.raises(InvalidItem) as caught:
            parse_item(raw)
        assert caught.value.reason == reason


def test_announcements_name_plain_versions_only(validators):
    updates = validators["model-updates"]
    good = ModelAnnouncement("v20261201T101500Z", NOW, {"ndcg@10": 0.18}, "/srv/a/v1", "sasrec", 10, 20)
    assert updates.is_valid(good.to_dict()) and parse_announcement(good.encode()) == good
    for version in ("../../etc", "/abs/path", "a/b", "", ".", "..", None, 5, "x" * 129, ".hidden"):
        record = {"version": version, "created_ms": NOW}
        with pytest.raises(InvalidAnnouncement):
            parse_announcement(json.dumps(record).encode())
        assert not updates.is_valid(record), version
    for raw in (b"null", b"[]", b'"v1"', b'{"version": "v1", "metrics": {"ndcg": "high"}}',
                b'{"version": "v1", "created_ms": -1}', b'{"created_ms": 1}'):
        with pytest.raises(InvalidAnnouncement):
            parse_announcement(raw)
    with pytest.raises(InvalidAnnouncement):
        ModelAnnouncement("../x", NOW)


def test_dead_letters_keep_the_bytes_and_fit_the_schema(validators):
    letters = validators["dead-letter"]
    for key, value in ((b"u1", b"\xff\xfe not utf-8"), (None, None), (b"", b"{}")):
        letter = DeadLetter.of(Record("events", 3, 17, key, value, NOW), "bad_json", "x" * 5000, NOW + 1)
        document = json.loads(letter.encode())
        assert letters.is_valid(document) and len(document["detail"]) == 1000
        back = DeadLetter.parse(letter.encode())
        assert (back.key, back.value, back.offset) == (key, value, 17)
    assert not letters.is_valid({**document, "extra": 1})
    huge = Record("events", 0, 1, b"k" * 40_000, b"v" * 900_000, NOW)
    letter = DeadLetter.of(huge, "too_large", "record of 900000 bytes", NOW, max_bytes=16 * 1024)
    encoded = letter.encode()
    assert len(encoded) < 50_000 and letters.is_valid(json.loads(encoded)) and letter.truncated
    assert (letter.value, letter.value_size) == (b"v" * 16 * 1024, 900_000)
    import hashlib
    assert letter.value_sha256 == hashlib.sha256(b"v" * 900_000).hexdigest() and len(letter.key) == 16 * 1024
    assert not DeadLetter.of(Record("events", 0, 1, b"k", b"v", NOW), "bad_json", "", NOW).truncated


def test_recommendations_fit_the_schema(validators):
    recs = validators["recommendations"]
    rec = Recommendation("u1", ["i1", "i2"], [0.5, 0.25], ["because you played X", "popular right now"],
                         "personal", "v1", "v1-flat", NOW, 12, NOW + 3, NOW + 4)
    assert recs.is_valid(json.loads(rec.encode()))
    assert Recommendation.parse(rec.encode()).to_dict() == rec.to_dict()
    document = rec.to_dict()
    for broken in ({**document, "source": "magic"}, {**document, "items": [{"item_id": "i1"}]},
                   {k: v for k, v in document.items() if k != "model_version"}):
        assert not recs.is_valid(broken)
        with pytest.raises(InvalidRecommendation):
            Recommendation.parse(json.dumps(broken))

"""A seeded generator of malformed event records, each with the dead-letter reasons it may get.

Every kind the validation knows is covered (README, "The streaming core";
``stream.core.events.REASONS``), plus unknown items and keys that differ from the
user id. None carries ``context.seq``, so the oracle never counts one as valid.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any, Callable

from kafka import KafkaProducer

from stream.kafka.config import kafka_python_options
from stream.settings import Settings

Bad = tuple[bytes | None, bytes | None, frozenset[str]]  # key, value, acceptable reasons


def _base(rng: random.Random, items: list[str]) -> dict[str, Any]:
    return {"user_id": f"c{rng.randrange(100):05d}", "item_id": rng.choice(items), "event_type": "click",
            "timestamp_ms": int(time.time() * 1000) - rng.randrange(3_600_000)}


def _dump(event: Any) -> bytes:
    return json.dumps(event, allow_nan=True).encode()


def _kinds(items: list[str]) -> dict[str, Callable[[random.Random], Bad]]:
    def one(reason: str, mutate: Callable[[dict, random.Random], Any], key: bytes | None | str = "user") -> Callable:
        def make(rng: random.Random) -> Bad:
            event = _base(rng, items)
            value = mutate(event, rng)
            k = event["user_id"].encode() if key == "user" and isinstance(event.get("user_id"), str) else \
                (None if key == "user" else key)
            return k, value if isinstance(value, bytes) else _dump(value), frozenset(reason.split("|"))
        return make

    def set_(field: str, value: Callable[[random.Random], Any]):
        return lambda e, rng: {**e, field: value(rng)}

    def drop(e: dict, rng: random.Random) -> dict:
        e = dict(e)
        e.pop(rng.choice(list(e)))
        return e

    return {
        "bad_utf8": one("bad_encoding", lambda e, rng: b'{"user_id": "\xff\xfe' + rng.randbytes(8) + b'"}'),
        "latin1": one("bad_encoding", lambda e, rng: json.dumps({**e, "item_id": "caf\u00e9"}, ensure_ascii=False).encode("latin-1")),
        "truncated": one("bad_json", lambda e, rng: _dump(e)[: rng.randrange(1, 20)]),
        "garbage": one("bad_json|bad_encoding|not_an_object", lambda e, rng: rng.randbytes(rng.randrange(1, 64))),
        "empty": one("bad_json", lambda e, rng: b""),
        "nested": one("bad_json", lambda e, rng: b"[" * 5000 + b"]" * 5000),
        "array": one("not_an_object", lambda e, rng: [e]),
        "number": one("not_an_object", lambda e, rng: rng.random()),
        "missing": one("missing_field", drop),
        "null_field": one("missing_field", lambda e, rng: {**e, rng.choice(list(e)): None}),
        "extra": one("unknown_field", set_("userid", lambda rng: "x")),
        "user_float": one("wrong_type", set_("user_id", lambda rng: rng.random())),
        "item_list": one("wrong_type", set_("item_id", lambda rng: [1, 2])),
        "ts_string": one("wrong_type", set_("timestamp_ms", lambda rng: str(rng.randrange(10**12)))),
        "ts_float": one("wrong_type", set_("timestamp_ms", lambda rng: 1.7e12 + 0.5)),
        "value_string": one("wrong_type", set_("value", lambda rng: "12")),
        "value_bool": one("wrong_type", set_("value", lambda rng: True)),
        "type_int": one("wrong_type", set_("event_type", lambda rng: 3)),
        "huge_id": one("bad_id", set_("item_id", lambda rng: "i" * rng.randrange(129, 4000))),
        "empty_id": one("bad_id", set_("item_id", lambda rng: "")),
        "spaces_id": one("bad_id", set_("item_id", lambda rng: " i00001")),
        "control_id": one("bad_id", set_("item_id", lambda rng: "i\x00\x07")),
        "negative_id": one("bad_id", set_("item_id", lambda rng: -rng.randrange(1, 10**6))),
        "huge_record": one("too_large", set_("item_id", lambda rng: "x" * rng.randrange(17_000, 200_000))),
        "nan": one("bad_value", set_("value", lambda rng: float("nan"))),
        "infinity": one("bad_value", set_("value", lambda rng: rng.choice([float("inf"), float("-inf")]))),
        "negative_value": one("bad_value", set_("value", lambda rng: -rng.random() - 0.1)),
        "huge_value": one("bad_value", set_("value", lambda rng: 1e12)),
        "unknown_type": one("unknown_event_type", set_("event_type", lambda rng: rng.choice(["view", "", "CLICK"]))),
        "negative_ts": one("bad_timestamp", set_("timestamp_ms", lambda rng: -rng.randrange(1, 10**12))),
        "seconds_ts": one("bad_timestamp", set_("timestamp_ms", lambda rng: int(time.time()))),
        "future_ts": one("bad_timestamp", set_("timestamp_ms", lambda rng: int(time.time() * 1000) + 10 * 86_400_000)),
        "bad_context": one("bad_context", set_("context", lambda rng: rng.choice([[1], {"k": [1]}, {"": 1},
                                                                                 {"k": "v" * 300}]))),
        "unknown_item": one("unknown_item", set_("item_id", lambda rng: f"zz{rng.randrange(10**9)}")),
        "unicode_unknown_item": one("unknown_item", set_("item_id", lambda rng: "\u00e9\u6f22\U0001f600")),
        "empty_key": one("missing_key", lambda e, rng: e, key=b""),
        "no_key": one("missing_key", lambda e, rng: e, key=None),
        "other_key": one("key_mismatch", lambda e, rng: e, key=b"someone-else"),
    }


def malformed(n: int, items: list[str], seed: int) -> list[tuple[str, Bad]]:
    """``n`` malformed records, every kind in turn, then at random (seeded)."""
    rng = random.Random(seed)
    kinds = _kinds(items)
    names = sorted(kinds)
    return [(name, kinds[name](rng)) for name in (names[i] if i < len(names) else rng.choice(names)
                                                  for i in range(n))]


def send_mixed(settings: Settings, valid: list[dict[str, Any]], n_bad: int, items: list[str],
               seed: int) -> dict[tuple[int, int], Bad]:
    """Send valid events and ``n_bad`` malformed records interleaved; returns where each bad one landed."""
    rng = random.Random(seed)
    bad = malformed(n_bad, items, seed)
    order = ["v"] * len(valid) + ["b"] * len(bad)
    rng.shuffle(order)
    producer = KafkaProducer(**kafka_python_options(settings), acks="all", linger_ms=5,
                             allow_auto_create_topics=False, max_request_size=1_048_576)
    topic = settings.topic("events")
    futures = []
    vi = bi = 0
    try:
        for slot in order:
            if slot == "v":
                event = valid[vi]
                vi += 1
                producer.send(topic, key=event["user_id"].encode(), value=json.dumps(event).encode())
            else:
                _, record = bad[bi]
                bi += 1
                futures.append((producer.send(topic, key=record[0], value=record[1]), record))
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=30)
    out = {}
    for future, record in futures:
        meta = future.get(timeout=30)
        out[(meta.partition, meta.offset)] = record
    return out

"""Poison pills from a client that is not ours, against two workers: hostile catalogue records, bad
model announcements and experiments, bad trending counts and an event at the broker's size limit,
sent as raw bytes with kafka-python.

:func:`poison` checks what issue 14 asks of every consumed topic: no worker crashes or stops
publishing, every refused record is in ``dead-letter`` with its topic, partition, offset and
reason, every valid catalogue record (and tombstone) is applied on both workers, and a worker
restarted afterwards (the compacted catalogue replays every poison) serves too.
"""

from __future__ import annotations

import json
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kafka import KafkaProducer

from bench.faults.kit import Outcome, World, make_world, read_topic, wait_until
from stream.demo.local_worker import LocalWorker
from stream.kafka.config import kafka_python_options

ITEM_REASONS = frozenset({"too_large", "bad_encoding", "bad_json", "bad_value", "not_an_object", "missing_field",
                          "wrong_type", "bad_id", "bad_key"})


@dataclass(frozen=True)
class Sent:
    """One record sent to ``items``: where it landed and what the workers must make of it."""

    key: bytes | None
    value: bytes | None
    expect: str  # "item" (applied), "tombstone" (taken down), "refused" (dead-lettered)
    item_id: str | None = None


def _wrong(field: str, rng: random.Random) -> Any:
    """A value ``field`` of a catalogue record may not have: a wrong type or one too large."""
    if field == "item_id":
        return rng.choice([7.5, True, [1], {"a": 1}, "", " padded ", "a\u0000b", "x" * 300, -4])
    if field == "tags":
        return rng.choice([7, "one string", [1], [None], ["t"] * 65, ["x" * 65], {"a": 1}])
    limit = {"title": 512, "text": 16 * 1024, "category": 128}[field]
    return rng.choice([7, 3.5, True, [1], {"a": 1}, "w" * (limit + 1)])


def hostile_items(n: int, seed: int, huge: int) -> list[Sent]:
    """``n`` records for ``items``: about a third valid new items, a tenth tombstones of earlier valid
    ones, the rest hostile (every field with a wrong type or size, nulls, lists, invalid UTF-8, not
    JSON, deep nesting, keys that are not UTF-8, values near the broker's limit)."""
    rng = random.Random(seed)
    out: list[Sent] = []
    made: list[str] = []
    fields = ("item_id", "title", "text", "category", "tags")
    for n_ in range(n):
        roll = rng.random()
        if roll < 0.33:
            item_id = f"fz-{seed}-{n_}"
            item = {"item_id": item_id, "title": f"Fuzz {n_}", "text": "quiet harbour jazz " * rng.randrange(1, 4),
                    "tags": rng.sample(["jazz", "rock", "folk", "ambient"], 2), "category": "jazz",
                    "price": rng.random() * 10}
            out.append(Sent(item_id.encode(), json.dumps(item).encode(), "item", item_id))
            made.append(item_id)
            continue
        if roll < 0.43 and made:
            item_id = made.pop(rng.randrange(len(made)))
            out.append(Sent(item_id.encode(), None, "tombstone", item_id))
            continue
        key = f"bad-{seed}-{n_}".encode()
        kind = rng.randrange(9)
        if kind == 0:  # one field of a wrong type or size
            item = {"item_id": key.decode(), "title": "t", "tags": ["a"]}
            field = rng.choice(fields)
            item[field] = _wrong(field, rng)
            value = json.dumps(item).encode()
        elif kind == 1:
            value = json.dumps(rng.choice([None, [], [1, 2], "text", 5, True])).encode()
        elif kind == 2:
            value = b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(20))
        elif kind == 3:
            value = b"{" * rng.choice([10, 5000]) + b"not json"
        elif kind == 4:
            value = json.dumps({"title": "no id", "tags": ["a"]}).encode()
        elif kind == 5:  # values near the broker's limit: a few, they are replayed at every start
            value = (b'{"item_id": "' + b"i" * huge + b'"}') if n_ % 40 == 5 else \
                json.dumps({"item_id": key.decode(), "text": "w" * 20_000}).encode()
        elif kind == 6:
            value = json.dumps({"item_id": rng.choice(["", " padded ", "a\u0000b", "x" * 300, -4])}).encode()
        elif kind == 7:  # a tombstone whose key is no item id
            out.append(Sent(b"\xff\xfe\xfd", None, "refused"))
            continue
        else:
            value = b'{"item_id": "x", "price": NaN}'
        out.append(Sent(key, value, "refused"))
    return out


def _send(settings, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Send raw records with kafka-python (a client that is not ours); their (partition, offset)."""
    producer = KafkaProducer(**kafka_python_options(settings), acks="all",
                             max_request_size=settings.topic_max_message_bytes)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        producer.flush(timeout=120)
        return [(m.partition, m.offset) for m in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close(timeout=30)


def _fresh_recommendations(world: World, workers: list[LocalWorker], users: list[str], item: str,
                           timeout: float) -> float:
    """Send one event per user (spread over partitions) and wait for each one's recommendation;
    returns the slowest freshness seen (published_ms minus the event's timestamp), in ms."""
    now = int(time.time() * 1000)
    events = [(u.encode(), json.dumps({"user_id": u, "item_id": item, "event_type": "click",
                                       "timestamp_ms": now}).encode()) for u in users]
    _send(world.settings, world.settings.topic("events"), events)

    def published() -> dict[str, dict] | None:
        got = {}
        for r in read_topic(world.settings, world.settings.topic("recommendations")):
            rec = json.loads(r.value)
            if rec["user_id"] in users and rec["event_timestamp_ms"] == now:
                got[rec["user_id"]] = rec
        return got if len(got) == len(users) else None

    got = wait_until(published, timeout, "fresh recommendations after the poison")
    for worker in workers:
        if worker.proc is None or worker.proc.poll() is not None:
            raise RuntimeError(f"a worker died:\n{worker.log_tail()}")
    return max(rec["published_ms"] - now for rec in got.values())


def poison(bootstrap: str, root: Path, items: int = 300, announcements: int = 50, seed: int = 11) -> Outcome:
    """The scenario (module docstring); ``items`` hostile and valid catalogue records, ``announcements``
    bad model-updates records, one event at the broker's limit."""
    started = time.perf_counter()
    world = make_world(bootstrap, root, partitions=4, n_items=80, seed=seed)
    settings = world.settings
    huge = settings.topic_max_message_bytes - 4096  # as large as the topic takes
    first, second = world.worker(), world.worker("second")
    outcome = Outcome()
    try:
        first.start()
        second.start()
        wait_until(lambda: all(len(w.get("/healthz")[1].get("partitions", [])) >= 1 for w in (first, second)),
                   120, "both workers owning partitions")
        users = [f"p{n:03d}" for n in range(16)]
        warm = _fresh_recommendations(world, [first, second], users, world.item_ids[0], 120)

        sent = hostile_items(items, seed, huge)
        where = _send(settings, settings.topic("items"), [(s.key, s.value) for s in sent])
        rng = random.Random(seed)
        bad_updates = [json.dumps(rng.choice([None, [], "v1", 5, {"version": "../../etc"}, {"version": "/abs"},
                                              {"version": "v" * 500}, {"version": 7}, {"metrics": "x"}])).encode()
                       for _ in range(announcements)] + [b"\xff not json", b"{" * 5000, b"x" * huge] + [
            json.dumps({"experiment": bad}).encode() for bad in (
                "x", None, {"name": "../x", "arms": []}, {"name": "e", "arms": [{"version": "/abs", "share": 2}]})]
        updates_at = _send(settings, settings.topic("model-updates"), [(b"v", v) for v in bad_updates])
        # The trending topic is written by every worker and readable by any client: bad counts too.
        bad_trending = [b"\xff not json", b"[]", b"{" * 5000, b"x" * huge,
                        *(json.dumps(bad).encode() for bad in (
                            {"partition": 99, "ref_ms": 1, "scores": {}}, {"partition": -1, "ref_ms": 1, "scores": {}},
                            {"partition": 0, "ref_ms": -5, "scores": {}}, {"partition": 0, "ref_ms": 1, "scores": "x"},
                            {"partition": 0, "ref_ms": 1, "scores": {"i": -1.0}},
                            {"partition": 0, "ref_ms": 1, "scores": {"i": "many"}}, {"partition": "0"}))]
        trending_at = _send(settings, settings.topic("trending"), [(b"0", v) for v in bad_trending])
        oversized = b'{"user_id": "p000", "pad": "' + b"x" * huge + b'"}'
        _send(settings, settings.topic("events"), [(b"p000", oversized)])
        after_poison = _fresh_recommendations(world, [first, second], users, world.item_ids[1], 120)

        last: dict[str, Sent] = {}
        for s in sent:
            if s.item_id:
                last[s.item_id] = s

        def catalogue_applied() -> bool:
            for worker in (first, second):
                for item_id, s in last.items():
                    status = worker.get(f"/items/{item_id}/similar?k=1")[0]
                    if status != (200 if s.expect == "item" else 404):
                        return False
            return True

        wait_until(catalogue_applied, 120, "every valid item applied and every tombstone honoured on both workers")
        second.stop(signal.SIGKILL)
        second.start()  # the compacted catalogue replays every poison
        after_restart = _fresh_recommendations(world, [first, second], users, world.item_ids[2], 120)
        wait_until(catalogue_applied, 120, "the restarted worker's catalogue")

        letters: dict[tuple[str, int, int], dict] = {}
        for r in read_topic(settings, settings.topic("dead-letter")):
            letter = json.loads(r.value)
            letters[(letter["topic"], letter["partition"], letter["offset"])] = letter
        refused = [(s, p, o) for s, (p, o) in zip(sent, where) if s.expect == "refused"]
        missing = [(p, o) for s, p, o in refused if (settings.topic("items"), p, o) not in letters]
        wrong = [letters[(settings.topic("items"), p, o)]["reason"] for s, p, o in refused
                 if (settings.topic("items"), p, o) in letters
                 and letters[(settings.topic("items"), p, o)]["reason"] not in ITEM_REASONS]
        updates_missing = [(p, o) for p, o in updates_at if (settings.topic("model-updates"), p, o) not in letters]
        trending_missing = [(p, o) for p, o in trending_at if (settings.topic("trending"), p, o) not in letters]
        big_event = [lt for (topic, _, _), lt in letters.items() if topic == settings.topic("events")
                     and lt["reason"] == "too_large"]
        outcome.figures = {
            "scenario": "poison pills", "workers": 2, "bad_records": len(refused) + len(bad_updates) + len(bad_trending) + 1,
            "items_sent": len(sent), "items_refused": len(refused), "items_applied": sum(
                s.expect == "item" for s in last.values()), "tombstones": sum(s.expect == "tombstone" for s in sent),
            "announcements_refused": len(bad_updates), "trending_refused": len(bad_trending),
            "oversized_event_bytes": len(oversized),
            "crashes": 0, "refused_not_in_dead_letter": len(missing) + len(updates_missing) + len(trending_missing), "wrong_reason": len(wrong),
            "freshness_ms_before": warm, "freshness_ms_after_poison": after_poison,
            "freshness_ms_after_restart": after_restart, "seconds": round(time.perf_counter() - started, 1)}
        if missing:
            outcome.problems.append(f"{len(missing)} refused catalogue records not in dead-letter, e.g. {missing[:3]}")
        if wrong:
            outcome.problems.append(f"unexpected reasons {sorted(set(wrong))[:5]}")
        if updates_missing:
            outcome.problems.append(f"{len(updates_missing)} refused announcements not in dead-letter")
        if trending_missing:
            outcome.problems.append(f"{len(trending_missing)} refused trending records not in dead-letter")
        if not big_event:
            outcome.problems.append("the oversized event is not in dead-letter as too_large")
        elif big_event[0]["value_size"] != len(oversized) or len(json.dumps(big_event[0])) > 64 * 1024:
            outcome.problems.append("the oversized event's dead letter is not bounded or lost its size")
    except (RuntimeError, TimeoutError) as e:
        outcome.figures.setdefault("scenario", "poison pills")
        outcome.figures["crashes"] = sum(w.proc is not None and w.proc.poll() is not None for w in (first, second))
        outcome.problems.append(f"{e}\n--- first worker\n{first.log_tail(30)}\n--- second\n{second.log_tail(30)}")
    finally:
        for worker in (first, second):
            worker.stop(signal.SIGKILL)
        world.close()
    return outcome


Scenario = Callable[[str, Path], Outcome]

import json

import pytest

from stream.core.trending import TrendingCounter

HOUR = 3_600_000


def test_recent_counts_beat_old_counts():
    t = TrendingCounter(half_life_s=3600)
    for _ in range(10):
        t.add("old", 0)
    for _ in range(4):
        t.add("new", 4 * HOUR)  # 10 events 4 half-lives ago are worth 0.625 now
    assert [i for i, _ in t.top(2)] == ["new", "old"]


def test_top_excludes_and_scales():
    t = TrendingCounter()
    for n, item in enumerate(["a", "a", "a", "b", "b", "c"]):
        t.add(item, 1000 + n)
    top = t.top(2, exclude={"a"})
    assert [i for i, _ in top] == ["b", "c"]
    assert top[0][1] == pytest.approx(1.0)


def test_far_future_rebases_without_overflow():
    t = TrendingCounter(half_life_s=1)
    t.add("a", 0)
    t.add("b", 10_000 * 1000)  # 10,000 half-lives later
    assert t.top(1) == [("b", 1.0)]


def test_negative_weights_are_ignored():
    t = TrendingCounter()
    t.add("a", 0, weight=-1.0)
    assert len(t) == 0


# --- over every worker -----------------------------------------------------------------
def _events(n=3000, items=200, partitions=4, seed=3):
    import random

    rng = random.Random(seed)
    t0 = 1_767_000_000_000
    return [(f"i{int(rng.paretovariate(1.2)) % items}", t0 + i * 1000 + rng.randrange(1000), rng.choice([1.0, 2.0, 0.5]),
             rng.randrange(partitions)) for i in range(n)]


def _same(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    assert all(abs(a - b) < 1e-9 for (_, a), (_, b) in zip(got, want))


def test_two_workers_exchanging_snapshots_trend_like_one_worker_of_every_event():
    from stream.core.trending import SharedTrending, encode_snapshot, parse_snapshot

    one = TrendingCounter(half_life_s=600)
    a, b = SharedTrending(half_life_s=600), SharedTrending(half_life_s=600)
    a.assign([0, 1])
    b.assign([2, 3])
    for item, ts, weight, partition in _events():
        one.add(item, ts, weight)
        (a if partition < 2 else b).add(item, ts, weight, partition)
    wire = lambda snaps: [parse_snapshot(encode_snapshot(p, r, s, 600), 4) for p, r, s in snaps]  # noqa: E731
    from_a, from_b = wire(a.snapshots()), wire(b.snapshots())
    assert sorted(p for p, _, _ in from_a) == [0, 1] and a.snapshots() == []  # only what changed, once
    assert a.receive(from_b + from_a) == 2 and b.receive(from_a + from_b) == 2  # own partitions ignored
    for worker in (a, b):
        _same(worker.top(20), one.top(20))
        _same(worker.top(5, exclude={one.top(1)[0][0]}), one.top(5, exclude={one.top(1)[0][0]}))
    # b stops: a takes its partitions, starting from their last published counts.
    a.assign([0, 1, 2, 3])
    _same(a.top(20), one.top(20))
    later = _events(n=200, seed=4)
    for item, ts, weight, partition in later:
        one.add(item, ts + 4_000_000, weight)
        a.add(item, ts + 4_000_000, weight, partition)
    _same(a.top(20), one.top(20))


def test_hostile_trending_records_are_refused_with_a_reason():
    from stream.core.trending import encode_snapshot, parse_snapshot
    from stream.errors import InvalidRecord

    good = {"partition": 1, "ref_ms": 5, "half_life_s": 60, "scores": {"i1": 2.0}}
    assert parse_snapshot(encode_snapshot(1, 5, {"i1": 2.0}, 60), 4) == (1, 5, {"i1": 2.0})
    for change, reason in (({"partition": 4}, "bad_partition"), ({"partition": "1"}, "bad_partition"),
                           ({"ref_ms": -1}, "wrong_type"), ({"scores": []}, "wrong_type"),
                           ({"scores": {"i1": -1}}, "bad_value"), ({"scores": {"i1": "x"}}, "bad_value"),
                           ({"scores": {" bad": 1}}, "bad_id"),
                           ({"scores": {f"i{n}": 1 for n in range(10_001)}}, "wrong_type")):
        with pytest.raises(InvalidRecord) as e:
            parse_snapshot(json.dumps(good | change).encode(), 4)
        assert e.value.reason == reason, change
    for raw, reason in ((b"[]", "not_an_object"), (None, "not_an_object"), (b"\xff", "bad_encoding")):
        with pytest.raises(InvalidRecord) as e:
            parse_snapshot(raw, 4)
        assert e.value.reason == reason

"""The decoded-state cache: used only for the exact bytes it was made from, never stale after a failed batch."""

from __future__ import annotations

import pytest

from stream.core.state import UserState, apply_event
from stream.core.state_cache import StateCache


def state(n: int) -> UserState:
    s = UserState()
    for i in range(n):
        apply_event(s, f"i{i}", "click", 1000 + i, None, i, 200)
    return s


def test_an_entry_serves_only_the_bytes_it_was_made_from() -> None:
    cache = StateCache(1 << 20)
    s = state(3)
    raw = s.to_bytes()
    cache.keep(b"u1", raw, s)
    assert cache.take(b"u1", raw) is s and cache.hits == 1
    assert cache.take(b"u1", raw) is None  # taken: the batch owns (and changes) the object now
    cache.keep(b"u1", raw, s)
    other = state(4).to_bytes()  # the table holds something else now (recovery, another writer)
    assert cache.take(b"u1", other) is None and len(cache) == 0 and cache.misses == 2
    cache.keep(b"u1", raw, s)
    assert cache.take(b"u1", None) is None and len(cache) == 0  # the key is gone from the table


def test_a_failed_batch_leaves_nothing_stale() -> None:
    cache = StateCache(1 << 20)
    s = state(2)
    raw = s.to_bytes()
    cache.keep(b"u", raw, s)
    taken = cache.take(b"u", raw)
    apply_event(taken, "i9", "click", 5000, None, 9, 200)  # the batch changes it, then fails before writing
    assert cache.take(b"u", raw) is None  # the next batch decodes the table's bytes instead
    assert UserState.from_bytes(raw).items == ["i0", "i1"]


def test_the_bound_is_in_stored_bytes_oldest_out_first() -> None:
    states = {f"u{i}".encode(): state(5) for i in range(10)}
    size = len(next(iter(states.values())).to_bytes())
    cache = StateCache(3 * size)
    for key, s in states.items():
        cache.keep(key, s.to_bytes(), s)
    assert len(cache) == 3 and cache.nbytes <= 3 * size
    assert cache.take(b"u9", states[b"u9"].to_bytes()) is states[b"u9"]
    assert cache.take(b"u0", states[b"u0"].to_bytes()) is None  # evicted
    big = state(50)
    cache.keep(b"big", big.to_bytes(), big)  # larger than the whole bound: not kept
    assert cache.take(b"big", big.to_bytes()) is None
    off = StateCache(0)
    off.keep(b"u", states[b"u1"].to_bytes(), states[b"u1"])
    assert len(off) == 0
    with pytest.raises(ValueError):
        StateCache(-1)

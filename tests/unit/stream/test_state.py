import numpy as np
import pytest

from stream.state import UserState, apply_event, recency_weighted_mean


def test_apply_event_appends_counts_and_dedupes_by_offset():
    s = UserState()
    assert apply_event(s, "i1", "play", 1000, 120.0, offset=5)
    assert apply_event(s, "i2", "skip", 2000, 3.0, offset=6)
    assert not apply_event(s, "i3", "click", 3000, None, offset=6)  # redelivered offset
    assert not apply_event(s, "i3", "click", 3000, None, offset=2)  # older offset
    assert s.items == ["i1", "i2"]
    assert s.counts == {"play": 1, "skip": 1}
    assert s.history[0] == ["i1", "play", 1000, 2.0] and s.history[1][3] == -1.0
    assert s.last_offset == 6


def test_history_is_bounded_to_the_newest():
    s = UserState()
    for n in range(10):
        apply_event(s, f"i{n}", "click", n, None, offset=n, max_history=4)
    assert s.items == ["i6", "i7", "i8", "i9"]
    assert s.n_events == 10


def test_json_round_trip_keeps_the_float32_embedding_exactly():
    s = UserState()
    apply_event(s, "i1", "like", 1, None, offset=0)
    s.embedding = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    s.last_recs = ["i4", "i5"]
    back = UserState.from_json(s.to_json())
    assert back.history == s.history and back.counts == s.counts and back.last_recs == s.last_recs
    assert back.embedding.dtype == np.float32 and np.array_equal(back.embedding, s.embedding)
    assert UserState.from_json(None).history == []


def test_recency_weighted_mean_prefers_recent_and_pushes_away_skips():
    a, b = np.eye(2, dtype=np.float32)
    v = recency_weighted_mean(np.stack([a, b]), np.array([1.0, 1.0]), half_life=1.0)
    assert v[1] > v[0]  # the newer item counts more
    assert np.linalg.norm(v) == pytest.approx(1.0)
    v = recency_weighted_mean(np.stack([a, b]), np.array([1.0, -1.0]), half_life=100.0)
    assert v[1] < 0 < v[0]
    assert recency_weighted_mean(np.stack([a]), np.array([-1.0])) is None
    assert recency_weighted_mean(np.zeros((0, 2), np.float32), np.zeros(0)) is None

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

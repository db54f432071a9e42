"""stream.core.pacing: slices of a batch sized to a time target from the measured cost per record."""

import pytest

from stream.core.pacing import SlicePacer


def test_the_first_slice_is_the_minimum_then_the_target_over_the_measured_cost():
    pacer = SlicePacer(target_s=0.020, minimum=16, maximum=2000)
    assert pacer.size() == 16
    pacer.observe(16, 16 * 0.0005)  # 500 us per record
    assert pacer.seconds_per_record == pytest.approx(0.0005)
    assert pacer.size() == 40  # 20 ms / 500 us


def test_sizes_stay_within_the_bounds():
    pacer = SlicePacer(target_s=0.020, minimum=16, maximum=500)
    pacer.observe(100, 100 * 1e-6)  # 1 us per record: 20,000 would fit
    assert pacer.size() == 500
    slow = SlicePacer(target_s=0.020, minimum=16, maximum=500)
    slow.observe(10, 10.0)  # 1 s per record
    assert slow.size() == 16


def test_the_cost_follows_a_change_smoothly():
    pacer = SlicePacer(target_s=0.010, minimum=1, maximum=10_000, smoothing=0.5)
    pacer.observe(10, 0.010)  # 1 ms per record
    pacer.observe(10, 0.030)  # 3 ms: the mean moves half way
    assert pacer.seconds_per_record == pytest.approx(0.002)
    assert pacer.size() == 5
    for _ in range(20):
        pacer.observe(10, 0.030)
    assert pacer.size() == 3


def test_empty_or_negative_observations_are_ignored():
    pacer = SlicePacer(target_s=0.020)
    pacer.observe(0, 1.0)
    pacer.observe(5, -1.0)
    assert pacer.seconds_per_record is None and pacer.size() == pacer.minimum


@pytest.mark.parametrize("kwargs", [{"target_s": 0}, {"target_s": 0.02, "minimum": 0},
                                    {"target_s": 0.02, "minimum": 10, "maximum": 5},
                                    {"target_s": 0.02, "smoothing": 0}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        SlicePacer(**kwargs)

import math

import pytest

from models.feedback import EventType, event_weight, is_positive


@pytest.mark.parametrize(
    ("etype", "value", "weight"),
    [
        ("click", None, 1.0),
        ("like", None, 2.0),
        ("cart", 59.0, 3.0),  # between a like and a purchase
        ("purchase", 59.0, 4.0),  # price does not scale the weight
        ("skip", 3.0, -1.0),
        ("play", None, 1.0),
        ("play", 180.0, 3.0),
        ("play", 90.0, 1.5),
        ("play", 6.0, 0.1),
        ("play", 0.0, 0.1),
        ("play", 3600.0, 3.0),
        ("play", math.nan, 1.0),
    ],
)
def test_weight_rule(etype, value, weight):
    assert event_weight(etype, value) == pytest.approx(weight)


def test_only_skip_is_negative():
    assert [t for t in EventType if not is_positive(t)] == [EventType.SKIP]


def test_unknown_type_raises():
    with pytest.raises(ValueError):
        event_weight("zap")

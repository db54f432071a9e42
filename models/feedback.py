"""Event types and the rule that turns each event into implicit feedback.

Training and the streaming worker share this rule, so a user's state built
online matches the data the trainer learns from.

The rule (weight of one event):

=========  ==============================================================
click      1.0
like       2.0
cart       3.0: an item put in the basket, intent short of a purchase (e-commerce
           logs such as Taobao's record it apart from views and purchases)
purchase   4.0 (the strongest signal; ``value`` is the price, not used here)
play       play seconds / 60, clipped to [0.1, 3.0]; 1.0 when the play time
           is unknown. A full three-minute song counts 3, a 6-second
           sample 0.1.
skip       -1.0: negative feedback. It pushes the user's embedding away
           from the item, never counts as a positive in training, and the
           item is still excluded from later recommendations.
=========  ==============================================================
"""

from __future__ import annotations

import enum
import math


class EventType(str, enum.Enum):
    """The closed set of event types an event producer may send."""

    CLICK = "click"
    PLAY = "play"
    SKIP = "skip"
    LIKE = "like"
    CART = "cart"
    PURCHASE = "purchase"


BASE_WEIGHTS: dict[EventType, float] = {
    EventType.CLICK: 1.0,
    EventType.PLAY: 1.0,
    EventType.SKIP: -1.0,
    EventType.LIKE: 2.0,
    EventType.CART: 3.0,
    EventType.PURCHASE: 4.0,
}
PLAY_SECONDS_PER_UNIT = 60.0
PLAY_WEIGHT_MIN = 0.1
PLAY_WEIGHT_MAX = 3.0


def event_weight(event_type: EventType | str, value: float | None = None) -> float:
    """Implicit-feedback weight of one event (negative for a skip).

    ``value`` is the event's optional number: play seconds for ``play``.
    """
    etype = EventType(event_type)
    if etype is EventType.PLAY and value is not None and math.isfinite(value):
        return min(PLAY_WEIGHT_MAX, max(PLAY_WEIGHT_MIN, value / PLAY_SECONDS_PER_UNIT))
    return BASE_WEIGHTS[etype]


def is_positive(event_type: EventType | str) -> bool:
    """Whether an event of this type counts as a positive interaction."""
    return BASE_WEIGHTS[EventType(event_type)] > 0

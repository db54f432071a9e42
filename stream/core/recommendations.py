"""The recommendations topic's record: a user's ranked items after an event, keyed by user id.

::

    {"user_id": "u42", "source": "personal", "model_version": "v20261201T101500Z",
     "index_version": "20261201T101512Z-3f9a1c0e2b7d", "event_timestamp_ms": 1767225600000,
     "event_offset": 1207, "generated_ms": 1767225600031, "published_ms": 1767225600035,
     "items": [{"item_id": "i9", "score": 0.8123, "reason": "because you played Night Drive"}, ...]}

``source`` is ``personal`` (the user's vector searched in the index) or
``trending`` (too little history: decayed event counts). ``event_offset`` and
``event_timestamp_ms`` name the newest event the recommendation reflects. The
HTTP API's ``GET /recommendations/{user}`` answers with the same fields (plus
``history_length``), built by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stream.core.codec import ID_SCHEMA, check_id, decode_object
from stream.core.state import dumps
from stream.errors import InvalidRecord

Source = Literal["personal", "trending"]
SOURCES = ("personal", "trending")
SCORE_DIGITS = 6
_FIELDS = ("user_id", "items", "source", "model_version", "index_version", "arm", "event_timestamp_ms",
           "event_offset", "generated_ms", "published_ms")


class InvalidRecommendation(InvalidRecord):
    """A record of the recommendations topic could not be decoded or validated."""


@dataclass(slots=True)
class Recommendation:
    """One user's recommendation: parallel ``item_ids``, ``scores`` and ``reasons``, best first."""

    user_id: str
    item_ids: Sequence[str]
    scores: Sequence[float]
    reasons: Sequence[str]
    source: Source
    model_version: str
    index_version: str
    event_timestamp_ms: int | None
    event_offset: int | None
    generated_ms: int
    published_ms: int | None = None
    arm: str | None = None  # the experiment arm the user is served by; None outside any experiment

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": [{"item_id": i, "score": round(s, SCORE_DIGITS), "reason": r}
                      for i, s, r in zip(self.item_ids, self.scores, self.reasons)],
            "source": self.source,
            "model_version": self.model_version,
            "index_version": self.index_version,
            "arm": self.arm,
            "event_timestamp_ms": self.event_timestamp_ms,
            "event_offset": self.event_offset,
            "generated_ms": self.generated_ms,
            "published_ms": self.published_ms,
        }

    def encode(self) -> bytes:
        """The record's value: compact JSON."""
        return dumps(self.to_dict())

    @classmethod
    def parse(cls, raw: bytes | str) -> Recommendation:
        """Decode and validate a recommendation value (for subscribers and tests)."""
        data = decode_object(raw, 4 * 1024**2, InvalidRecommendation)
        if set(data) != set(_FIELDS):
            raise InvalidRecommendation("wrong_fields", f"fields {sorted(data)} are not {sorted(_FIELDS)}")
        items = data["items"]
        if not isinstance(items, list) or not all(
                isinstance(it, dict) and set(it) == {"item_id", "score", "reason"} for it in items):
            raise InvalidRecommendation("wrong_type", "items must be objects of item_id, score and reason")
        if data["source"] not in SOURCES:
            raise InvalidRecommendation("wrong_type", f"source must be one of {', '.join(SOURCES)}")
        for it in items:
            check_id("item_id", it["item_id"], InvalidRecommendation)
            if type(it["score"]) not in (int, float) or not isinstance(it["reason"], str):
                raise InvalidRecommendation("wrong_type", "score must be a number and reason a string")
        for name in ("event_timestamp_ms", "event_offset", "published_ms"):
            if data[name] is not None and type(data[name]) is not int:
                raise InvalidRecommendation("wrong_type", f"{name} must be an integer or null")
        if type(data["generated_ms"]) is not int:
            raise InvalidRecommendation("wrong_type", "generated_ms must be an integer")
        if data["arm"] is not None and not isinstance(data["arm"], str):
            raise InvalidRecommendation("wrong_type", "arm must be a string or null")
        return cls(check_id("user_id", data["user_id"], InvalidRecommendation),
                   [it["item_id"] for it in items], [float(it["score"]) for it in items],
                   [it["reason"] for it in items], data["source"], str(data["model_version"]),
                   str(data["index_version"]), data["event_timestamp_ms"], data["event_offset"],
                   data["generated_ms"], data["published_ms"], data["arm"])


JSON_SCHEMA: dict[str, Any] = {
    "title": "streamrec recommendation",
    "description": "A user's ranked items, published after each event that changed them; the value on the "
                   "recommendations topic, keyed by user_id (UTF-8). GET /recommendations/{user_id} answers "
                   "with the same fields plus history_length.",
    "type": "object",
    "required": list(_FIELDS),
    "additionalProperties": False,
    "properties": {
        "user_id": ID_SCHEMA,
        "items": {
            "type": "array",
            "description": "Best first; never an item of the user's history.",
            "items": {
                "type": "object",
                "required": ["item_id", "score", "reason"],
                "additionalProperties": False,
                "properties": {
                    "item_id": ID_SCHEMA,
                    "score": {"type": "number", "description": "Inner product (personal) or relative "
                                                               "decayed count (trending)."},
                    "reason": {"type": "string"},
                },
            },
        },
        "source": {"enum": list(SOURCES)},
        "model_version": {"type": "string"},
        "index_version": {"type": "string"},
        "arm": {"type": ["string", "null"],
                "description": "The experiment arm that served the user (its model_version is the arm's); "
                               "null outside any experiment."},
        "event_timestamp_ms": {"type": ["integer", "null"]},
        "event_offset": {"type": ["integer", "null"], "minimum": 0},
        "generated_ms": {"type": "integer"},
        "published_ms": {"type": ["integer", "null"]},
    },
}

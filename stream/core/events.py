"""The event record and its validation.

An event is one user action on one item, as JSON on the ``events`` topic,
keyed by user id::

    {"user_id": "u42", "item_id": "i7", "event_type": "play",
     "timestamp_ms": 1767225600000, "value": 184.0, "context": {"device": "ios"}}

``value`` is optional: play seconds for ``play``/``skip``, the price for
``cart`` and ``purchase``. ``context`` is optional: a flat object of at most
:data:`MAX_CONTEXT_KEYS` short scalar values. Nothing else is allowed: an
unknown field is an error, so a producer's typo cannot pass silently.

:func:`parse_event` turns any input into an :class:`Event` or raises
:class:`~stream.errors.InvalidEvent` whose ``reason`` is one of
:data:`REASONS` (the dead-letter reason and metric label).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from models.feedback import EventType, event_weight
from stream.core.codec import ID_SCHEMA, MAX_ID_CHARS, check_id, loads_strict
from stream.errors import InvalidEvent

MAX_RECORD_BYTES = 16 * 1024
MAX_CONTEXT_KEYS = 16
MAX_CONTEXT_KEY_CHARS = 64
MAX_CONTEXT_VALUE_CHARS = 256
MAX_VALUE = 1e9
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_MS = 24 * 3_600_000  # producers' clocks may run ahead, but not by days

REASONS = (
    "too_large",
    "bad_encoding",
    "bad_json",
    "not_an_object",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "bad_id",
    "unknown_event_type",
    "bad_timestamp",
    "bad_value",
    "bad_context",
)
REQUIRED_FIELDS = ("user_id", "item_id", "event_type", "timestamp_ms")
OPTIONAL_FIELDS = ("value", "context")
EVENT_TYPES = tuple(t.value for t in EventType)
_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
_EVENT_TYPE = {**{t.value: t for t in EventType}, **{t: t for t in EventType}}  # members too: mappings may hold them
# orjson reads integers beyond 64 bits as floats, which the stdlib keeps exact: a float
# this large may be one of them.
_INT64_SIZED = 9.2e18

ContextValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event. Construct with :func:`parse_event` or :meth:`create`."""

    user_id: str
    item_id: str
    event_type: EventType
    timestamp_ms: int
    value: float | None = None
    context: Mapping[str, ContextValue] | None = None

    @classmethod
    def create(cls, user_id: str, item_id: str, event_type: str | EventType, timestamp_ms: int | None = None,
               value: float | None = None, context: Mapping[str, ContextValue] | None = None) -> Event:
        """Build and validate an event; ``timestamp_ms`` defaults to now."""
        raw: dict[str, Any] = {
            "user_id": user_id,
            "item_id": item_id,
            "event_type": EventType(event_type).value if isinstance(event_type, EventType) else event_type,
            "timestamp_ms": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        }
        if value is not None:
            raw["value"] = value
        if context is not None:
            raw["context"] = dict(context)
        return parse_event(raw)

    @property
    def weight(self) -> float:
        """Implicit-feedback weight (see :mod:`models.feedback`)."""
        return event_weight(self.event_type, self.value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type.value,
            "timestamp_ms": self.timestamp_ms,
        }
        if self.value is not None:
            out["value"] = self.value
        if self.context is not None:
            out["context"] = dict(self.context)
        return out

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()


def parse_event(raw: bytes | bytearray | str | Mapping[str, Any], now_ms: int | None = None) -> Event:
    """Decode and validate one event.

    ``raw`` is the record value (UTF-8 JSON bytes or text) or an already decoded
    mapping. ``now_ms`` bounds the timestamp from above (default: the clock).
    Raises :class:`InvalidEvent` with a reason from :data:`REASONS`.
    """
    if isinstance(raw, (bytes, bytearray, str)):
        if len(raw) > MAX_RECORD_BYTES:
            raise InvalidEvent("too_large", f"record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}")
        data = _fast_loads(raw) if isinstance(raw, (bytes, bytearray)) else _NOT_FAST
        if data is _NOT_FAST:
            data = loads_strict(raw, InvalidEvent)
    else:
        data = raw
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    return _validate(data, int(time.time() * 1000) if now_ms is None else now_ms)


_NOT_FAST = object()


def _fast_loads(raw: bytes | bytearray) -> Any:
    """orjson's reading of ``raw``, or ``_NOT_FAST`` when only the stdlib's can be trusted.

    orjson rejects everything the stdlib path turns into a specific reason (invalid
    UTF-8, NaN and Infinity tokens, out-of-range floats, lone surrogates, syntax
    errors) and reads the rest the same way, except integers beyond 64 bits (floats
    for orjson) and nesting deeper than the stdlib's recursion limit: an object
    holding floats that large, or containers below the context's level, is read
    again by the stdlib. So the stdlib path still decides every rejection.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_FAST
    if type(data) is not dict:
        return _NOT_FAST  # never an event: the stdlib's reason
    for value in data.values():
        kind = type(value)
        if kind is float:
            if not -_INT64_SIZED < value < _INT64_SIZED:
                return _NOT_FAST
        elif kind is dict:
            for inner in value.values():
                kind = type(inner)
                if kind is dict or kind is list or (kind is float and not -_INT64_SIZED < inner < _INT64_SIZED):
                    return _NOT_FAST
        elif kind is list:
            return _NOT_FAST
    return data


def _validate(data: Mapping[str, Any], now_ms: int) -> Event:
    get = data.get
    user_id, item_id, etype, ts = get("user_id"), get("item_id"), get("event_type"), get("timestamp_ms")
    if user_id is None or item_id is None or etype is None or ts is None:
        missing = [f for f in REQUIRED_FIELDS if f not in data or data[f] is None]
        raise InvalidEvent("missing_field", f"missing {', '.join(missing)}")
    if not _FIELDS.issuperset(data):
        unknown = sorted(str(k)[:MAX_CONTEXT_KEY_CHARS] for k in data if k not in _FIELDS)
        raise InvalidEvent("unknown_field", f"unknown field(s) {', '.join(unknown[:5])}")

    user_id = check_id("user_id", user_id, InvalidEvent)
    item_id = check_id("item_id", item_id, InvalidEvent)

    if not isinstance(etype, str):
        raise InvalidEvent("wrong_type", f"event_type must be a string, got {type(etype).__name__}")
    event_type = _EVENT_TYPE.get(etype)
    if event_type is None:
        raise InvalidEvent("unknown_event_type", f"event_type {etype[:40]!r} is not one of {', '.join(EVENT_TYPES)}")

    if type(ts) is not int and (isinstance(ts, bool) or not isinstance(ts, int)):
        raise InvalidEvent("wrong_type", f"timestamp_ms must be an integer, got {type(ts).__name__}")
    if ts < MIN_TIMESTAMP_MS:
        raise InvalidEvent("bad_timestamp", f"timestamp_ms {ts} is before 2000-01-01 (seconds instead of ms?)")
    if ts > now_ms + MAX_FUTURE_SKEW_MS:
        raise InvalidEvent("bad_timestamp", f"timestamp_ms {ts} is more than a day in the future")

    value = get("value")
    if value is not None:
        if type(value) is not float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidEvent("wrong_type", f"value must be a number, got {type(value).__name__}")
        try:
            value = float(value)
        except OverflowError:  # an integer literal beyond any float: was an uncaught crash
            raise InvalidEvent("bad_value", f"value must be finite and in [0, {MAX_VALUE:g}]") from None
        if not math.isfinite(value) or value < 0 or value > MAX_VALUE:
            raise InvalidEvent("bad_value", f"value {value} must be finite and in [0, {MAX_VALUE:g}]")

    context = get("context")
    if context is not None:
        context = _check_context(context)

    return Event(user_id, item_id, event_type, ts, value, context)


def _check_context(context: Any) -> dict[str, ContextValue]:
    if not isinstance(context, Mapping):
        raise InvalidEvent("bad_context", f"context must be an object, got {type(context).__name__}")
    if len(context) > MAX_CONTEXT_KEYS:
        raise InvalidEvent("bad_context", f"context has {len(context)} keys, at most {MAX_CONTEXT_KEYS}")
    out: dict[str, ContextValue] = {}
    for key, val in context.items():
        if not isinstance(key, str) or not key or len(key) > MAX_CONTEXT_KEY_CHARS:
            raise InvalidEvent("bad_context", "context keys must be non-empty strings of at most "
                               f"{MAX_CONTEXT_KEY_CHARS} characters")
        if isinstance(val, str):
            if len(val) > MAX_CONTEXT_VALUE_CHARS:
                raise InvalidEvent("bad_context", f"context[{key!r}] is longer than {MAX_CONTEXT_VALUE_CHARS}")
        elif isinstance(val, float):
            if not math.isfinite(val):
                raise InvalidEvent("bad_context", f"context[{key!r}] is not finite")
        elif val is not None and not isinstance(val, (int, bool)):
            raise InvalidEvent("bad_context", f"context[{key!r}] must be a string, number, boolean or null")
        out[key] = val
    return out


# The events topic's JSON Schema (docs/schemas/events.schema.json). Everything parse_event
# accepts is valid here; a few checks have no JSON Schema form (printable ids, the
# timestamp's upper bound relative to now) and are the parser's alone.
JSON_SCHEMA: dict[str, Any] = {
    "title": "streamrec event",
    "description": "One user action on one item; the record value on the events topic, keyed by "
                   "user_id (UTF-8).",
    "type": "object",
    "required": list(REQUIRED_FIELDS),
    "additionalProperties": False,
    "properties": {
        "user_id": ID_SCHEMA,
        "item_id": ID_SCHEMA,
        "event_type": {"enum": list(EVENT_TYPES)},
        "timestamp_ms": {"type": "integer", "minimum": MIN_TIMESTAMP_MS,
                         "description": "Milliseconds since the Unix epoch; at most a day ahead of the "
                                        "consumer's clock."},
        "value": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_VALUE,
                  "description": "Play seconds for play/skip, the price for cart/purchase."},
        "context": {
            "type": ["object", "null"],
            "maxProperties": MAX_CONTEXT_KEYS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_CONTEXT_KEY_CHARS},
            "additionalProperties": {
                "oneOf": [{"type": "string", "maxLength": MAX_CONTEXT_VALUE_CHARS},
                          {"type": ["number", "boolean", "null"]}],
            },
        },
    },
    "x-max-bytes": MAX_RECORD_BYTES,
}

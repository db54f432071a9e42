"""Decoding a topic record's JSON value and checking ids, the same way on every topic.

Every record a worker or the trainer reads may come from a client that is not
ours: these helpers turn any bytes into a JSON object or raise
:class:`~stream.errors.InvalidRecord` with one of :data:`DECODE_REASONS`.
"""

from __future__ import annotations

import json
from typing import Any

from stream.errors import InvalidRecord

MAX_ID_CHARS = 128
DECODE_REASONS = ("too_large", "bad_encoding", "bad_json", "not_an_object")
_TOO_LONG_ID = 10**MAX_ID_CHARS  # integer ids from here on have more than MAX_ID_CHARS digits


def reject_constant(token: str) -> float:
    """``json.loads``' ``parse_constant``: NaN and Infinity are not JSON numbers."""
    raise InvalidRecord("bad_value", f"non-finite number {token} is not allowed")


def loads_strict(raw: bytes | bytearray | str, error: type[InvalidRecord] = InvalidRecord) -> Any:
    """The stdlib's reading of ``raw``, with our reasons: invalid UTF-8, bad JSON, NaN tokens
    (raised as ``error``, a subclass of :class:`InvalidRecord` naming the topic's kind of record)."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise error("bad_encoding", f"not UTF-8: {e.reason} at byte {e.start}") from e
    try:
        return json.loads(raw, parse_constant=reject_constant)
    except InvalidRecord as e:
        raise error(e.reason, e.detail) from None
    except (ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, or an integer past 4,300 digits
        raise error("bad_json", str(e)[:200]) from e


def decode_object(raw: bytes | bytearray | str | None, max_bytes: int,
                  error: type[InvalidRecord] = InvalidRecord) -> dict[str, Any]:
    """The JSON object in ``raw``; raises :class:`InvalidRecord` (``too_large``, ``bad_encoding``,
    ``bad_json``, ``bad_value`` for NaN/Infinity, ``not_an_object``; ``None`` is ``not_an_object``)."""
    if raw is None:
        raise error("not_an_object", "the record has no value")
    if len(raw) > max_bytes:
        raise error("too_large", f"record of {len(raw)} bytes exceeds {max_bytes}")
    data = loads_strict(raw, error)
    if type(data) is not dict:
        raise error("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    return data


def check_id(name: str, value: Any, error: type[InvalidRecord] = InvalidRecord) -> str:
    """A user or item id as text: a string or non-negative integer of 1 to :data:`MAX_ID_CHARS`
    printable characters without surrounding spaces; raises :class:`InvalidRecord`
    (``wrong_type`` or ``bad_id``)."""
    if type(value) is str and 0 < len(value) <= MAX_ID_CHARS and value.isprintable() and value == value.strip():
        return value  # the usual case, and what the checks below let through unchanged
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise error("wrong_type", f"{name} must be a string or integer, got {type(value).__name__}")
    if isinstance(value, int):
        # str() of an integer thousands of digits long raises (an uncaught crash before).
        if value < 0:
            raise error("bad_id", f"{name} {value if value > -_TOO_LONG_ID else '(very long)'} is negative")
        if value >= _TOO_LONG_ID:
            raise error("bad_id", f"{name} must have 1 to {MAX_ID_CHARS} characters, got more")
        value = str(value)
    if not value or len(value) > MAX_ID_CHARS:
        raise error("bad_id", f"{name} must have 1 to {MAX_ID_CHARS} characters, got {len(value)}")
    if value != value.strip() or not value.isprintable():
        raise error("bad_id", f"{name} has surrounding spaces or unprintable characters")
    return value


# The JSON Schema of an id, as check_id accepts it (JSON Schema cannot say "printable": the
# pattern rejects control characters and surrounding white space).
ID_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"},
        {"type": "integer", "minimum": 0, "maximum": 10**MAX_ID_CHARS - 1},
    ],
}

"""The dead-letter topic's record: a rejected record's bytes, where it came from, and why.

The value is JSON (keyed like the rejected record)::

    {"reason": "bad_json", "detail": "Expecting value: line 1 column 1 (char 0)",
     "topic": "events", "partition": 3, "offset": 1207, "timestamp_ms": 1767225600000,
     "key_b64": "dTQy", "key_size": 3, "key_sha256": "6d35...",
     "value_b64": "bm90IGpzb24=", "value_size": 8, "value_sha256": "9a1f...",
     "rejected_ms": 1767225600042}

``key_b64`` and ``value_b64`` are the original bytes in base64 (``null`` for a
missing key or value), at most ``STREAMREC_DEAD_LETTER_MAX_BYTES`` of each (16
KiB by default): a record near the broker's size limit must not make a dead
letter over it. ``*_size`` and ``*_sha256`` describe the whole original, so a
truncated copy is recognised (``size`` larger than the bytes kept) and the
original can be matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from stream.core.codec import decode_object
from stream.core.records import Record
from stream.core.state import dumps
from stream.errors import InvalidRecord

MAX_DETAIL_CHARS = 1000
DEFAULT_MAX_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record (see module docstring)."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key_b64: str | None
    key_size: int | None
    key_sha256: str | None
    value_b64: str | None
    value_size: int | None
    value_sha256: str | None
    rejected_ms: int

    @classmethod
    def of(cls, record: Record, reason: str, detail: str, now_ms: int,
           max_bytes: int = DEFAULT_MAX_BYTES) -> DeadLetter:
        """The dead letter of ``record``, rejected at ``now_ms`` for ``reason``, keeping at most
        ``max_bytes`` of its key and of its value."""
        return cls(reason, detail[:MAX_DETAIL_CHARS], record.topic, record.partition, record.offset,
                   record.timestamp_ms, *_kept(record.key, max_bytes), *_kept(record.value, max_bytes), now_ms)

    @property
    def truncated(self) -> bool:
        """Whether part of the original key or value is not kept."""
        return any(size is not None and kept is not None and size > len(kept)
                   for size, kept in ((self.key_size, self.key), (self.value_size, self.value)))

    @property
    def key(self) -> bytes | None:
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    @property
    def value(self) -> bytes | None:
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def encode(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def parse(cls, raw: bytes | str) -> DeadLetter:
        """Decode and validate a dead-letter value; raises :class:`InvalidRecord`."""
        data = decode_object(raw, max_bytes=4 * 1024**2)
        if set(data) != set(cls.__slots__):
            raise InvalidRecord("wrong_fields", f"fields {sorted(data)} are not {sorted(cls.__slots__)}")
        for name in ("reason", "detail", "topic"):
            if not isinstance(data[name], str):
                raise InvalidRecord("wrong_type", f"{name} must be a string")
        for name in ("partition", "offset", "timestamp_ms", "rejected_ms"):
            if type(data[name]) is not int:
                raise InvalidRecord("wrong_type", f"{name} must be an integer")
        for name in ("key_size", "value_size"):
            if data[name] is not None and type(data[name]) is not int:
                raise InvalidRecord("wrong_type", f"{name} must be an integer or null")
        for name in ("key_sha256", "value_sha256"):
            if data[name] is not None and not isinstance(data[name], str):
                raise InvalidRecord("wrong_type", f"{name} must be a string or null")
        for name in ("key_b64", "value_b64"):
            value = data[name]
            if value is not None:
                try:
                    base64.b64decode(value, validate=True)
                except (TypeError, binascii.Error) as e:
                    raise InvalidRecord("wrong_type", f"{name} must be base64 or null") from e
        return cls(**data)


def _kept(raw: bytes | None, max_bytes: int) -> tuple[str | None, int | None, str | None]:
    """(base64 of the first ``max_bytes``, the full size, the full SHA-256) of ``raw``; all null for ``None``."""
    if raw is None:
        return None, None, None
    return base64.b64encode(raw[:max_bytes]).decode(), len(raw), hashlib.sha256(raw).hexdigest()


JSON_SCHEMA: dict[str, Any] = {
    "title": "streamrec dead letter",
    "description": "A record a worker rejected, with its original bytes and the reason; the value on the "
                   "dead-letter topic, keyed like the rejected record.",
    "type": "object",
    "required": list(DeadLetter.__slots__),
    "additionalProperties": False,
    "properties": {
        "reason": {"type": "string", "description": "Machine-readable reason (also the metric label)."},
        "detail": {"type": "string", "maxLength": MAX_DETAIL_CHARS},
        "topic": {"type": "string", "description": "Topic the rejected record was read from."},
        "partition": {"type": "integer", "minimum": 0},
        "offset": {"type": "integer", "minimum": -1,
                   "description": "-1: a user state read back from a worker's local table (its changelog "
                                  "offset is not known there)."},
        "timestamp_ms": {"type": "integer", "description": "The rejected record's Kafka timestamp."},
        "key_b64": {"type": ["string", "null"], "contentEncoding": "base64",
                    "description": "The original key's first bytes (all of them unless key_size is larger)."},
        "key_size": {"type": ["integer", "null"], "minimum": 0, "description": "The original key's length."},
        "key_sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
        "value_b64": {"type": ["string", "null"], "contentEncoding": "base64",
                      "description": "The original value's first bytes (all of them unless value_size is "
                                     "larger)."},
        "value_size": {"type": ["integer", "null"], "minimum": 0},
        "value_sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
        "rejected_ms": {"type": "integer"},
    },
}

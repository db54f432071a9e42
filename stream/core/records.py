"""A record as consumed from any topic: where it came from, its raw key and value, Kafka's timestamp.

The one record type of the streaming side: the range reader returns it, the
batch feed and the hole filler hand it on, the batch processor consumes it and
a dead letter names it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record (``timestamp_ms``: the record's Kafka timestamp)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int

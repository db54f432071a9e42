"""One micro-batch of event records in, user states and recommendations out.

Pure logic, no Kafka: the Faust agent (``stream/worker.py``) feeds it the
records of a batch and writes back what it returns, and tests call it directly.
Per batch: every record is validated (bad ones come back as dead letters with
a reason), applied to its user's state (redeliveries recognised by offset and
not applied again; at least once the user's state and recommendation are still
written again, as the crash that caused the redelivery may have lost them in
flight),
then one user vector per touched user is computed and searched in one batched
index call, and one recommendation per user is built: several events of a user
in one batch produce one recommendation, from the newest state.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from models.feedback import is_positive
from stream.errors import InvalidEvent
from stream.events import Event, parse_event
from stream.serving import ModelHolder
from stream.state import UserState, apply_event
from stream.trending import TrendingCounter

# Reasons the worker adds to the schema's (stream.events.REASONS).
UNKNOWN_ITEM = "unknown_item"
KEY_MISMATCH = "key_mismatch"
NO_MODEL = "no_model"


@dataclass(frozen=True)
class InRecord:
    """A record as consumed: where it came from, its raw key and value, Kafka's timestamp."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass
class UserUpdate:
    """A user's new state, the last record that touched it and the recommendation to publish."""

    state: UserState
    record: InRecord
    event: Event
    recommendation: dict[str, Any] | None = None


@dataclass
class BatchResult:
    dead_letters: list[tuple[InRecord, str, str]] = field(default_factory=list)  # record, reason, detail
    updates: dict[str, UserUpdate] = field(default_factory=dict)
    applied: int = 0
    duplicates: int = 0
    online_trials: int = 0
    online_hits: int = 0
    retrieval_seconds: float = 0.0


def dead_letter_record(record: InRecord, reason: str, detail: str, now_ms: int) -> bytes:
    """The dead-letter value: the original bytes (base64), where they came from, and why."""
    b64 = lambda b: None if b is None else base64.b64encode(b).decode()  # noqa: E731
    return json.dumps({
        "reason": reason,
        "detail": detail,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key_b64": b64(record.key),
        "value_b64": b64(record.value),
        "rejected_ms": now_ms,
    }, separators=(",", ":")).encode()


class BatchProcessor:
    """Applies batches of event records to user state and builds recommendations."""

    def __init__(self, holder: ModelHolder, trending: TrendingCounter, top_k: int = 10,
                 max_history: int = 200, rewrite_redelivered: bool = True) -> None:
        self.holder = holder
        self.rewrite_redelivered = rewrite_redelivered
        self.trending = trending
        self.top_k = top_k
        self.max_history = max_history

    def process(self, records: list[InRecord], load_state: Callable[[str, InRecord], UserState],
                now_ms: int | None = None) -> BatchResult:
        """Process one batch in order. ``load_state(user_id, record)`` returns the stored state
        (``record`` is the user's first record of the batch: it names the partition)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        result = BatchResult()
        model = self.holder.current  # one version for the whole batch
        for record in records:
            try:
                event = parse_event(record.value if record.value is not None else b"", now_ms=now_ms)
            except InvalidEvent as e:
                result.dead_letters.append((record, e.reason, e.detail))
                continue
            if record.key is not None and record.key != event.user_id.encode():
                result.dead_letters.append((record, KEY_MISMATCH, "record key differs from user_id: "
                                            "the user's state would live on another partition"))
                continue
            if model is None:
                result.dead_letters.append((record, NO_MODEL, "no catalogue loaded yet"))
                continue
            if not model.has_item(event.item_id):
                result.dead_letters.append((record, UNKNOWN_ITEM, f"item {event.item_id[:64]!r} is not in the "
                                            "catalogue (publish it to the items topic first)"))
                continue
            update = result.updates.get(event.user_id)
            state = update.state if update else load_state(event.user_id, record)
            if not apply_event(state, event.item_id, event.event_type, event.timestamp_ms, event.value,
                               record.offset, self.max_history):
                result.duplicates += 1
                # At least once, a redelivery means the worker stopped before committing this
                # offset, so the state's changelog record and the recommendation built from it
                # may never have reached Kafka although the local database has them.
                if update is None and self.rewrite_redelivered:
                    result.updates[event.user_id] = UserUpdate(state, record, event)
                continue
            result.applied += 1
            if is_positive(event.event_type):
                self.trending.add(event.item_id, event.timestamp_ms, event.weight)
                if state.last_recs:
                    result.online_trials += 1
                    result.online_hits += event.item_id in state.last_recs
            result.updates[event.user_id] = UserUpdate(state, record, event)
        if model is not None and result.updates:
            started = time.perf_counter()
            self._recommend(model, result.updates, now_ms)
            result.retrieval_seconds = time.perf_counter() - started
        return result

    def _recommend(self, model, updates: dict[str, UserUpdate], now_ms: int) -> None:
        users = list(updates)
        vectors = model.user_vectors([updates[u].state.history for u in users])
        personal = [u for u, v in zip(users, vectors) if v is not None]
        found: dict[str, list[tuple[str, float]]] = {}
        if personal:
            queries = np.stack([v for v in vectors if v is not None])
            excluded = [updates[u].state.consumed() for u in personal]
            for user, items in zip(personal, model.search(queries, self.top_k, excluded)):
                found[user] = items
        for user, vector in zip(users, vectors):
            update = updates[user]
            state = update.state
            if vector is not None:
                state.embedding = vector
                items = model.explain(found.get(user, []), state.history)
                source = "personal"
            else:
                items = model.explain(self.trending.top(self.top_k, state.consumed()), [])
                source = "trending"
            state.model_version = model.model_version
            state.last_recs = [r.item_id for r in items]
            update.recommendation = {
                "user_id": user,
                "items": [r.to_json() for r in items],
                "source": source,
                "model_version": model.model_version,
                "index_version": model.index_version,
                "event_timestamp_ms": update.event.timestamp_ms,
                "event_offset": update.record.offset,
                "generated_ms": now_ms,
            }

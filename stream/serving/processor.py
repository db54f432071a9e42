"""One micro-batch of event records in, user states and recommendations out.

Pure logic, no Kafka: the Faust agent (``stream/runtime/worker.py``) feeds it the
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

from models.feedback import EventType, is_positive
from stream.core.events import Event, parse_event
from stream.core.state import UserState, apply_event, dumps
from stream.core.trending import TrendingCounter
from stream.errors import InvalidEvent
from stream.serving.model import POPULAR, ModelHolder

_POSITIVE = frozenset(t for t in EventType if is_positive(t))

# Reasons the worker adds to the schema's (stream.core.events.REASONS).
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
        catalogue = model.positions if model is not None else None
        updates = result.updates
        for record in records:
            try:
                event = parse_event(record.value if record.value is not None else b"", now_ms=now_ms)
            except InvalidEvent as e:
                result.dead_letters.append((record, e.reason, e.detail))
                continue
            user_id, item_id = event.user_id, event.item_id
            if record.key is not None and record.key != user_id.encode():
                result.dead_letters.append((record, KEY_MISMATCH, "record key differs from user_id: "
                                            "the user's state would live on another partition"))
                continue
            if catalogue is None:
                result.dead_letters.append((record, NO_MODEL, "no catalogue loaded yet"))
                continue
            if item_id not in catalogue:
                result.dead_letters.append((record, UNKNOWN_ITEM, f"item {item_id[:64]!r} is not in the "
                                            "catalogue (publish it to the items topic first)"))
                continue
            update = updates.get(user_id)
            state = update.state if update else load_state(user_id, record)
            if not apply_event(state, item_id, event.event_type, event.timestamp_ms, event.value,
                               record.offset, self.max_history):
                result.duplicates += 1
                # At least once, a redelivery means the worker stopped before committing this
                # offset, so the state's changelog record and the recommendation built from it
                # may never have reached Kafka although the local database has them.
                if update is None and self.rewrite_redelivered:
                    updates[user_id] = UserUpdate(state, record, event)
                continue
            result.applied += 1
            if event.event_type in _POSITIVE:
                self.trending.add(item_id, event.timestamp_ms, event.weight)
                if state.last_recs:
                    result.online_trials += 1
                    result.online_hits += item_id in state.last_recs
            if update is None:
                updates[user_id] = UserUpdate(state, record, event)
            else:
                update.record, update.event = record, event
        if model is not None and result.updates:
            started = time.perf_counter()
            self._recommend(model, result.updates, now_ms)
            result.retrieval_seconds = time.perf_counter() - started
        return result

    def _recommend(self, model, updates: dict[str, UserUpdate], now_ms: int) -> None:
        users = list(updates)
        histories = model.histories([updates[u].state.history for u in users])
        vectors = model.vectors_of(histories)
        personal = [r for r, v in enumerate(vectors) if v is not None]
        found_positions: list[list[int]] = []
        found_scores: list[list[float]] = []
        if personal:
            queries = np.stack([vectors[r] for r in personal])
            found_positions, found_scores = model.search_positions(
                queries, self.top_k, histories.known_positions(personal))
        reasons = model.reasons(histories, personal, found_positions)
        item_ids = model.item_ids
        model_version, index_version = model.model_version, model.index_version
        ranked = iter(zip(found_positions, found_scores, reasons))
        for row, user in enumerate(users):
            update = updates[user]
            state = update.state
            vector = vectors[row]
            if vector is not None:
                state.embedding = vector
                positions, scores, why = next(ranked)
                ids = [item_ids[p] for p in positions]
                source = "personal"
            else:
                trending = self.trending.top(self.top_k, histories.consumed(row))
                ids = [i for i, _ in trending]
                scores = [s for _, s in trending]
                why = [POPULAR] * len(ids)
                source = "trending"
            state.model_version = model_version
            state.last_recs = ids
            update.recommendation = {
                "user_id": user,
                "items": [{"item_id": i, "score": round(s, 6), "reason": r} for i, s, r in zip(ids, scores, why)],
                "source": source,
                "model_version": model_version,
                "index_version": index_version,
                "event_timestamp_ms": update.event.timestamp_ms,
                "event_offset": update.record.offset,
                "generated_ms": now_ms,
            }


def encode_recommendation(recommendation: dict[str, Any]) -> bytes:
    """A recommendation record's value: its compact JSON (:func:`stream.core.state.dumps`)."""
    return dumps(recommendation)

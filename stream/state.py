"""Per-user state kept in the worker's RocksDB table, and the rule that updates it.

The state is a plain JSON object (the table's value), so a changelog record is
readable by any tool and survives code changes that add fields:

``history``: the most recent events, oldest first, at most ``max_history``;
each ``[item_id, event_type, timestamp_ms, weight]``.
``embedding``: the user's current vector, float32, base64 of its bytes (or null).
``counts``: events applied by type. ``last_recs``: the item ids of the last
recommendation published (for the online hit rate). ``last_offset``: the offset of the last
applied event of the user's partition, so a redelivered event (after a crash
under at-least-once) is recognised and not applied twice.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.feedback import EventType, event_weight

DEFAULT_MAX_HISTORY = 200


@dataclass
class UserState:
    """A user's recent history, embedding and counters (see module docstring)."""

    history: list[list[Any]] = field(default_factory=list)
    embedding: np.ndarray | None = None
    counts: dict[str, int] = field(default_factory=dict)
    last_offset: int = -1
    model_version: str | None = None
    last_recs: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        return sum(self.counts.values())

    @property
    def items(self) -> list[str]:
        """Item ids of the history, oldest first."""
        return [h[0] for h in self.history]

    def consumed(self) -> set[str]:
        """Items the user has interacted with (skipped ones included): never recommended again."""
        return {h[0] for h in self.history}

    def to_json(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "embedding": None if self.embedding is None
            else base64.b64encode(np.ascontiguousarray(self.embedding, dtype=np.float32).tobytes()).decode(),
            "counts": self.counts,
            "last_offset": self.last_offset,
            "model_version": self.model_version,
            "last_recs": self.last_recs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> UserState:
        if not data:
            return cls()
        emb = data.get("embedding")
        return cls(
            history=[list(h) for h in data.get("history", [])],
            embedding=None if emb is None else np.frombuffer(base64.b64decode(emb), dtype=np.float32).copy(),
            counts=dict(data.get("counts", {})),
            last_offset=int(data.get("last_offset", -1)),
            model_version=data.get("model_version"),
            last_recs=list(data.get("last_recs", [])),
        )


def apply_event(
    state: UserState,
    item_id: str,
    event_type: EventType | str,
    timestamp_ms: int,
    value: float | None,
    offset: int,
    max_history: int = DEFAULT_MAX_HISTORY,
) -> bool:
    """Apply one event to ``state`` in place; ``False`` if it was already applied.

    ``offset`` is the event's offset in the user's partition of the events
    topic: offsets only grow within a partition, so an offset at or below
    ``last_offset`` is a redelivery. The history keeps the newest
    ``max_history`` events.
    """
    if offset <= state.last_offset:
        return False
    etype = EventType(event_type)
    state.history.append([item_id, etype.value, int(timestamp_ms), round(event_weight(etype, value), 4)])
    if len(state.history) > max_history:
        del state.history[: len(state.history) - max_history]
    state.counts[etype.value] = state.counts.get(etype.value, 0) + 1
    state.last_offset = offset
    return True


def recency_weighted_mean(vectors: np.ndarray, weights: np.ndarray, half_life: float = 10.0) -> np.ndarray | None:
    """The fallback user vector: a mean of the history's item vectors, newest counting most.

    ``vectors``: float32 (n, d), oldest first; ``weights``: (n,) feedback
    weights (a skip's negative weight pushes the user away from that item).
    Each event's weight halves every ``half_life`` events back. Returns a unit
    float32 vector (d,), or ``None`` when the history carries no positive signal.
    """
    n = len(vectors)
    if n == 0:
        return None
    decay = 0.5 ** (np.arange(n - 1, -1, -1, dtype=np.float32) / half_life)
    w = (np.asarray(weights, dtype=np.float32) * decay)[:, None]
    if not (w > 0).any():
        return None
    v = (w * vectors).sum(axis=0)
    norm = float(np.linalg.norm(v))
    if norm == 0.0 or not np.isfinite(norm):
        return None
    return (v / norm).astype(np.float32)

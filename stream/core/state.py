"""Per-user state kept in the worker's RocksDB table, and the rule that updates it.

The state is a plain JSON object (the table's value), so a changelog record is
readable by any tool and survives code changes that add fields:

``history``: the most recent events, oldest first, at most ``max_history``;
each ``[item_id, event_type, timestamp_ms, weight]`` (a tuple in memory).
``embedding``: the user's current vector, float32, base64 of its bytes (or null).
``counts``: events applied by type. ``last_recs``: the item ids of the last
recommendation published (for the online hit rate). ``last_offset``: the offset of the last
applied event of the user's partition, so a redelivered event (after a crash
under at-least-once) is recognised and not applied twice.

:meth:`UserState.to_bytes` and :meth:`UserState.from_bytes` are the fast
(orjson) forms of ``json.dumps(state.to_json(), separators=(",", ":"))`` and
``UserState.from_json(json.loads(raw))``: the same JSON (byte for byte when the
ids are ASCII; other characters are written as UTF-8 instead of ``\\u`` escapes). Reading
decodes and type-checks a state in one pass (msgspec, typed as :meth:`UserState.to_json` writes
it); whatever that refuses takes the general path, which reads what the stdlib reads and names
what is wrong.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import orjson
from scipy.sparse import csr_array

from models.feedback import EventType, event_weight
from stream.errors import InvalidRecord

DEFAULT_MAX_HISTORY = 200
_EVENT_TYPES = {**{t.value: t for t in EventType}, **{t: t for t in EventType}}


@dataclass
class UserState:
    """A user's recent history, embedding and counters (see module docstring)."""

    history: list[tuple[Any, ...]] = field(default_factory=list)
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
        """The state as the JSON object stored (history rows as lists)."""
        return {**self._fields(), "history": [list(h) for h in self.history]}

    def _fields(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "embedding": None if self.embedding is None
            else base64.b64encode(np.ascontiguousarray(self.embedding, dtype=np.float32).tobytes()).decode(),
            "counts": self.counts,
            "last_offset": self.last_offset,
            "model_version": self.model_version,
            "last_recs": self.last_recs,
        }

    def to_bytes(self) -> bytes:
        """``json.dumps(self.to_json(), separators=(",", ":")).encode()``, several times faster."""
        return dumps(self._fields())  # orjson writes the tuples as arrays: no per-row copy

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> UserState:
        if not data:
            return cls()
        return cls._from_decoded(data, copy=True)

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview | str | None) -> UserState:
        """``UserState.from_json(json.loads(raw))`` (``None``: a new user), several times faster.

        Raises :class:`~stream.errors.InvalidRecord` (``bad_state``) for bytes that are not a
        state: the changelog topic they are restored from is writable by any client.
        """
        if raw is None:
            return cls()
        try:
            typed = _STATE.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, TypeError):
            pass  # not what to_bytes writes, or JSON only the stdlib reads (NaN): the general path
        else:
            return cls._from_typed(typed)
        try:
            data = loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise InvalidRecord("bad_state", f"stored user state is not JSON: {str(e)[:100]}") from e
        if not data:
            return cls()
        return cls._from_decoded(data, copy=False)  # everything decoded here is this state's own

    @classmethod
    def _from_decoded(cls, data: dict[str, Any], copy: bool) -> UserState:
        _check_decoded(data)
        history, counts, last_recs = data.get("history", []), data.get("counts", {}), data.get("last_recs", [])
        history = list(map(tuple, history))  # rows are tuples in memory
        if copy:  # the caller's dict: the state must not share its lists
            counts, last_recs = dict(counts), list(last_recs)
        return cls._built(history, data.get("embedding"), counts, int(data.get("last_offset", -1)),
                          data.get("model_version"), last_recs)

    @classmethod
    def _from_typed(cls, typed: _StoredState) -> UserState:
        return cls._built(typed.history, typed.embedding, typed.counts, typed.last_offset, typed.model_version,
                          typed.last_recs)

    @classmethod
    def _built(cls, history: list[tuple[Any, ...]], emb: str | None, counts: dict[str, int], last_offset: int,
               model_version: str | None, last_recs: list[str]) -> UserState:
        try:
            vector = None if emb is None else np.frombuffer(base64.b64decode(emb, validate=True), dtype=np.float32).copy()
        except (ValueError, TypeError) as e:  # binascii.Error is a ValueError
            raise InvalidRecord("bad_state", f"embedding is not base64 float32: {str(e)[:100]}") from e
        return cls(history, vector, counts, last_offset, model_version, last_recs)


class _StoredState(msgspec.Struct):
    """:meth:`UserState.to_json`'s shape, for the one-pass typed decode (what `_check_decoded` checks)."""

    history: list[tuple[str, str, int, int | float]] = []
    embedding: str | None = None
    counts: dict[str, int] = {}
    last_offset: int = -1
    model_version: str | None = None
    last_recs: list[str] = []


_STATE = msgspec.json.Decoder(_StoredState)


_ROW = (list, tuple)


def _check_decoded(data: Any) -> None:
    """Raise ``bad_state`` unless ``data`` has the shape :meth:`UserState.to_json` writes (cheap: one
    pass over the history, the worker reads a state per user per batch)."""
    if type(data) is not dict:
        raise InvalidRecord("bad_state", f"stored user state is a {type(data).__name__}, not an object")
    history, counts, last_recs = data.get("history", []), data.get("counts", {}), data.get("last_recs", [])
    if type(history) is not list or not all(
            type(h) in _ROW and len(h) == 4 and type(h[0]) is str and type(h[1]) is str and type(h[2]) is int
            and type(h[3]) in (int, float) for h in history):
        raise InvalidRecord("bad_state", "history must be [item_id, event_type, timestamp_ms, weight] rows")
    if type(counts) is not dict or not all(type(v) is int for v in counts.values()):
        raise InvalidRecord("bad_state", "counts must map event types to integers")
    if type(last_recs) is not list or not all(type(i) is str for i in last_recs):
        raise InvalidRecord("bad_state", "last_recs must be item ids")
    if type(data.get("last_offset", -1)) is not int or type(data.get("model_version")) not in (str, type(None)):
        raise InvalidRecord("bad_state", "last_offset must be an integer and model_version a string")
    if type(data.get("embedding")) not in (str, type(None)):
        raise InvalidRecord("bad_state", "embedding must be base64 text")


def max_state_bytes(max_history: int, top_k: int, max_dim: int) -> int:
    """An upper bound of :meth:`UserState.to_bytes`' length: ids of at most ``MAX_ID_CHARS``
    printable characters (4 UTF-8 bytes each, quotes and backslashes escaped in 2), a vector of
    at most ``max_dim`` floats, a version name of at most 128 characters."""
    from stream.core.codec import MAX_ID_CHARS

    id_bytes = 4 * MAX_ID_CHARS + 2
    row = id_bytes + 12 + 20 + 24 + 8  # [id, "purchase", timestamp, weight] with separators
    embedding = 4 * (4 * max_dim + 2) // 3 + 4
    counts = 5 * (12 + 20)
    return 200 + max_history * row + embedding + counts + top_k * (id_bytes + 1) + 4 * 128 + 2


def dumps(value: Any) -> bytes:
    """``json.dumps(value, separators=(",", ":")).encode()``'s JSON through orjson, several
    times faster (non-ASCII as UTF-8 rather than ``\\u`` escapes)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # what orjson cannot write (integers past 64 bits): the stdlib can
        return json.dumps(value, separators=(",", ":")).encode()


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """JSON through orjson, the stdlib for what only it reads (NaN, say): what :func:`dumps` wrote."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # what only the stdlib reads (NaN, say): read it as before
        return json.loads(bytes(raw) if isinstance(raw, memoryview) else raw)


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
    etype = _EVENT_TYPES.get(event_type) or EventType(event_type)
    name = etype.value
    history = state.history
    history.append((item_id, name, int(timestamp_ms), round(event_weight(etype, value), 4)))
    if len(history) > max_history:
        del history[: len(history) - max_history]
    state.counts[name] = state.counts.get(name, 0) + 1
    state.last_offset = offset
    return True


def embedding_of(raw: bytes | bytearray | memoryview | str) -> tuple[np.ndarray | None, str | None]:
    """The embedding of a stored state (``None``: none yet) and the model version that computed it,
    without building the state: what refilling a similar-users index from a table needs. Raises
    :class:`~stream.errors.InvalidRecord` (``bad_state``) for bytes that are not a state."""
    try:
        data = loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise InvalidRecord("bad_state", f"stored user state is not JSON: {str(e)[:100]}") from e
    if not isinstance(data, dict):
        raise InvalidRecord("bad_state", "a stored user state is a JSON object")
    emb, version = data.get("embedding"), data.get("model_version")
    version = version if isinstance(version, str) else None
    if emb is None:
        return None, version
    if type(emb) is not str:
        raise InvalidRecord("bad_state", "embedding must be base64 text")
    try:
        vector = np.frombuffer(base64.b64decode(emb, validate=True), dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise InvalidRecord("bad_state", f"embedding is not base64 float32: {str(e)[:100]}") from e
    return (vector if vector.size and np.isfinite(vector).all() else None), version


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


# Below this many users a batch's means are computed one by one: building the sparse
# matrix costs more than the loop it replaces.
_SPARSE_FROM_USERS = 4
_DECAY: dict[float, np.ndarray] = {}  # half-life -> 0.5 ** (k / half_life) for k = 0, 1, ...


def _decay(n: int, half_life: float) -> np.ndarray:
    """At least ``n`` decay factors, ``[k]`` for the event ``k`` events before the newest
    (float32, computed element by element as :func:`recency_weighted_mean` does)."""
    table = _DECAY.get(half_life)
    if table is None or len(table) < n:
        size = max(n, 256, 2 * len(table) if table is not None else 0)
        table = _DECAY[half_life] = 0.5 ** (np.arange(size, dtype=np.float32) / half_life)
    return table


def recency_weighted_means(vectors: np.ndarray, positions: np.ndarray, weights: np.ndarray, bounds: np.ndarray,
                           half_life: float = 10.0) -> list[np.ndarray | None]:
    """:func:`recency_weighted_mean` of many users at once, with the same float32 results.

    User ``u``'s history is ``positions[bounds[u]:bounds[u + 1]]`` (rows of
    ``vectors``, oldest first) with ``weights`` at the same places; ``bounds``
    holds ``n_users + 1`` offsets starting at 0. The weighted sums come from
    one sparse (users x items) product, which adds each user's rows in history
    order in float32 as the per-user sum does.
    """
    n_users = len(bounds) - 1
    out: list[np.ndarray | None] = [None] * n_users
    n = int(bounds[-1]) if n_users else 0
    if n == 0:
        return out
    weights = np.asarray(weights, dtype=np.float32)
    bounds = np.asarray(bounds, dtype=np.int64)
    table = _decay(int(np.diff(bounds).max()), half_life)
    if n_users < _SPARSE_FROM_USERS:
        edges = bounds.tolist()
        for u in range(n_users):
            a, b = edges[u], edges[u + 1]
            if a == b:
                continue
            w = weights[a:b] * table[b - a - 1::-1]
            if not (w > 0).any():
                continue
            v = (w[:, None] * vectors[positions[a:b]]).sum(axis=0)
            norm = float(np.sqrt(v.dot(v)))  # np.linalg.norm's computation
            if norm != 0.0 and math.isfinite(norm):
                out[u] = v / norm
        return out
    lengths = np.diff(bounds)
    back = np.repeat(bounds[1:] - 1, lengths) - np.arange(n, dtype=np.int64)  # 0 for each user's newest row
    w = weights * table[back]
    owner = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    users = np.flatnonzero(np.bincount(owner[w > 0], minlength=n_users))  # some positive signal
    if not len(users):
        return out
    sums = (csr_array((w, positions, bounds), shape=(n_users, len(vectors))) @ vectors)[users]
    norms = np.sqrt(np.array([v.dot(v) for v in sums], dtype=np.float32))  # np.linalg.norm's, row by row
    usable = np.flatnonzero((norms != 0.0) & np.isfinite(norms))
    for u, row in zip(users[usable].tolist(), sums[usable] / norms[usable, None]):
        out[u] = row
    return out

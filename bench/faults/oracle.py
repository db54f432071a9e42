"""The expected user state after a clean replay, written apart from ``stream/``.

The worker's rule (README, "The streaming core"; ``stream/core/state.py``) is
restated here from its specification so that a bug in the worker's rule, or in
how the worker feeds it, cannot hide by being compared with itself:

- events of a user are applied in the order of their offsets in the user's
  partition of ``events``, each at most once;
- ``history`` keeps the newest ``max_history`` events, oldest first, each
  ``[item_id, event_type, timestamp_ms, weight]`` with the weight rounded to 4
  places: click 1, like 2, purchase 4, skip -1, play ``seconds / 60`` clipped to
  [0.1, 3] (1 when the play time is unknown);
- ``counts`` counts applied events by type; ``last_offset`` is the offset of
  the last applied event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

BASE_WEIGHT = {"click": 1.0, "like": 2.0, "purchase": 4.0, "skip": -1.0}


def weight(event_type: str, value: float | None) -> float:
    if event_type == "play":
        return 1.0 if value is None else min(3.0, max(0.1, value / 60.0))
    return BASE_WEIGHT[event_type]


@dataclass
class Expected:
    """One user's expected state; ``applied`` is every event, not only the kept history."""

    history: list[list[Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    last_offset: int = -1

    @property
    def applied(self) -> int:
        return sum(self.counts.values())


def replay(records: Iterable[tuple[int, int, dict[str, Any]]], max_history: int) -> dict[str, Expected]:
    """``records``: ``(partition, offset, event dict)`` of the valid events, any order."""
    out: dict[str, Expected] = {}
    for _, offset, event in sorted(records, key=lambda r: (r[0], r[1])):
        state = out.setdefault(str(event["user_id"]), Expected())
        etype = event["event_type"]
        state.history.append([str(event["item_id"]), etype, int(event["timestamp_ms"]),
                              round(weight(etype, event.get("value")), 4)])
        state.history = state.history[-max_history:]
        state.counts[etype] = state.counts.get(etype, 0) + 1
        state.last_offset = offset
    return out


@dataclass
class StateCheck:
    """How the worker's published states compare with the oracle."""

    users: int = 0
    events: int = 0
    lost: int = 0  # events of the oracle missing from the user's counts
    applied_twice: int = 0  # events counted more often than the oracle has them
    users_missing: int = 0
    users_unexpected: int = 0
    users_wrong: int = 0  # history, counts or last offset differ
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.applied_twice or self.users_missing or self.users_unexpected or self.users_wrong)

    def figures(self) -> dict[str, int]:
        return {"users": self.users, "events_applied_expected": self.events, "lost": self.lost,
                "applied_twice": self.applied_twice, "users_missing": self.users_missing,
                "users_unexpected": self.users_unexpected, "users_wrong": self.users_wrong}


def compare(expected: dict[str, Expected], actual: dict[str, dict[str, Any]], max_examples: int = 5) -> StateCheck:
    """Compare the oracle with ``actual`` (user id to the worker's JSON state)."""
    check = StateCheck(users=len(expected), events=sum(e.applied for e in expected.values()))
    for user, want in expected.items():
        got = actual.get(user)
        if got is None:
            check.users_missing += 1
            check.lost += want.applied
            if len(check.examples) < max_examples:
                check.examples.append(f"{user}: no state (expected {want.applied} events)")
            continue
        counts = {k: int(v) for k, v in (got.get("counts") or {}).items()}
        for etype in set(counts) | set(want.counts):
            diff = counts.get(etype, 0) - want.counts.get(etype, 0)
            check.applied_twice += max(0, diff)
            check.lost += max(0, -diff)
        history = [[h[0], h[1], int(h[2]), round(float(h[3]), 4)] for h in got.get("history") or []]
        if history != want.history or counts != want.counts or got.get("last_offset") != want.last_offset:
            check.users_wrong += 1
            if len(check.examples) < max_examples:
                check.examples.append(
                    f"{user}: counts {counts} vs {want.counts}, last_offset {got.get('last_offset')} vs "
                    f"{want.last_offset}, history {len(history)} vs {len(want.history)} entries")
    check.users_unexpected = len(set(actual) - set(expected))
    return check


def latest_values(records: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The newest JSON value per key of a changelog (records in partition then offset order)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        key = r.key.decode("utf-8", errors="replace")
        if r.value is None:
            out.pop(key, None)
        else:
            out[key] = json.loads(r.value)
    return out

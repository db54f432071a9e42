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

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from models.feedback import EventType, is_positive
from stream.core.events import Event, parse_event
from stream.core.experiments import Experiment
from stream.core.recommendations import Recommendation, Source
from stream.core.records import Record
from stream.core.state import UserState, apply_event
from stream.core.trending import SharedTrending, TrendingCounter
from stream.errors import InvalidEvent
from stream.serving.model import POPULAR, ModelHolder, Serving, ServingModel

_POSITIVE = frozenset(t for t in EventType if is_positive(t))

# Reasons the worker adds to the schema's (stream.core.events.REASONS).
UNKNOWN_ITEM = "unknown_item"
KEY_MISMATCH = "key_mismatch"
MISSING_KEY = "missing_key"
NO_MODEL = "no_model"


@dataclass
class UserUpdate:
    """A user's new state, the last record that touched it and the recommendation to publish."""

    state: UserState
    record: Record
    event: Event
    recommendation: Recommendation | None = None


@dataclass
class BatchResult:
    dead_letters: list[tuple[Record, str, str]] = field(default_factory=list)  # record, reason, detail
    updates: dict[str, UserUpdate] = field(default_factory=dict)
    applied: int = 0
    duplicates: int = 0
    online_trials: int = 0
    online_hits: int = 0
    retrieval_seconds: float = 0.0
    model: ServingModel | None = None  # the served version the batch was applied under
    serving: Serving | None = None  # what it is recommended from: that version, or during an experiment the arms'
    experiment: Experiment | None = None  # the running experiment of the snapshot, if any
    # Online trials and hits of the experiment by (events partition, arm): [trials, hits].
    arm_counts: dict[tuple[int, str], list[int]] = field(default_factory=dict)

    @property
    def arm_trials(self) -> dict[str, int]:
        """Online trials by experiment arm, over the batch's partitions."""
        out: dict[str, int] = {}
        for (_, arm), (trials, _) in self.arm_counts.items():
            out[arm] = out.get(arm, 0) + trials
        return out

    @property
    def arm_hits(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, arm), (_, hits) in self.arm_counts.items():
            out[arm] = out.get(arm, 0) + hits
        return out

    def partition_counts(self) -> dict[int, tuple[dict[str, int], dict[str, int]]]:
        """Per events partition: (trials by arm, hits by arm)."""
        out: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
        for (partition, arm), (trials, hits) in self.arm_counts.items():
            t, h = out.setdefault(partition, ({}, {}))
            t[arm], h[arm] = trials, hits
        return out


class BatchProcessor:
    """Applies batches of event records to user state and builds recommendations."""

    def __init__(self, holder: ModelHolder, trending: TrendingCounter | SharedTrending, top_k: int = 10,
                 max_history: int = 200, rewrite_redelivered: bool = True) -> None:
        self.holder = holder
        self.rewrite_redelivered = rewrite_redelivered
        self.trending = trending
        self.top_k = top_k
        self.max_history = max_history

    def process(self, records: list[Record], load_state: Callable[[str, Record], UserState],
                now_ms: int | None = None) -> BatchResult:
        """Process one batch in order: :meth:`apply`, then :meth:`recommend_updates` for every
        touched user."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        result = self.apply(records, load_state, now_ms)
        self.recommend_updates(result, list(result.updates), now_ms)
        return result

    def apply(self, records: list[Record], load_state: Callable[[str, Record], UserState],
              now_ms: int | None = None, into: BatchResult | None = None) -> BatchResult:
        """Validate and apply one batch's records in order, without recommending yet.
        ``load_state(user_id, record)`` returns the stored state (``record`` is the user's first
        record of the batch: it names the partition). ``into``: the result of the batch's records
        before these (a batch applied in slices), continued with the same model snapshot."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if into is None:
            result = BatchResult()
            serving = result.serving = self.holder.serving  # one snapshot for the whole batch
            result.model = serving.default
            result.experiment = (serving.experiment if serving.experiment is not None
                                 and serving.experiment.running else None)
        else:
            result = into
        model, experiment = result.model, result.experiment
        catalogue = model.positions if model is not None else None
        updates = result.updates
        for record in records:
            try:
                event = parse_event(record.value if record.value is not None else b"", now_ms=now_ms)
            except InvalidEvent as e:
                result.dead_letters.append((record, e.reason, e.detail))
                continue
            user_id, item_id = event.user_id, event.item_id
            if not record.key:
                result.dead_letters.append((record, MISSING_KEY, "records must be keyed by user_id: without "
                                            "a key the producer spreads a user's events over partitions"))
                continue
            if record.key != user_id.encode():
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
                self.trending.add(item_id, event.timestamp_ms, event.weight, record.partition)
                if state.last_recs:
                    result.online_trials += 1
                    hit = item_id in state.last_recs
                    result.online_hits += hit
                    if experiment is not None:
                        arm = experiment.arm_of(user_id)
                        if state.model_version == arm.version:  # what the user held came from the arm
                            counts = result.arm_counts.setdefault((record.partition, arm.name), [0, 0])
                            counts[0] += 1
                            counts[1] += hit
            if update is None:
                updates[user_id] = UserUpdate(state, record, event)
            else:
                update.record, update.event = record, event
        return result

    def recommend_updates(self, result: BatchResult, users: Sequence[str], now_ms: int) -> None:
        """Build the recommendations of ``users`` (touched by ``result``'s batch) into their
        updates, each from the user's model in the batch's snapshot (its arm's during an
        experiment), and set their states' vector, version and last items."""
        serving = result.serving if result.serving is not None else Serving(result.model)
        if serving.default is None or not users:
            return
        started = time.perf_counter()
        groups: dict[str | None, list[str]] = {}
        models: dict[str | None, ServingModel] = {}
        for user in users:
            model, arm = serving.model_for(user)
            groups.setdefault(arm, []).append(user)
            models[arm] = model
        updates = result.updates
        for arm, members in groups.items():
            model = models[arm]
            states = [updates[u].state for u in members]
            recommendations, vectors = self.recommend(model, members, states, self.top_k, now_ms)
            for user, state, rec, vector in zip(members, states, recommendations, vectors):
                state.embedding = vector if vector is not None else state.embedding
                state.model_version = model.model_version
                state.last_recs = list(rec.item_ids)
                rec.arm = arm
                updates[user].recommendation = rec
        result.retrieval_seconds += time.perf_counter() - started

    def recommend(self, model: ServingModel, users: Sequence[str], states: Sequence[UserState], k: int,
                  now_ms: int, allowed: np.ndarray | None = None, exclude_items: Sequence[str] = (),
                  ) -> tuple[list[Recommendation], list[np.ndarray | None]]:
        """The recommendations of ``users`` (with their ``states``) from ``model``: the one builder of
        both the published records and the HTTP API's answers. Returns them with each user's
        vector (``None``: served trending items). The states are not changed.

        Query-time filters (the HTTP API's): ``allowed``, only these item positions (a category,
        :meth:`ServingModel.in_category`), and ``exclude_items``, never these ids; both inside retrieval.
        """
        histories = model.histories([s.history for s in states])
        vectors = model.vectors_of(histories)
        personal = [r for r, v in enumerate(vectors) if v is not None]
        found_positions: list[list[int]] = []
        found_scores: list[list[float]] = []
        extra = np.array([model.positions[i] for i in exclude_items if i in model.positions], dtype=np.int64)
        if personal:
            queries = np.stack([vectors[r] for r in personal])
            exclude = histories.known_positions(personal)
            if extra.size:
                exclude = [np.union1d(e, extra) for e in exclude]
            found_positions, found_scores = model.search_positions(queries, k, exclude, allowed)
        reasons = model.reasons(histories, personal, found_positions)
        item_ids = model.item_ids
        model_version, index_version = model.model_version, model.index_version
        ranked = iter(zip(found_positions, found_scores, reasons))
        out: list[Recommendation] = []
        for row, (user, state) in enumerate(zip(users, states)):
            source: Source
            if vectors[row] is not None:
                positions, scores, why = next(ranked)
                ids = [item_ids[p] for p in positions]
                source = "personal"
            else:
                if allowed is None and not exclude_items:
                    trending = self.trending.top(k, histories.consumed(row))
                else:
                    in_filter = None if allowed is None else set(allowed.tolist())
                    positions = model.positions
                    trending = self.trending.top(
                        k, histories.consumed(row) | set(exclude_items),
                        keep=None if in_filter is None else (lambda i: positions.get(i, -1) in in_filter))
                ids = [i for i, _ in trending]
                scores = [s for _, s in trending]
                why = [POPULAR] * len(ids)
                source = "trending"
            history = state.history
            out.append(Recommendation(user, ids, scores, why, source, model_version, index_version,
                                      history[-1][2] if history else None,
                                      state.last_offset if state.last_offset >= 0 else None, now_ms))
        return out, vectors

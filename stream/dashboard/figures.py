"""The overview's figures, computed from workers' Prometheus text exposition (``/metrics``).

Pure: text in, numbers out. A counter shown is the sum of its samples over the workers that
answered, exactly what their ``/metrics`` say; rates are differences between two reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]

EVENTS = "streamrec_worker_events_consumed_total"
APPLIED = "streamrec_worker_events_applied_total"
RECOMMENDATIONS = "streamrec_worker_recommendations_published_total"
REJECTED = "streamrec_worker_records_rejected_total"
LAG = "streamrec_worker_consumer_lag_records"
FRESHNESS = "streamrec_worker_freshness_seconds_bucket"
TRIALS = "streamrec_worker_online_trials_total"
HITS = "streamrec_worker_online_hits_total"
MODEL_INFO = "streamrec_worker_model_info"
INDEX_ITEMS = "streamrec_worker_index_items"
TABLE_KEYS = "streamrec_worker_table_keys"
COUNTERS = (EVENTS, APPLIED, RECOMMENDATIONS, TRIALS, HITS)


def parse_samples(text: str) -> Samples:
    """``{sample name: [(labels, value)]}`` of one exposition; raises ``ValueError`` when it is not one."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def total(samples: Samples, name: str) -> float:
    """The sum of every sample of ``name`` (0 when there is none)."""
    return sum(value for _, value in samples.get(name, ()))


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: ``q`` of cumulative ``(upper bound, count)`` buckets,
    interpolated linearly inside a bucket; ``None`` without observations."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # beyond the last finite bound: its bound, as Prometheus answers
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = upper, count
    return lower


def beyond_last_bound(q: float, buckets: list[tuple[float, float]]) -> bool:
    """Whether ``q`` falls past the last finite bucket: :func:`quantile` then answers that bound,
    a lower limit rather than an estimate."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0 or not math.isinf(buckets[-1][0]):
        return False
    finite = [count for upper, count in buckets if not math.isinf(upper)]
    return not finite or finite[-1] < q * buckets[-1][1]


def merged_buckets(per_worker: list[Samples], name: str) -> list[tuple[float, float]]:
    """A histogram's buckets summed over workers (each bound's cumulative counts added)."""
    sums: dict[float, float] = {}
    for samples in per_worker:
        for labels, value in samples.get(name, ()):
            bound = float(labels["le"])
            sums[bound] = sums.get(bound, 0.0) + value
    return sorted(sums.items())


@dataclass
class Overview:
    """What the overview shows, over the workers that answered."""

    counters: dict[str, float]
    dead_letters: dict[str, float]  # "topic/reason" -> count, only those above 0
    lag: dict[str, float]  # events partition -> records behind
    freshness_p50_s: float | None
    freshness_p99_s: float | None
    hit_rate: float | None  # hits / trials since the workers started
    freshness_p99_beyond: bool = False  # p99 past the last bucket: freshness_p99_s is a lower limit
    versions: list[dict[str, str]] = field(default_factory=list)  # one per worker: model and index versions

    def to_dict(self) -> dict[str, Any]:
        return {"counters": self.counters, "dead_letters": self.dead_letters, "lag": self.lag,
                "lag_total": sum(self.lag.values()), "freshness_p50_s": self.freshness_p50_s,
                "freshness_p99_s": self.freshness_p99_s, "freshness_p99_beyond": self.freshness_p99_beyond,
                "hit_rate": self.hit_rate}


def overview(per_worker: list[Samples]) -> Overview:
    """The overview of the workers' parsed expositions."""
    counters = {name: sum(total(s, name) for s in per_worker) for name in COUNTERS}
    dead: dict[str, float] = {}
    lag: dict[str, float] = {}
    for samples in per_worker:
        for labels, value in samples.get(REJECTED, ()):
            if value > 0:
                key = f"{labels.get('topic', '?')}/{labels.get('reason', '?')}"
                dead[key] = dead.get(key, 0.0) + value
        for labels, value in samples.get(LAG, ()):
            lag[labels.get("partition", "?")] = value
    buckets = merged_buckets(per_worker, FRESHNESS)
    trials = counters[TRIALS]
    return Overview(counters, dict(sorted(dead.items())), dict(sorted(lag.items(), key=lambda kv: _number(kv[0]))),
                    quantile(0.5, buckets), quantile(0.99, buckets),
                    counters[HITS] / trials if trials else None, beyond_last_bound(0.99, buckets))


def served_versions(samples: Samples) -> dict[str, str | None]:
    """The model and index versions a worker's ``streamrec_worker_model_info`` marks as served."""
    for labels, value in samples.get(MODEL_INFO, ()):
        if value == 1:
            return {"model_version": labels.get("model_version"), "index_version": labels.get("index_version")}
    return {"model_version": None, "index_version": None}


def _number(text: str) -> float:
    return float(text) if text.isdigit() else math.inf


@dataclass
class Point:
    """One point of the overview's charts: rates over the interval that ends at ``t``."""

    t: float
    events_per_s: float
    recommendations_per_s: float
    hit_rate: float | None  # hits / trials of the interval; None without trials

    def to_list(self) -> list[Any]:
        return [round(self.t, 3), round(self.events_per_s, 3), round(self.recommendations_per_s, 3),
                None if self.hit_rate is None else round(self.hit_rate, 6)]


def interval(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], seconds: float,
             t: float) -> Point:
    """Rates between two reads of each worker's counters (``{worker: {counter: value}}``), over the
    workers present in both; a counter that went down (a restarted worker) counts from 0."""
    deltas = dict.fromkeys(COUNTERS, 0.0)
    for worker in before.keys() & after.keys():
        for name in COUNTERS:
            old, new = before[worker].get(name, 0.0), after[worker].get(name, 0.0)
            deltas[name] += new - old if new >= old else new
    seconds = max(seconds, 1e-9)
    trials = deltas[TRIALS]
    return Point(t, deltas[EVENTS] / seconds, deltas[RECOMMENDATIONS] / seconds,
                 deltas[HITS] / trials if trials else None)

"""The worker's Prometheus metrics, declared in one place.

Names follow Prometheus conventions: ``streamrec_<subsystem>_<name>_<unit>``,
base units, ``_total`` only on counters, bounded label values (reasons,
partitions, versions; never user or item ids).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REASON = "reason"
TOPIC = "topic"
EVENTS_LABEL = "events"
STATE_LABEL = "user-state"  # a stored state read back that is not one
OUTPUT_LABEL = "output"  # an output refused before sending (over max.message.bytes)
PARTITION = "partition"
RESULT = "result"
MODEL_VERSION = "model_version"
INDEX_VERSION = "index_version"

# Freshness targets are tens of milliseconds; the buckets resolve 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_CONSUMED = Counter(
    "streamrec_worker_events_consumed_total", "Event records read from the events topic.", registry=REGISTRY)
EVENTS_APPLIED = Counter(
    "streamrec_worker_events_applied_total", "Valid events applied to user state.", registry=REGISTRY)
EVENTS_DUPLICATE = Counter(
    "streamrec_worker_events_duplicate_total",
    "Redelivered events recognised by offset and not applied again.", registry=REGISTRY)
EVENTS_REFETCHED = Counter(
    "streamrec_worker_events_refetched_total",
    "Events the stream skipped after a (re)start, read again from Kafka and processed in order.",
    registry=REGISTRY)
EVENTS_REJECTED = Counter(
    "streamrec_worker_events_rejected_total", "Invalid events sent to the dead-letter topic, by reason.",
    [REASON], registry=REGISTRY)
HTTP_EVENTS = Counter(
    "streamrec_worker_http_events_total",
    "Events posted to POST /events, by result (accepted: written to the events topic with acks=all).",
    ["result"], registry=REGISTRY)
RECOMMENDATIONS_PUBLISHED = Counter(
    "streamrec_worker_recommendations_published_total", "Recommendation records published.", registry=REGISTRY)
FRESHNESS = Histogram(
    "streamrec_worker_freshness_seconds",
    "Time from an event's timestamp to the recommendation it triggered being published.",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
INGEST_LATENCY = Histogram(
    "streamrec_worker_ingest_latency_seconds",
    "Time from an event's append to Kafka (record timestamp) to its recommendation being published.",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
RETRIEVAL_LATENCY = Histogram(
    "streamrec_worker_retrieval_seconds", "Time of one batched user-tower + index search.",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
BATCH_SIZE = Histogram(
    "streamrec_worker_batch_events", "Events per micro-batch.", buckets=BATCH_BUCKETS, registry=REGISTRY)
TABLE_KEYS = Gauge(
    "streamrec_worker_table_keys", "Users held in this worker's user-state table.", registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "streamrec_worker_consumer_lag_records", "Records not yet consumed, by events-topic partition.",
    [PARTITION], registry=REGISTRY)
ONLINE_TRIALS = Counter(
    "streamrec_worker_online_trials_total",
    "Positive events of users who held a recommendation just before them.", registry=REGISTRY)
ONLINE_HITS = Counter(
    "streamrec_worker_online_hits_total",
    "Of those, events whose item was in that recommendation (online hit rate = hits / trials).",
    registry=REGISTRY)
RECORDS_REJECTED = Counter(
    "streamrec_worker_records_rejected_total",
    "Records of any consumed topic refused and sent to the dead-letter topic, by topic and reason "
    "(topic: events, items, model-updates, trending, user-state; outputs refused before sending: output).",
    [TOPIC, REASON], registry=REGISTRY)
MODEL_INFO = Gauge(
    "streamrec_worker_model_info", "1 for the model and index versions being served.",
    [MODEL_VERSION, INDEX_VERSION], registry=REGISTRY)
INDEX_ITEMS = Gauge("streamrec_worker_index_items", "Items in the served index.", registry=REGISTRY)
MODEL_SWAPS = Counter(
    "streamrec_worker_model_swaps_total", "Model and index version changes, by result.", [RESULT],
    registry=REGISTRY)
EXPERIMENT_TRIALS = Counter(
    "streamrec_worker_experiment_trials_total",
    "Online trials of a running experiment by arm: positive events of users who held that arm's "
    "recommendation just before them.", ["experiment", "arm"], registry=REGISTRY)
EXPERIMENT_HITS = Counter(
    "streamrec_worker_experiment_hits_total",
    "Of those, events whose item was in the arm's recommendation (the arm's online hit rate = hits / trials).",
    ["experiment", "arm"], registry=REGISTRY)
EXPERIMENT_CHANGES = Counter(
    "streamrec_worker_experiment_changes_total",
    "Experiments started, stopped, or refused (an arm's version did not load), as applied by this worker.",
    [RESULT], registry=REGISTRY)


def declare_label_values() -> None:
    """Create the known label values at 0, so rate() sees the first increment of each."""
    from stream.core.events import REASONS
    from stream.serving.processor import KEY_MISMATCH, MISSING_KEY, NO_MODEL, UNKNOWN_ITEM

    for reason in (*REASONS, UNKNOWN_ITEM, KEY_MISMATCH, MISSING_KEY, NO_MODEL):
        EVENTS_REJECTED.labels(reason)
        RECORDS_REJECTED.labels(EVENTS_LABEL, reason)
    decode = ("too_large", "bad_encoding", "bad_json", "bad_value", "not_an_object", "missing_field", "wrong_type")
    for topic, reasons in (("items", (*decode, "bad_id", "bad_key")), ("model-updates", (*decode, "bad_version")),
                           (STATE_LABEL, ("bad_state", "bad_counts")), (OUTPUT_LABEL, ("output_too_large",))):
        for reason in reasons:
            RECORDS_REJECTED.labels(topic, reason)
    for result in ("initial", "ok", "rejected"):
        MODEL_SWAPS.labels(result)
    for result in ("started", "stopped", "rejected"):
        EXPERIMENT_CHANGES.labels(result)
    for result in ("accepted", "rejected", "not_written"):
        HTTP_EVENTS.labels(result)

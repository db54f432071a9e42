"""The periodic trainer's Prometheus metrics and its small HTTP endpoint (``/metrics``, ``/healthz``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.exposition import metrics_response

if TYPE_CHECKING:
    from stream.trainer.snapshot import SnapshotReport

RESULT = "result"
REASON = "reason"

REGISTRY = CollectorRegistry(auto_describe=True)
RUNS = Counter("streamrec_trainer_runs_total", "Trainer runs, by result (published, rejected, skipped, failed).",
               [RESULT], registry=REGISTRY)
RUN_SECONDS = Histogram("streamrec_trainer_run_seconds", "Duration of one trainer run.",
                        buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600), registry=REGISTRY)
for _result in ("published", "rejected", "skipped", "failed"):
    RUNS.labels(_result)  # known label values exist at 0, so rate() sees their first increment
LAST_RUN = Gauge("streamrec_trainer_last_run_timestamp_seconds", "When the last run ended (Unix time).",
                 registry=REGISTRY)
LAST_PUBLISH = Gauge("streamrec_trainer_last_publish_timestamp_seconds",
                     "When a version was last published (Unix time).", registry=REGISTRY)
MODEL_NDCG_10 = Gauge("streamrec_trainer_model_ndcg_10",
                      "NDCG@10 of the last published version on its held-out tail.", registry=REGISTRY)
MODEL_HR_10 = Gauge("streamrec_trainer_model_hr_10",
                    "HR@10 of the last published version on its held-out tail.", registry=REGISTRY)

# The last run's training window (stream.trainer.snapshot): what it read, how long it took, its time span.
WINDOW_EVENTS, WINDOW_OFFSETS, WINDOW_FIRST, WINDOW_LAST, SNAPSHOT_SECONDS = (
    Gauge(name, doc, registry=REGISTRY) for name, doc in (
        ("streamrec_trainer_window_events", "Valid events in the last run's training window."),
        ("streamrec_trainer_window_offsets",
         "Offsets the last run's window spanned over all partitions (records, invalid ones included)."),
        ("streamrec_trainer_window_first_event_timestamp_seconds",
         "Timestamp of the oldest event in the last run's window (Unix time)."),
        ("streamrec_trainer_window_last_event_timestamp_seconds",
         "Timestamp of the newest event in the last run's window (Unix time)."),
        ("streamrec_trainer_snapshot_read_seconds", "Seconds the last run took to read its training window."),
    ))
INVALID_EVENTS = Counter("streamrec_trainer_invalid_events_total",
                         "Records of the training windows skipped as invalid events, by reason.", [REASON],
                         registry=REGISTRY)

BASELINE_NDCG_10 = Gauge("streamrec_trainer_best_baseline_ndcg_10",
                         "NDCG@10 of the best baseline on the last run's held-out tail (automatic choice).",
                         registry=REGISTRY)


def record_run(result: str, seconds: float, metrics: dict[str, float] | None = None,
               baseline_metrics: dict[str, float] | None = None, snapshot: SnapshotReport | None = None) -> None:
    """Account for one finished run; ``metrics`` (ndcg@10, hr@10) when a version was published,
    ``baseline_metrics`` those of the best baseline the run compared it with, ``snapshot`` its window."""
    RUNS.labels(result).inc()
    if snapshot is not None:
        record_window(snapshot)
    if baseline_metrics:
        BASELINE_NDCG_10.set(baseline_metrics.get("ndcg@10", float("nan")))
    RUN_SECONDS.observe(seconds)
    LAST_RUN.set(time.time())
    if result == "published" and metrics:
        LAST_PUBLISH.set(time.time())
        MODEL_NDCG_10.set(metrics.get("ndcg@10", float("nan")))
        MODEL_HR_10.set(metrics.get("hr@10", float("nan")))


def record_window(snapshot: SnapshotReport) -> None:
    """Export what a run's snapshot read."""
    WINDOW_EVENTS.set(snapshot.events)
    WINDOW_OFFSETS.set(snapshot.offsets)
    SNAPSHOT_SECONDS.set(snapshot.read_seconds)
    if snapshot.first_ms is not None and snapshot.last_ms is not None:
        WINDOW_FIRST.set(snapshot.first_ms / 1000)
        WINDOW_LAST.set(snapshot.last_ms / 1000)
    for reason, count in snapshot.invalid_reasons.items():
        INVALID_EVENTS.labels(reason).inc(count)


async def start_http(host: str, port: int) -> web.AppRunner:
    """Serve ``/metrics`` and ``/healthz`` until the returned runner is cleaned up."""

    async def metrics_view(request: web.Request) -> web.Response:
        return metrics_response(REGISTRY)

    async def health_view(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", health_view)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

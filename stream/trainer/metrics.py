"""The periodic trainer's Prometheus metrics and its small HTTP endpoint (``/metrics``, ``/healthz``)."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.exposition import metrics_response

RESULT = "result"

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

BASELINE_NDCG_10 = Gauge("streamrec_trainer_best_baseline_ndcg_10",
                         "NDCG@10 of the best baseline on the last run's held-out tail (automatic choice).",
                         registry=REGISTRY)


def record_run(result: str, seconds: float, metrics: dict[str, float] | None = None,
               baseline_metrics: dict[str, float] | None = None) -> None:
    """Account for one finished run; ``metrics`` (ndcg@10, hr@10) when a version was published,
    ``baseline_metrics`` those of the best baseline the run compared it with."""
    RUNS.labels(result).inc()
    if baseline_metrics:
        BASELINE_NDCG_10.set(baseline_metrics.get("ndcg@10", float("nan")))
    RUN_SECONDS.observe(seconds)
    LAST_RUN.set(time.time())
    if result == "published" and metrics:
        LAST_PUBLISH.set(time.time())
        MODEL_NDCG_10.set(metrics.get("ndcg@10", float("nan")))
        MODEL_HR_10.set(metrics.get("hr@10", float("nan")))


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

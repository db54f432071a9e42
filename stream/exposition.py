"""The Prometheus ``/metrics`` answer, one for every process that serves one (worker, trainer)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def metrics_response(registry: CollectorRegistry) -> web.Response:
    """The text exposition of ``registry`` as an HTTP response (Faust's views answer aiohttp ones)."""
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

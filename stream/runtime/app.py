"""The Faust application, configured from :class:`~stream.settings.Settings`.

``create_app`` is the one place where settings become Faust options; the module
level ``app`` is what ``streamrec worker`` (Faust's own CLI) runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust

from stream.kafka.config import sasl_password, ssl_context
from stream.runtime import faust_fixes
from stream.settings import Settings, get_settings

if TYPE_CHECKING:
    from stream.runtime.worker import Worker


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """``broker`` and ``broker_credentials`` for :class:`faust.App`."""
    context = ssl_context(settings)
    credentials: faust.types.auth.CredentialsT | None = None
    if settings.uses_sasl:
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=sasl_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return {
        "broker": [f"kafka://{server}" for server in settings.kafka_bootstrap],
        "broker_credentials": credentials,
    }


def create_app(settings: Settings | None = None) -> faust.App:
    """A Faust app bound to the configured Kafka cluster, RocksDB store and web port."""
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    faust_fixes.apply()
    return faust.App(
        settings.app_id,
        **faust_broker_options(settings),
        broker_client_id=settings.kafka_client_id,
        store="rocksdb://",
        datadir=str(settings.data_dir / "faust"),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_bind or settings.web_host,
        autodiscover=False,
        version=1,
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # The worker's micro-batch is one fetch (stream.runtime.batch_feed): this bounds its size.
        broker_max_poll_records=settings.batch_max_events,
        broker_session_timeout=settings.group_session_timeout_s,
        broker_heartbeat_interval=settings.group_heartbeat_interval_s,
        web_in_thread=False,
    )


def create_worker_app(settings: Settings | None = None) -> tuple[faust.App, "Worker"]:
    """The app with the worker's agent, table, feeds and HTTP views registered."""
    from stream.runtime.web import register_views
    from stream.runtime.worker import Worker

    settings = settings or get_settings()
    app = create_app(settings)
    worker = Worker(app, settings)
    register_views(app, worker)
    return app, worker


app, worker = create_worker_app()

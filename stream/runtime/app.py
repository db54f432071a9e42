"""The Faust application, configured from :class:`~stream.settings.Settings`.

``create_app`` is the one place where settings become Faust options; the module
level ``app`` is what Faust's CLI runs and what the project's commands are
registered on. Importing this module only constructs that app: the worker
(agent, table, feeds, views), the commit fixes, the version check and the
thread limits are :func:`prepare_worker`'s, which ``streamrec worker`` calls
before Faust's CLI starts, so ``streamrec settings`` pays for none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust

from stream.kafka.config import sasl_password, ssl_context
from stream.runtime.web import api_middlewares
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
        # Faust's /table views answer any key of any table (a user's history and embedding), its
        # /router views the cluster's layout. @app.table_route needs neither: it asks the
        # partition assignor (Router.key_store), not the /router views, whatever their docs say.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_application_options={"middlewares": api_middlewares(settings)},
        autodiscover=False,
        version=1,
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_acks=-1,
        producer_max_request_size=settings.topic_max_message_bytes,
        consumer_auto_offset_reset="earliest",
        # The worker's micro-batch is one fetch (stream.runtime.batch_feed): this bounds its size.
        broker_max_poll_records=settings.batch_max_events,
        broker_session_timeout=settings.group_session_timeout_s,
        broker_heartbeat_interval=settings.group_heartbeat_interval_s,
        web_in_thread=False,
    )


def prepare_worker(faust_app: faust.App | None = None, settings: Settings | None = None) -> "Worker":
    """Make ``faust_app`` (default: the module's ``app``) a worker: what ``streamrec worker`` does
    before Faust's CLI runs it.

    Refuses other Faust, mode and aiokafka releases than the pinned ones, or an install whose
    private names differ from :mod:`stream.runtime.private` (raises
    :class:`~stream.runtime.private.UnsupportedRuntime`, a ``ConfigError``); then applies the
    commit and fetch-wait fixes, limits the numeric libraries to one thread per pool, creates the data folder
    (Faust creates only the folders inside it) and registers the worker's agent, table, feeds,
    timers and HTTP views (:func:`register_worker`). Call it once per app.
    """
    from stream.runtime import faust_fixes, private
    from stream.runtime.worker import limit_worker_thread_pools

    settings = settings or get_settings()
    private.require_supported_runtime()  # before the fixes replace anything it checks
    faust_fixes.apply(fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms)
    limit_worker_thread_pools()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return register_worker(faust_app, settings)


def register_worker(faust_app: faust.App | None = None, settings: Settings | None = None) -> "Worker":
    """Register the worker's agent, table, feeds, timers and HTTP views on ``faust_app`` (default:
    the module's ``app``), and nothing else: what Faust's own commands that list or reset them
    (``agents``, ``tables``, ``reset``, ``send``) need. Call it once per app."""
    from stream.runtime.web import register_views
    from stream.runtime.worker import Worker

    faust_app = faust_app if faust_app is not None else app
    worker = Worker(faust_app, settings or get_settings())
    register_views(faust_app, worker)
    return worker


app = create_app()

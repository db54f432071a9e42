"""The Faust application, configured from :class:`~stream.settings.Settings`.

``create_app`` is the one place where settings become Faust options; the module
level ``app`` is what ``streamrec worker`` (Faust's own CLI) runs.
"""

from __future__ import annotations

import faust

from stream.kafka_config import faust_broker_options
from stream.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> faust.App:
    """A Faust app bound to the configured Kafka cluster, RocksDB store and web port."""
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
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
        web_bind=settings.web_host,
        autodiscover=False,
        version=1,
    )


app = create_app()

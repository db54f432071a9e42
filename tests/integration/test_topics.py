"""The project creates its own topics on the real broker (auto-creation is off there)."""

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from stream.core.topics import ITEMS, project_topics
from stream.errors import TopicError
from stream.kafka.admin import admin_client, ensure_topics
from stream.settings import Settings

pytestmark = pytest.mark.kafka


def test_topics_created_with_partitions_and_configs(settings, topics):
    names = [t.name for t in project_topics(settings)]
    assert topics == {n: "created" for n in names}
    assert ensure_topics(settings) == {n: "exists" for n in names}  # idempotent
    with admin_client(settings) as admin:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic(ITEMS))])
        kept = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic("model-updates"))])
    assert described == {n: (1 if n.endswith(("model-updates", "trending")) else 4) for n in names}
    assert "compact" in str(configs)
    kept_configs = kept["topic"][settings.topic("model-updates")]
    assert kept_configs["retention.ms"]["value"] == "-1"  # announcements and experiments kept for ever


def test_partition_mismatch_is_refused(settings, topics):
    other = Settings(**{**settings.model_dump(), "topic_partitions": 6})
    with pytest.raises(TopicError, match="has 4 partitions but 6"):
        ensure_topics(other)


def test_broker_does_not_auto_create_topics(settings):
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    producer = KafkaProducer(bootstrap_servers=list(settings.kafka_bootstrap), max_block_ms=1500)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(settings.topic("never-declared"), b"x").get(timeout=5)
    finally:
        producer.close(timeout=5)

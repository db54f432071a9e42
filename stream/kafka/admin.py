"""The project's topics: declared in one place, created by the project itself.

The broker's topic auto-creation stays off, so a typo in a topic name fails
loudly instead of creating an empty topic with the wrong partition count.
"""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.core.topics import TopicSpec, project_topics
from stream.errors import TopicError
from stream.kafka.config import kafka_python_options
from stream.settings import Settings

log = logging.getLogger(__name__)


def admin_client(settings: Settings) -> KafkaAdminClient:
    """A kafka-python admin client for the configured cluster."""
    return KafkaAdminClient(**kafka_python_options(settings), request_timeout_ms=30_000)


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> dict[str, str]:
    """Create the missing topics; check the partition counts of those that exist.

    Returns ``{topic: "created" | "exists"}``. Raises :class:`TopicError` when a
    topic exists with a different partition count: keyed state depends on it,
    and changing it silently would move users to other partitions.
    """
    specs = project_topics(settings) if specs is None else specs
    result: dict[str, str] = {}
    with admin_client(settings) as admin:
        existing = _partition_counts(admin, [s.name for s in specs])
        missing = [s for s in specs if s.name not in existing]
        if missing:
            request = {
                s.name: {"num_partitions": s.partitions, "replication_factor": s.replication, "configs": s.config}
                for s in missing
            }
            try:
                admin.create_topics(request, timeout_ms=30_000, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: checked below
            except KafkaError as e:
                raise TopicError(f"could not create topics {sorted(request)}: {e}") from e
            existing = _partition_counts(admin, [s.name for s in specs])
            for s in missing:
                log.info("topic created name=%s partitions=%d", s.name, s.partitions)
        for s in specs:
            have = existing.get(s.name)
            if have is None:
                raise TopicError(f"topic {s.name} is missing after creation")
            if have != s.partitions:
                raise TopicError(
                    f"topic {s.name} has {have} partitions but {s.partitions} are configured "
                    "(STREAMREC_TOPIC_PARTITIONS); repartitioning keyed topics moves users' state, "
                    "so streamrec refuses to start: use a new topic prefix or migrate explicitly"
                )
            result[s.name] = "created" if s in missing else "exists"
    return result


def delete_topics(settings: Settings, names: list[str]) -> None:
    """Delete topics that exist; unknown names are ignored."""
    with admin_client(settings) as admin:
        present = [n for n in names if n in set(admin.list_topics())]
        if present:
            admin.delete_topics(present, timeout_ms=30_000)


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    wanted = set(names)
    return {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics()
        if t["name"] in wanted and t.get("error_code", 0) == 0
    }

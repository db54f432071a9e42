"""The project's topics: their names, partition counts and configs, declared in one place.

``stream.kafka.admin`` creates them; every other room refers to them by these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.settings import Settings

EVENTS = "events"
ITEMS = "items"
RECOMMENDATIONS = "recommendations"
DEAD_LETTER = "dead-letter"
MODEL_UPDATES = "model-updates"
TRENDING = "trending"
# The worker's Faust tables; Faust names each one's changelog topic (changelog_topic).
USER_STATE_TABLE = "user-state"
EXPERIMENT_COUNTS_TABLE = "experiment-counts"

WEEK_MS = 7 * 24 * 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    """A topic the project needs: full name, partitions, replication and topic configs."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


def changelog_topic(settings: Settings, table: str) -> str:
    """The changelog topic Faust gives the worker's ``table`` (``<app id>-<table>-changelog``)."""
    return f"{settings.app_id}-{table}-changelog"


def project_topics(settings: Settings) -> list[TopicSpec]:
    """The topics streamrec uses, named with ``settings.topic_prefix``.

    ``events`` and ``recommendations`` are keyed by user id and share a partition
    count so that a user's events, state and recommendations live on the same
    partition number. ``items`` is compacted (the latest record per item id is
    the catalogue). ``model-updates`` has one partition: announcements are
    totally ordered; it is kept for ever (a few records per trained version), since a
    starting worker walks it to find the version and experiment in force. ``trending``
    (one partition, compacted) holds each events partition's latest trending counts.
    """
    p, r = settings.topic_partitions, settings.topic_replication
    size = {"max.message.bytes": str(settings.topic_max_message_bytes)}  # explicit: outputs are bounded by it
    return [
        TopicSpec(settings.topic(EVENTS), p, r, {"retention.ms": str(WEEK_MS), **size}),
        TopicSpec(settings.topic(ITEMS), p, r, {"cleanup.policy": "compact", **size}),
        TopicSpec(settings.topic(RECOMMENDATIONS), p, r, {"retention.ms": str(WEEK_MS), **size}),
        TopicSpec(settings.topic(DEAD_LETTER), p, r, {"retention.ms": str(4 * WEEK_MS), **size}),
        TopicSpec(settings.topic(MODEL_UPDATES), 1, r, {"cleanup.policy": "delete", "retention.ms": "-1", **size}),
        TopicSpec(settings.topic(TRENDING), 1, r, {"cleanup.policy": "compact", **size}),
    ]

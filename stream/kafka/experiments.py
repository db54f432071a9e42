"""Experiments on Kafka: their records on ``model-updates``, their counts read back from the
workers' counts table, and the results over all workers.

Nothing here needs a worker's HTTP port: ``streamrec experiment status`` and every worker's
``GET /experiments`` read the same two topics, so the answer is the same whichever asks. The
counts are each events partition's latest record on the counts table's changelog (compacted,
one key per experiment, written in the events' transaction under ``exactly_once``), so the
sums are over every partition whichever worker owns it now, and are behind the workers by at
most a commit interval.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from kafka import KafkaProducer

from stream.core.announcements import ModelAnnouncement
from stream.core.experiments import (Experiment, InvalidExperiment, compare, counts_key, decode_counts,
                                     experiment_record, parse_model_update, sum_counts)
from stream.core.topics import EXPERIMENT_COUNTS_TABLE, MODEL_UPDATES, changelog_topic
from stream.errors import InvalidRecord
from stream.kafka.config import kafka_python_options
from stream.kafka.reader import read_range
from stream.settings import Settings

log = logging.getLogger(__name__)

Update = ModelAnnouncement | Experiment


async def read_model_updates(settings: Settings) -> list[Update]:
    """Every valid record of ``model-updates``, oldest first (invalid ones are skipped: the
    workers dead-letter them)."""
    out: list[Update] = []
    try:
        records = await read_range(settings, settings.topic(MODEL_UPDATES))
    except LookupError:
        return out
    for record in records:
        try:
            out.append(parse_model_update(record.value))
        except InvalidRecord:
            continue
    return out


def latest_experiments(updates: Iterable[Update]) -> dict[str, Experiment]:
    """Each experiment as last recorded, by name, in the order they were first started."""
    out: dict[str, Experiment] = {}
    for update in updates:
        if isinstance(update, Experiment):
            out[update.name] = update
    return out


def in_force(updates: Sequence[Update]) -> Experiment | None:
    """The experiment the workers serve: the last experiment record, if it is a running one."""
    last = next((u for u in reversed(updates) if isinstance(u, Experiment)), None)
    return last if last is not None and last.running else None


async def read_counts(settings: Settings) -> dict[bytes, dict[int, dict[str, tuple[int, int]]]]:
    """Every experiment's counts by events partition (counts key -> partition -> arm -> (trials, hits))."""
    latest: dict[tuple[bytes, int], bytes | None] = {}
    try:
        records = await read_range(settings, changelog_topic(settings, EXPERIMENT_COUNTS_TABLE))
    except LookupError:  # no worker has run yet
        return {}
    for record in records:
        if record.key is not None:
            latest[(bytes(record.key), record.partition)] = record.value
    out: dict[bytes, dict[int, dict[str, tuple[int, int]]]] = {}
    for (key, partition), value in latest.items():
        if value is None:
            continue
        try:
            out.setdefault(key, {})[partition] = decode_counts(value)
        except InvalidExperiment as e:  # the changelog is writable by any client
            log.warning("experiment counts unreadable key=%r partition=%d reason=%s", key[:80], partition, e.reason)
    return out


def results(experiment: Experiment, counts: dict[bytes, dict[int, dict[str, tuple[int, int]]]]) -> dict[str, Any]:
    """``experiment``'s definition and per-arm results over every partition (:func:`compare`)."""
    per_partition = counts.get(counts_key(experiment), {})
    out = compare(experiment, sum_counts(per_partition.values()))
    return out | {"started_ms": experiment.started_ms, "stopped_ms": experiment.stopped_ms,
                  "partitions_counted": sorted(per_partition)}


async def all_results(settings: Settings) -> list[dict[str, Any]]:
    """Every experiment recorded on ``model-updates`` with its results, oldest first."""
    experiments = latest_experiments(await read_model_updates(settings))
    counts = await read_counts(settings) if experiments else {}
    return [results(e, counts) for e in experiments.values()]


def publish_experiment(settings: Settings, experiment: Experiment) -> None:
    """Write ``experiment``'s record to ``model-updates`` (acknowledged by all replicas): a start, or
    with ``stopped_ms`` a stop (:func:`stop`)."""
    key, value = experiment_record(experiment)
    producer = KafkaProducer(**kafka_python_options(settings), acks="all", allow_auto_create_topics=False)
    try:
        producer.send(settings.topic(MODEL_UPDATES), key=key, value=value).get(timeout=30)
    finally:
        producer.close(timeout=10)


def stop(experiment: Experiment, promote: str | None = None, now_ms: int | None = None) -> Experiment:
    """``experiment`` stopped now; ``promote``: the arm whose version serves everyone from then on (the
    stop record then also announces that version: :func:`stream.core.experiments.promotion`)."""
    if promote is not None:
        experiment.arm(promote)  # KeyError: not an arm of it
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return dataclasses.replace(experiment, stopped_ms=now_ms, promoted=promote)

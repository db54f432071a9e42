"""Running a real ``streamrec worker`` process in tests, and reading what it publishes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from stream.demo.local_worker import LocalWorker, settings_env  # noqa: F401  (re-exported for tests)
from stream.kafka.reader import read_range
from stream.settings import Settings


class WorkerProcess(LocalWorker):
    """A ``streamrec worker`` subprocess for tests (see :class:`stream.demo.local_worker.LocalWorker`)."""


def start_catalogue_worker(kafka_bootstrap: str, root: Path, name: str, partitions: int,
                           items: Sequence[dict[str, Any]], **overrides: Any) -> tuple[Settings, WorkerProcess]:
    """Topics of a namespace of their own (prefix ``name-<random>.``), ``items`` published, and a
    running worker over them (``top_k`` 5 unless overridden)."""
    from stream.kafka.admin import ensure_topics
    from stream.kafka.producer import publish_catalog
    from tests.helpers import free_port

    prefix = f"{name}-{uuid.uuid4().hex[:10]}."
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, topic_partitions=partitions,
                        data_dir=root / "state", artifacts_dir=root / "artifacts", web_port=free_port(),
                        app_id=f"streamrec-{prefix.rstrip('.')}", **({"top_k": 5} | overrides))
    ensure_topics(settings)
    publish_catalog(settings, items)
    return settings, WorkerProcess(settings, root / "worker.log").start()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.3, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; raise ``TimeoutError`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def topic_json(settings: Settings, topic: str) -> list[tuple[bytes | None, Any]]:
    """Every record of a topic as (key, decoded JSON value)."""
    return [(r.key, json.loads(r.value)) for r in asyncio.run(read_range(settings, settings.topic(topic)))
            if r.value is not None]


def recommendations_for(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    """Every recommendation published for ``user_id``, oldest first."""
    return [v for k, v in topic_json(settings, "recommendations") if k == user_id.encode()]


def schema_violations(topic: str, values: list[Any]) -> list[str]:
    """What in ``values`` (decoded records of one of the project's topics) breaks the topic's JSON
    Schema in docs/schemas (the files subscribers in other languages read)."""
    import jsonschema

    from stream.core.schemas import DEFAULT_FOLDER

    schema = json.loads((DEFAULT_FOLDER / f"{topic}.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{topic}: {error.message} in {str(value)[:200]}" for value in values
            for error in validator.iter_errors(value)]

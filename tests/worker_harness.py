"""Running a real ``streamrec worker`` process in tests, and reading what it publishes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

from stream.demo.local_worker import LocalWorker, settings_env  # noqa: F401  (re-exported for tests)
from stream.kafka.reader import read_range
from stream.settings import Settings


class WorkerProcess(LocalWorker):
    """A ``streamrec worker`` subprocess for tests (see :class:`stream.demo.local_worker.LocalWorker`)."""


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

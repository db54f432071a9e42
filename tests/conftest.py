"""Shared fixtures: a real Kafka broker for the session and per-test topic names.

The broker is the one named by ``STREAMREC_KAFKA_BOOTSTRAP`` when set (``make
test`` starts one and sets it), else a private one started here with
deploy/kafka/kafka.sh on free ports and stopped at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import DATA_DIR, KAFKA_SH, free_port


@dataclass(frozen=True)
class Broker:
    """The session's broker: its bootstrap address, and the environment that
    makes deploy/kafka/kafka.sh address it (``None`` when it is not one of ours)."""

    bootstrap: str
    script_env: dict[str, str] | None


def _reachable(bootstrap: str, timeout_s: float) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A running Kafka broker for the whole session."""
    given = os.environ.get("STREAMREC_KAFKA_BOOTSTRAP")
    if given:
        if not _reachable(given, 30):
            pytest.fail(f"STREAMREC_KAFKA_BOOTSTRAP={given} is not reachable")
        # make test exports the variables it started the broker with.
        managed = os.environ.get("STREAMREC_KAFKA_PORT") == given.rpartition(":")[2]
        yield Broker(given, {k: v for k, v in os.environ.items() if k.startswith("STREAMREC_KAFKA_")} if managed
                     else None)
        return
    port, controller = free_port(), free_port()
    env = {
        **os.environ,
        "STREAMREC_KAFKA_PORT": str(port),
        "STREAMREC_KAFKA_CONTROLLER_PORT": str(controller),
        "STREAMREC_KAFKA_DATA_DIR": str(tmp_path_factory.mktemp("kafka")),
    }
    started = subprocess.run([str(KAFKA_SH), "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"could not start the local broker:\n{started.stdout}\n{started.stderr}")
    print(started.stdout.strip())
    try:
        yield Broker(f"127.0.0.1:{port}", env)
    finally:
        subprocess.run([str(KAFKA_SH), "stop"], env=env, capture_output=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    """``host:port`` of the session's broker."""
    return kafka_broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, so tests never see each other's records."""
    return f"it-{uuid.uuid4().hex[:12]}."


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path):
    """Settings pointing at the session broker with this test's own topics and state folder."""
    from stream.settings import Settings

    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        topic_partitions=4,
        data_dir=tmp_path / "state",
        web_port=free_port(),
        app_id=f"streamrec-{topic_prefix.rstrip('.')}",
    )


# What the tests did on the broker, reported at the end of the run (proof that they
# really produced to and consumed from a live broker, not a mock).
BROKER_USE = {"bootstrap": None, "topics": 0, "records": 0}


@pytest.fixture
def topics(settings) -> Iterator[dict[str, str]]:
    """The project's topics, created for this test and deleted after it."""
    import asyncio

    from stream.core.topics import project_topics
    from stream.kafka.admin import delete_topics, ensure_topics
    from stream.kafka.reader import end_offsets

    specs = project_topics(settings)
    created = ensure_topics(settings)
    yield created
    BROKER_USE["bootstrap"] = settings.kafka_bootstrap[0]
    BROKER_USE["topics"] += len(specs)
    for spec in specs:
        BROKER_USE["records"] += sum(asyncio.run(end_offsets(settings, spec.name)).values())
    delete_topics(settings, [t.name for t in specs])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BROKER_USE["bootstrap"]:
        terminalreporter.write_line(
            f"kafka: tests created {BROKER_USE['topics']} topics on the broker at {BROKER_USE['bootstrap']} "
            f"and left {BROKER_USE['records']} records in them before deleting them"
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder with MovieLens data (../shared/data or STREAMREC_DATASETS_DIR); skips when absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"no data folder at {DATA_DIR}")
    return DATA_DIR


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless STREAMREC_SLOW_TESTS=1 (the short forms always run)."""
    if os.environ.get("STREAMREC_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set STREAMREC_SLOW_TESTS=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

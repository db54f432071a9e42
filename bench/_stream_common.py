"""Shared set-up of the streaming benchmarks: a namespace, a catalogue, a worker."""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from pathlib import Path

from stream.demo.local_worker import LocalWorker
from stream.kafka.admin import ensure_topics
from stream.settings import Settings


def machine() -> dict:
    """What the figures were measured on."""
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version()}


def bench_settings(bootstrap: str, root: Path, partitions: int, **overrides) -> Settings:
    """Settings in a namespace of its own (topics, app id, state)."""
    from socket import socket

    with socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions,
                        app_id=prefix.rstrip("."), data_dir=root / prefix / "state",
                        artifacts_dir=root / prefix / "artifacts", web_port=port, log_level="WARNING",
                        **overrides)
    ensure_topics(settings)
    return settings


def start_worker(settings: Settings, root: Path, profile_to: str | None = None) -> LocalWorker:
    return LocalWorker(settings, root / settings.app_id / "worker.log",
                       profile_to=Path(profile_to).resolve() if profile_to else None).start()


def print_profile(path: str, top: int = 30) -> None:
    """The functions with the most own time in a worker's cProfile statistics."""
    import pstats

    print(f"\nworker profile ({path}), by own time:")
    pstats.Stats(path).sort_stats("tottime").print_stats(top)


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {path}")


def wait_metric(worker: LocalWorker, name: str, target: float, timeout: float) -> float:
    """Wait until the worker's metric reaches ``target``; returns the time it did (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.metric(name) >= target:
            return time.monotonic()
        time.sleep(0.25)  # each scrape costs the worker a few ms of its event loop
    raise TimeoutError(f"{name} did not reach {target} within {timeout}s (now {worker.metric(name)})")

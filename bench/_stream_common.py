"""Shared set-up of the streaming benchmarks: a namespace, a catalogue, a worker."""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from dataclasses import dataclass
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


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it, so parallel runs do not collide)."""
    from socket import socket

    with socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_settings(bootstrap: str, root: Path, partitions: int, **overrides) -> Settings:
    """Settings in a namespace of its own (topics, app id, state)."""
    port = free_port()
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions,
                        app_id=prefix.rstrip("."), data_dir=root / prefix / "state",
                        artifacts_dir=root / prefix / "artifacts", web_port=port, log_level="WARNING",
                        **overrides)
    ensure_topics(settings)
    return settings


def start_worker(settings: Settings, root: Path, profile_to: str | None = None, items: int = 0,
                 poll: float = 0.3) -> LocalWorker:
    """A worker healthy (catalogue read, model loaded, index built): allow ~1 s per 1,000 catalogue items (an HNSW build on one thread)."""
    return LocalWorker(settings, root / settings.app_id / "worker.log",
                       profile_to=Path(profile_to).resolve() if profile_to else None).start(
        timeout=120.0 + items / 1_000, poll=poll)


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


class RunTooShort(RuntimeError):
    """The worker processed the events too quickly for a measured window: ask for more events."""


@dataclass(frozen=True)
class Drain:
    """A worker draining a pre-filled topic, measured from the first scrape that saw it consuming to
    the first that saw every event consumed."""

    events: int  # the events consumed inside the window
    seconds: float
    cpu_seconds: float  # the worker process's user + system CPU over the window, until every event was applied
    rss_bytes: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6


def measure_drain(worker: LocalWorker, total: int, timeout: float = 1800.0) -> Drain:
    """Scrape ``worker`` until it has consumed and applied ``total`` events; a :class:`Drain` of the window.

    The window opens at the first scrape that sees events consumed (not at "healthy": the worker
    starts consuming the moment it is, so a short topic may be half drained before anyone looks),
    and the events counted are only those consumed after it (the counter moves when a batch is
    fetched, so the batch in flight at the first look is not counted while its processing is:
    the rate errs low, by at most one batch). Scrapes are 20 ms apart until then,
    and afterwards about a fortieth of the time elapsed (at most 0.25 s: each scrape costs the
    worker a few ms of its event loop), so the end is seen within ~2.5% of the window.
    """
    consumed, applied = "streamrec_worker_events_consumed_total", "streamrec_worker_events_applied_total"
    deadline = time.monotonic() + timeout
    while (seen := worker.metric(consumed)) < 1:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{consumed} still 0 after {timeout}s")
        time.sleep(0.02)
    opened, cpu_opened = time.monotonic(), process_usage(worker.proc.pid)[0]
    if seen >= total:
        raise RunTooShort(f"the worker had consumed all {total:,} events at the first look: too few to measure "
                          f"(ask for more events)")
    while (now := worker.metric(consumed)) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{consumed} did not reach {total} within {timeout}s (now {now})")
        time.sleep(min(0.25, max(0.02, (time.monotonic() - opened) / 40)))
    closed = time.monotonic()
    wait_metric(worker, applied, total, 60)
    cpu_closed, rss = process_usage(worker.proc.pid)
    return Drain(events=int(total - seen), seconds=closed - opened, cpu_seconds=cpu_closed - cpu_opened,
                 rss_bytes=rss)


# --- what the worker serves: the model, the catalogue size, the index kind ------------------
MODELS = ("content", "trained")
INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")


def add_serving_arguments(parser, items: int) -> None:
    """``--model``, ``--items``, ``--index``: what the benchmarked worker serves."""
    parser.add_argument("--model", choices=MODELS, default="content",
                        help="content: the bootstrap content-v0 version (hashed content vectors, mean user "
                             "vectors); trained: a version the project's trainer trains on the generated events "
                             "(the trainer's default tower) and publishes before the worker starts.")
    parser.add_argument("--items", type=int, default=items, help=f"Generated catalogue size (default {items:,}).")
    parser.add_argument("--index", choices=INDEX_KINDS, default="auto",
                        help="Index kind (auto: the kind STREAMREC_INDEX_* choose at that catalogue size).")
    parser.add_argument("--train-steps", type=int, default=300,
                        help="Optimizer steps of the trained model (the figures here are about speed, not quality).")


def index_overrides(kind: str) -> dict:
    return {} if kind == "auto" else {"index_kind": kind}


def publish_trained_model(settings: Settings, steps: int) -> dict:
    """Train a version on what the events topic holds with the trainer's settings and publish it.

    The periodic trainer's own run (:func:`stream.trainer.run.train_once`, its default tower, the
    settings' index kind for the catalogue size) with a bounded number of steps.
    """
    from models.train.config import trainer_config
    from stream.trainer.run import train_once

    started = time.perf_counter()
    run = train_once(settings, trainer_config(max_steps=steps, epochs=1, patience=1, progress=False),
                     select="fixed", warm_start=False)
    if not run.published:
        raise RuntimeError(f"the trainer did not publish a version: {run.reason}")
    print(f"trained and published {run.version} ({run.tower}, {run.items:,} items, {run.users:,} users, "
          f"{time.perf_counter() - started:.0f} s)")
    return {"version": run.version, "tower": run.tower, "trained_items": run.items, "trained_users": run.users}


def serving(worker: LocalWorker) -> dict:
    """What the worker serves, from ``/healthz``: model and index versions, index kind, items."""
    status, body = worker.get("/healthz")
    if status != 200 or not isinstance(body, dict):
        raise RuntimeError(f"/healthz answered {status}: {body!r:.200}")
    return {k: body.get(k) for k in ("model_version", "index_version", "index_kind", "items")}


# --- the worker process's own cost -------------------------------------------------------------
def process_usage(pid: int) -> tuple[float, int]:
    """``(user + system CPU seconds, resident set bytes)`` of process ``pid`` and its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime: fields 14 and 15 of stat(5)
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24
    return cpu, rss


def peak_rss(pid: int) -> int:
    """The most resident memory process ``pid`` held so far (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0

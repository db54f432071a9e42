"""Pieces the fault scenarios share: a namespace with a catalogue, seeded events, a
paced producer thread, the worker's published state, and the final check.

The scenarios (``bench/faults/scenarios.py``), ``bench/chaos.py`` and ``tests/chaos`` use them;
nothing here patches or imports the worker's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from kafka import KafkaAdminClient

from bench.faults.local import KAFKA_SH, free_port
from bench.faults.oracle import Expected, StateCheck, compare, latest_values, replay
from models.data.synthetic import generate_demo_dataset
from stream.core.topics import project_topics
from stream.demo.local_worker import LocalWorker
from stream.kafka.admin import delete_topics, ensure_topics
from stream.kafka.config import kafka_python_options
from stream.kafka.producer import EventProducer, publish_catalog
from stream.kafka.reader import end_offsets, read_range
from stream.settings import Settings

EVENT_TYPES = ("click", "play", "skip", "like", "purchase")
MAX_HISTORY = 25  # small, so the bound on the history is exercised
# Faust reads these from the environment. Its defaults (60 s) make the group wait up
# to a minute for a SIGKILLed member before its partitions move on: correct, but a
# chaos run with several kills would spend most of its time waiting. 6 s is the
# broker's smallest allowed session (group.min.session.timeout.ms).
FAST_GROUP_ENV = {"STREAMREC_GROUP_SESSION_TIMEOUT_S": "6", "STREAMREC_GROUP_HEARTBEAT_INTERVAL_S": "1"}


@dataclass
class World:
    """A namespace of its own on a broker: topics, app id, state folders and a catalogue."""

    settings: Settings
    root: Path
    item_ids: list[str]
    dataset: Any

    @property
    def changelog(self) -> str:
        return f"{self.settings.app_id}-user-state-changelog"

    def worker(self, name: str = "worker", **overrides: Any) -> LocalWorker:
        """A worker of this namespace (another one gets its own port and state folder)."""
        settings = self.settings
        if name != "worker":
            settings = Settings(**{**settings.model_dump(), "web_port": free_port(),
                                   "data_dir": self.root / f"state-{name}", **overrides})
        return LocalWorker(settings, self.root / f"{name}.log", **FAST_GROUP_ENV)

    def close(self) -> None:
        """Delete the namespace's topics (the broker is shared by the whole suite)."""
        try:
            delete_topics(self.settings, [t.name for t in project_topics(self.settings)] + [self.changelog])
        except Exception:  # noqa: BLE001  (cleanup must not hide the test's own failure)
            pass


def make_world(bootstrap: str, root: Path, partitions: int = 4, n_items: int = 150, seed: int = 0,
               events_per_user: int = 4, n_users: int = 20, **overrides: Any) -> World:
    prefix = f"chaos-{uuid.uuid4().hex[:10]}."
    root.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"top_k": 5, "max_history": MAX_HISTORY, "batch_max_events": 500, **overrides}
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions,
                        data_dir=root / "state", artifacts_dir=root / "artifacts", web_port=free_port(),
                        app_id=f"streamrec-{prefix.rstrip('.')}", **options)
    ensure_topics(settings)
    data = generate_demo_dataset(n_users=n_users, n_items=n_items, events_per_user=events_per_user, seed=seed)
    publish_catalog(settings, data.items)
    return World(settings, root, [it["item_id"] for it in data.items], data)


@contextlib.contextmanager
def one_worker(bootstrap: str, root: Path, **overrides: Any) -> Iterator[tuple[World, LocalWorker]]:
    """A new namespace with one started worker; the worker is killed and the topics deleted afterwards."""
    world = make_world(bootstrap, root, **overrides)
    worker = world.worker()
    try:
        worker.start()
        yield world, worker
    finally:
        worker.stop(signal.SIGKILL)
        world.close()


def generate_events(n_events: int, n_users: int, item_ids: list[str], seed: int) -> list[dict[str, Any]]:
    """Seeded valid events; ``context.seq`` numbers them so the topic can be checked for loss and doubles."""
    rng = random.Random(seed)
    base = int(time.time() * 1000) - 3_600_000
    events = []
    for n in range(n_events):
        etype = rng.choice(EVENT_TYPES)
        event: dict[str, Any] = {"user_id": f"c{rng.randrange(n_users):05d}", "item_id": rng.choice(item_ids),
                                 "event_type": etype, "timestamp_ms": base + n, "context": {"seq": n}}
        if etype == "play" and rng.random() < 0.8:
            event["value"] = round(rng.uniform(0.0, 400.0), 1)
        elif etype == "purchase" and rng.random() < 0.5:
            event["value"] = round(rng.uniform(1.0, 99.0), 2)
        events.append(event)
    return events


class Replay(threading.Thread):
    """Sends events at ``rate`` per second from a thread, through the project's producer client."""

    def __init__(self, settings: Settings, events: list[dict[str, Any]], rate: float | None) -> None:
        super().__init__(daemon=True)
        self.settings, self.events, self.rate = settings, events, rate
        self.sent = 0
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.perf_counter()
        try:
            with EventProducer(self.settings, linger_ms=5) as producer:
                self.sent = producer.send_many(self.events, rate=self.rate, strict=True).sent
        except BaseException as e:  # noqa: BLE001  (reported by finish())
            self.error = e
        self.seconds = time.perf_counter() - started

    def finish(self, timeout: float = 300.0) -> int:
        """Wait for the thread (when started; ``run()`` may also be called directly) and return the events sent."""
        if self.ident is not None:
            self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"the producer did not finish within {timeout}s")
        if self.error is not None:
            raise RuntimeError(f"the producer failed after {self.sent} events: {self.error!r}") from self.error
        return self.sent


def read_topic(settings: Settings, topic: str, timeout_s: float = 120.0):
    return asyncio.run(read_range(settings, topic, timeout_s=timeout_s))


def committed_lag(settings: Settings) -> int:
    """Records of ``events`` past the worker group's committed offsets (all partitions)."""
    topic = settings.topic("events")
    ends = asyncio.run(end_offsets(settings, topic))
    admin = KafkaAdminClient(**kafka_python_options(settings))
    try:
        committed = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
    finally:
        admin.close()
    done = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    return sum(max(0, end - max(0, done.get(p, 0))) for p, end in ends.items())


def wait_until(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001  (a broker or worker in the middle of a restart)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Outcome:
    """What a scenario measured; ``figures`` is the row of the results table."""

    figures: dict[str, Any] = field(default_factory=dict)
    state: StateCheck | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and (self.state is None or self.state.ok)

    def explain(self) -> str:
        lines = [f"{k}={v}" for k, v in self.figures.items()] + self.problems
        if self.state is not None:
            lines += self.state.examples
        return "\n".join(lines)


def valid_events_on_topic(world: World) -> tuple[list[tuple[int, int, dict[str, Any]]], Counter]:
    """The events topic read back: ``(partition, offset, event)`` of the JSON objects, and how often each seq is there."""
    out, seqs = [], Counter()
    for r in read_topic(world.settings, world.settings.topic("events")):
        try:
            event = json.loads(r.value)
        except (TypeError, ValueError, RecursionError):
            continue
        if isinstance(event, dict) and isinstance(event.get("context"), dict) and "seq" in event["context"]:
            out.append((r.partition, r.offset, event))
            seqs[event["context"]["seq"]] += 1
    return out, seqs


def expected_state(world: World, events: list[tuple[int, int, dict[str, Any]]]) -> dict[str, Expected]:
    return replay(events, world.settings.max_history)


def check_state(world: World, sent: int, timeout: float | None = None) -> Outcome:
    """Wait for the worker group to commit everything, then compare its changelog with the oracle.

    Also counts the producer's view (events on the topic missing or doubled,
    by ``context.seq``) and the recommendations: published more than once for
    one ``(user, event_offset)``, and users whose last event got none.
    """
    outcome = Outcome()
    timeout = max(180.0, sent / 100.0) if timeout is None else timeout  # the worker does 500-1500 events/s here
    wait_until(lambda: committed_lag(world.settings) == 0, timeout, "the worker group to commit every event")
    on_topic, seqs = valid_events_on_topic(world)
    expected = expected_state(world, on_topic)
    outcome.figures.update(events_sent=sent, events_on_topic=len(on_topic),
                           producer_lost=sum(1 for s in range(sent) if s not in seqs),
                           producer_doubled=sum(n - 1 for n in seqs.values() if n > 1))

    def settled() -> StateCheck | None:
        check = compare(expected, latest_values(read_topic(world.settings, world.changelog)))
        outcome.state = check
        return check if check.ok else None

    try:
        wait_until(settled, 30, "the changelog to match the oracle", interval=2.0)
    except TimeoutError:
        pass  # outcome.state holds the last comparison, reported by the caller
    outcome.figures.update(outcome.state.figures())
    recs = Counter()
    last: dict[str, int] = {}
    for r in read_topic(world.settings, world.settings.topic("recommendations")):
        rec = json.loads(r.value)
        recs[(rec["user_id"], rec["event_offset"])] += 1
        last[rec["user_id"]] = max(last.get(rec["user_id"], -1), rec["event_offset"])
    outcome.figures.update(
        recommendations=sum(recs.values()),
        recommendations_duplicated=sum(n - 1 for n in recs.values() if n > 1),
        users_last_event_unrecommended=sum(1 for u, e in expected.items() if last.get(u) != e.last_offset))
    if outcome.figures["producer_lost"] or outcome.figures["producer_doubled"]:
        outcome.problems.append("the producer lost or doubled events on the topic")
    if outcome.figures["users_last_event_unrecommended"]:
        # Every applied event leaves its user a recommendation naming it or a later event: found
        # when a transaction commit fell between a state record and its recommendation (outbox).
        outcome.problems.append(f"{outcome.figures['users_last_event_unrecommended']} users have no "
                                "recommendation for their last event")
    return outcome


@dataclass
class PrivateBroker:
    """A broker of the test's own, started with deploy/kafka/kafka.sh on free ports."""

    root: Path
    port: int = field(default_factory=free_port)
    controller: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        import os

        return {**os.environ, "STREAMREC_KAFKA_PORT": str(self.port),
                "STREAMREC_KAFKA_CONTROLLER_PORT": str(self.controller),
                "STREAMREC_KAFKA_DATA_DIR": str(self.root)}

    def _run(self, verb: str) -> None:
        done = subprocess.run([str(KAFKA_SH), verb], env=self.env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {verb} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> PrivateBroker:
        self._run("start")
        return self

    def stop(self) -> None:
        self._run("stop")

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

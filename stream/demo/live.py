"""The live part of the demo: a real worker serving recommendations that change as events arrive.

:func:`run_live_demo` resets the demo's own namespace (topics prefixed
``demo.``, app id ``streamrec-demo``, state under ``<data dir>/demo``), loads
the generated history through Kafka (:func:`stream.demo.load.run_demo`), starts ``streamrec worker`` as a
subprocess, trains and publishes a two-tower version (the worker swaps it in),
then prints a few users' recommendations before and after new events.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from models.data.synthetic import generate_demo_dataset
from models.train.config import trainer_config
from stream.core.topics import project_topics
from stream.demo.load import run_demo
from stream.demo.local_worker import LocalWorker
from stream.kafka.admin import delete_topics
from stream.kafka.producer import EventProducer
from stream.settings import Settings
from stream.trainer.run import train_once

Echo = Callable[[str], None]


@dataclass
class LiveDemoResult:
    model_version: str
    before: dict[str, list[dict[str, Any]]]
    after: dict[str, list[dict[str, Any]]]
    new_events: dict[str, list[str]]
    metrics_url: str


def demo_settings(settings: Settings) -> Settings:
    """The demo's own namespace, so a rerun starts clean without touching anything else."""
    root = settings.data_dir / "demo"
    return Settings(**{**settings.model_dump(), "topic_prefix": f"{settings.topic_prefix}demo.",
                       "app_id": f"{settings.app_id}-demo", "data_dir": root / "state",
                       "artifacts_dir": root / "artifacts"})


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(f"demo: timed out waiting for {what}")


def _reset(settings: Settings) -> None:
    internal = [f"{settings.app_id}-user-state-changelog", f"{settings.app_id}-__assignor-__leader"]
    delete_topics(settings, [t.name for t in project_topics(settings)] + internal)
    shutil.rmtree(settings.data_dir.parent, ignore_errors=True)
    time.sleep(1.0)  # topic deletion completes asynchronously on the broker


DEMO_TIME_BUDGET_S = 180.0


def run_live_demo(settings: Settings, echo: Echo = print, n_users: int = 300, n_items: int = 200,
                  events_per_user: int = 30, seed: int = 7, epochs: int = 8) -> LiveDemoResult:
    """Run the live demo (see the module docstring); returns what was shown."""
    s = demo_settings(settings)
    echo(f"resetting the demo namespace (topics {s.topic_prefix}*, state {s.data_dir.parent})")
    _reset(s)
    report = run_demo(s, n_users=n_users, n_items=n_items, events_per_user=events_per_user, seed=seed)
    for line in report.lines():
        echo("  " + line)
    # The same seed gives run_demo's data set again.
    data = generate_demo_dataset(n_users=n_users, n_items=n_items, events_per_user=events_per_user, seed=seed)
    titles = {it["item_id"]: it["title"] for it in data.items}

    log_path = s.data_dir.parent / "worker.log"
    worker = LocalWorker(s, log_path)
    url = worker.url
    try:
        worker.start()
        echo(f"worker started (pid {worker.proc.pid}, log {log_path}); catching up with the history...")
        last_user = data.events[-1]["user_id"]
        _wait(lambda: worker.get(f"/recommendations/{last_user}")[0] == 200, 180, "the history to be applied")

        echo("training the candidate two-tower models (mean, SASRec and GRU user towers, then the best with "
             "TF-IDF item content) on a snapshot of the topics; the best on validation is published...")
        # The trainer's settings and its automatic choice, smaller and quicker for a demo.
        config = trainer_config(dim=48, epochs=epochs, patience=3, progress=False)
        run = train_once(s, config, margin=1.0, time_budget_s=min(s.train_time_budget_s, DEMO_TIME_BUDGET_S))
        echo(f"  {run.summary()}")
        choice = run.choice()
        if choice is not None:
            echo("  validation NDCG@10: " + ", ".join(f"{name} {v:.4f}" for name, v in choice["valid_ndcg@10"].items())
                 + f"; best baseline {choice['best_baseline']} on the held-out tail: "
                   f"{choice['best_baseline_test_ndcg@10'] or 0:.4f}, {choice['winner']}: {choice['test_ndcg@10']:.4f}")
        if run.published:
            _wait(lambda: worker.get(f"/healthz")[1].get("model_version") == run.version, 120, "the hot swap")
            echo(f"  the worker swapped to {run.version} without stopping")
        version = worker.get(f"/healthz")[1].get("model_version")

        users = [data.user_ids[i] for i in (0, 1, 2)]
        before = {u: worker.get(f"/recommendations/{u}?k=5")[1]["items"] for u in users}
        before_history = {u: [e for e in data.events if e["user_id"] == u] for u in users}
        # New tastes: each user plays three items of a topic they have not touched.
        new_events: dict[str, list[str]] = {}
        by_topic: dict[str, list[str]] = {}
        for it in data.items:
            by_topic.setdefault(it["category"], []).append(it["item_id"])
        topic_of = {it["item_id"]: it["category"] for it in data.items}
        with EventProducer(s) as producer:
            for n, u in enumerate(users):
                seen = {e["item_id"] for e in data.events if e["user_id"] == u}
                fresh = sorted(set(by_topic) - {topic_of[i] for i in seen}) or sorted(by_topic)
                new_events[u] = [i for i in by_topic[fresh[n % len(fresh)]] if i not in seen][:3]
                for i in new_events[u]:
                    producer.send({"user_id": u, "item_id": i, "event_type": "play",
                                   "timestamp_ms": int(time.time() * 1000), "value": 200.0})

        def changed(u: str) -> list[dict[str, Any]] | None:
            status, body = worker.get(f"/recommendations/{u}?k=5")
            return body["items"] if status == 200 and body["history_length"] > len(before_history[u]) else None

        after = {u: _wait(lambda u=u: changed(u), 30, f"{u}'s new recommendation") for u in users}
        for u in users:
            echo(f"\nuser {u}")
            echo("  before: " + "; ".join(f"{titles.get(r['item_id'], r['item_id'])} ({r['reason']})"
                                          for r in before[u]))
            echo("  new events: played " + ", ".join(titles[i] for i in new_events[u]))
            echo("  after:  " + "; ".join(f"{titles.get(r['item_id'], r['item_id'])} ({r['reason']})"
                                          for r in after[u]))
        echo(f"\nmetrics: {url}/metrics   API: {url}/recommendations/{users[0]}  "
             f"{url}/items/{data.items[0]['item_id']}/similar  {url}/users/{users[0]}/similar")
        return LiveDemoResult(version, before, after, new_events, f"{url}/metrics")
    finally:
        worker.stop()

"""The live part of the demo: a real worker serving recommendations that change as events arrive.

:func:`run_live_demo` resets the demo's own namespace (topics prefixed
``demo.``, app id ``streamrec-demo``, state under ``<data dir>/demo``), loads
the generated history through Kafka (:func:`stream.demo.load.run_demo`), starts ``streamrec worker`` as a
subprocess, trains and publishes a two-tower version (the worker swaps it in),
then prints a few users' recommendations before and after new events. With
``keep_running`` the worker and a ``streamrec dashboard`` over it stay up afterwards,
recorded in pid files (:mod:`stream.demo.running`) that the next run, or
:func:`stop_demo`, stops first.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from models.data.synthetic import generate_demo_dataset
from models.train.config import trainer_config
from stream.core.topics import EXPERIMENT_COUNTS_TABLE, USER_STATE_TABLE, changelog_topic, project_topics
from stream.demo.load import run_demo
from stream.demo.local_worker import LocalDashboard, LocalWorker
from stream.demo.running import record, stop_recorded
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
    experiment: dict[str, Any] | None = None  # the short experiment's results (stream.kafka.experiments.results)
    dashboard_url: str | None = None  # with keep_running: where the dashboard answers


def demo_settings(settings: Settings) -> Settings:
    """The demo's own namespace, so a rerun starts clean without touching anything else."""
    root = settings.data_dir / "demo"
    return Settings(**{**settings.model_dump(), "topic_prefix": f"{settings.topic_prefix}demo.",
                       "app_id": f"{settings.app_id}-demo", "data_dir": root / "state",
                       "artifacts_dir": root / "artifacts"})


def run_folder(settings: Settings) -> Path:
    """Where the pid files of what a demo left running are (beside the demo's state)."""
    return settings.data_dir / "demo-running"


def stop_demo(settings: Settings) -> list[str]:
    """Stop the worker and the dashboard a previous demo left running; what was stopped."""
    return stop_recorded(run_folder(settings))


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
    internal = [changelog_topic(settings, USER_STATE_TABLE), changelog_topic(settings, EXPERIMENT_COUNTS_TABLE),
                f"{settings.app_id}-__assignor-__leader"]
    delete_topics(settings, [t.name for t in project_topics(settings)] + internal)
    shutil.rmtree(settings.data_dir.parent, ignore_errors=True)
    time.sleep(1.0)  # topic deletion completes asynchronously on the broker


DEMO_TIME_BUDGET_S = 180.0
EXPERIMENT_ROUNDS = 3


def _run_experiment(s: Settings, worker: LocalWorker, data: Any, control: str, echo: Echo) -> dict[str, Any] | None:
    """A short A/B experiment: the version the trainer chose (control) against a plain mean-pooling
    version trained now (treatment), half the users each, with simulated users who each round play
    an item of their favourite category: one they were recommended when there is one (a hit).
    Prints the per-arm results and stops the experiment, promoting the treatment only if it won."""
    import asyncio
    from collections import Counter

    from models.feedback import is_positive
    from stream.core.experiments import Arm, format_results, new_experiment
    from stream.kafka import experiments as kafka_experiments

    echo("\nA/B experiment: a plain mean-pooling user tower (treatment) against the trainer's choice (control)...")
    plain = train_once(s, trainer_config(dim=48, epochs=2, tower="mean", content="none", progress=False),
                       margin=1.0, select="fixed", warm_start=False)
    if not plain.published:
        echo(f"  treatment not published ({plain.reason}): no experiment")
        return None
    _wait(lambda: worker.get("/healthz")[1].get("model_version") == plain.version, 120, "the treatment version")
    experiment = new_experiment("demo-ab", [Arm("control", control, 0.5), Arm("treatment", plain.version, 0.5)],
                                int(time.time() * 1000))
    kafka_experiments.publish_experiment(s, experiment)
    _wait(lambda: worker.get("/experiments")[1].get("serving") == "demo-ab", 120, "the experiment to be served")
    echo(f"  started demo-ab: control={control} (50%), treatment={plain.version} (50%)")
    category = {it["item_id"]: it["category"] for it in data.items}
    by_category: dict[str, list[str]] = {}
    for it in data.items:
        by_category.setdefault(it["category"], []).append(it["item_id"])
    favourite = {}
    for user in data.user_ids:
        counts = Counter(category[e["item_id"]] for e in data.events
                         if e["user_id"] == user and is_positive(e["event_type"]))
        favourite[user] = counts.most_common(1)[0][0] if counts else next(iter(by_category))
    played: dict[str, set[str]] = {u: set() for u in data.user_ids}
    applied, sent = worker.metric("streamrec_worker_events_applied_total"), 0
    for round_ in range(EXPERIMENT_ROUNDS):
        with EventProducer(s) as producer:
            for user in data.user_ids:
                status, body = worker.get(f"/recommendations/{user}")
                recommended = [r["item_id"] for r in body.get("items", [])] if status == 200 else []
                liked = [i for i in recommended if category.get(i) == favourite[user]]
                choices = liked or [i for i in by_category[favourite[user]] if i not in played[user]] \
                    or by_category[favourite[user]]
                item = choices[(round_ + len(played[user])) % len(choices)] if not liked else liked[0]
                played[user].add(item)
                producer.send({"user_id": user, "item_id": item, "event_type": "play",
                               "timestamp_ms": int(time.time() * 1000), "value": 180.0})
                sent += 1
        _wait(lambda: worker.metric("streamrec_worker_events_applied_total") >= applied + sent, 60,
              "the round's events")
    trials = worker.metric("streamrec_worker_experiment_trials_total")

    def counted() -> dict[str, Any] | None:  # the counts' changelog caught up with the worker
        found = kafka_experiments.results(experiment, asyncio.run(kafka_experiments.read_counts(s)))
        return found if sum(a["trials"] for a in found["arms"]) >= trials else None

    result = _wait(counted, 30, "the experiment's counts")
    for line in format_results(result):
        echo("  " + line)
    # Without a promotion everyone would get the newest announced version, the treatment's: the
    # control is promoted back unless the treatment won.
    treatment = result["arms"][1]
    promote = "treatment" if treatment.get("significant") and treatment["difference"] > 0 else "control"
    kafka_experiments.publish_experiment(s, kafka_experiments.stop(experiment, promote))
    served = experiment.arm(promote).version
    _wait(lambda: worker.get("/healthz")[1].get("model_version") == served, 120, "the promoted version")
    echo(f"  stopped demo-ab and promoted the {promote} ({served}): "
         + ("the treatment won" if promote == "treatment" else "the treatment did not win")
         + "; the same table: streamrec experiment status")
    return result


def run_live_demo(settings: Settings, echo: Echo = print, n_users: int = 300, n_items: int = 200,
                  events_per_user: int = 30, seed: int = 7, epochs: int = 8,
                  keep_running: bool = False) -> LiveDemoResult:
    """Run the live demo (see the module docstring); returns what was shown."""
    for stopped in stop_demo(settings):
        echo(f"stopped the previous demo's {stopped}")
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
    board_settings = Settings(**{**s.model_dump(), "dashboard_workers": (url,)})
    board = LocalDashboard(board_settings, s.data_dir.parent / "dashboard.log") if keep_running else None
    finished = False
    try:
        worker.start()
        echo(f"worker started (pid {worker.proc.pid}, log {log_path}); catching up with the history...")
        if board is not None:
            board.start()
            record(run_folder(settings), "worker", worker.proc.pid)
            record(run_folder(settings), "dashboard", board.proc.pid)
            echo(f"dashboard started (pid {board.proc.pid}): {board.url}/")
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
        experiment = None
        if run.published:
            experiment = _run_experiment(s, worker, data, run.version, echo)
        echo(f"\nmetrics: {url}/metrics   API: {url}/recommendations/{users[0]}  "
             f"{url}/items/{data.items[0]['item_id']}/similar  {url}/users/{users[0]}/similar  {url}/experiments")
        if board is not None:
            token = " (add ?token=<STREAMREC_API_TOKEN> once)" if s.api_token is not None else ""
            echo(f"dashboard: {board.url}/  user: {board.url}/users/{users[0]}{token}")
            echo("the worker and the dashboard keep running: 'make demo-stop' (streamrec demo --stop) stops them; "
                 "a new 'make demo' replaces them")
        finished = True
        return LiveDemoResult(version, before, after, new_events, f"{url}/metrics", experiment,
                              board.url if board is not None else None)
    finally:
        if not (finished and keep_running):
            if board is not None:
                board.stop()
            worker.stop()
            stop_recorded(run_folder(settings))

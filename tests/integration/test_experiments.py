"""A/B experiments on the real broker: two workers, two trained versions, started, counted, restarted
and stopped with the ``streamrec experiment`` command as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from models.artifacts import save_artifact
from models.data.synthetic import generate_demo_dataset
from models.train.config import TrainConfig
from models.train.demo import demo_split
from models.train.loop import train_two_tower
from stream.core.experiments import Arm, new_experiment
from stream.kafka.producer import EventProducer
from stream.settings import Settings
from stream.trainer.run import announce
from tests.helpers import free_port
from tests.worker_harness import (WorkerProcess, schema_violations, settings_env, start_catalogue_worker, topic_json,
                                  wait_for)

pytestmark = pytest.mark.kafka

STREAMREC = Path(sys.executable).parent / "streamrec"
SIZES = {"n_users": 60, "n_items": 50, "events_per_user": 10, "seed": 13}


def experiment_command(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(STREAMREC), "experiment", *args], env=settings_env(settings), capture_output=True,
                          text=True, timeout=180)


def arm_counters(worker: WorkerProcess) -> dict[tuple[str, str], tuple[float, float]]:
    """``(experiment, arm) -> (trials, hits)`` on the worker's /metrics."""
    status, text = worker.get("/metrics")
    assert status == 200
    out: dict[tuple[str, str], list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("streamrec_worker_experiment_trials", "streamrec_worker_experiment_hits"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                pair = out.setdefault((sample.labels["experiment"], sample.labels["arm"]), [0.0, 0.0])
                pair[0 if "trials" in family.name else 1] += sample.value
    return {k: (t, h) for k, (t, h) in out.items()}


def serving(worker: WorkerProcess) -> tuple[str | None, str | None]:
    """(the experiment the worker serves, its default model version)."""
    status, body = worker.get("/experiments")
    health = worker.get("/healthz")[1]
    return (body.get("serving") if status == 200 else "unavailable"), health.get("model_version")


def test_a_two_worker_experiment_is_served_counted_over_both_and_promoted(kafka_bootstrap, tmp_path):
    data = generate_demo_dataset(**SIZES)
    settings, first = start_catalogue_worker(kafka_bootstrap, tmp_path / "a", "ixp", 4, data.items)
    second = None
    try:
        torch.manual_seed(0)
        trained = train_two_tower(demo_split(**SIZES), TrainConfig(tower="mean", dim=16, epochs=2, content="none",
                                                                     progress=False))
        for version in ("v-a", "v-b"):  # two versions, the trainer's way: saved, then announced
            path = save_artifact(trained, settings.artifacts_dir, version=version)
            announce(settings, version, path, {"ndcg@10": 0.1})
        other = Settings(**{**settings.model_dump(), "web_port": free_port(), "data_dir": tmp_path / "b" / "state"})
        second = WorkerProcess(other, tmp_path / "b.log").start()
        workers = (first, second)
        wait_for(lambda: all(serving(w) == (None, "v-b") for w in workers)
                 and sum(len(w.get("/healthz")[1]["partitions"]) for w in workers) == 4,
                 timeout=90, what="both workers serving v-b, partitions shared")

        # Refused before anything is announced: unknown versions, bad shares.
        refused = experiment_command(settings, "start", "--name", "ab", "--arm", "control=v-a:0.5",
                                     "--arm", "treatment=v-missing:0.5")
        assert refused.returncode != 0 and "v-missing" in refused.stderr
        refused = experiment_command(settings, "start", "--name", "ab", "--arm", "control=v-a:0.7",
                                     "--arm", "treatment=v-b:0.7")
        assert refused.returncode == 2 and "sum to 1" in refused.stderr
        started = experiment_command(settings, "start", "--name", "ab", "--arm", "control=v-a:0.5",
                                     "--arm", "treatment=v-b:0.5")
        assert started.returncode == 0, started.stderr
        again = experiment_command(settings, "start", "--name", "other", "--arm", "a=v-a:0.5", "--arm", "b=v-b:0.5")
        assert again.returncode != 0 and "is running" in again.stderr
        wait_for(lambda: all(serving(w)[0] == "ab" for w in workers), timeout=60, what="both workers serving ab")
        experiment = new_experiment("ab", [Arm("control", "v-a", 0.5), Arm("treatment", "v-b", 0.5)], 0)

        # The second worker restarts: it finds the experiment in force on model-updates.
        second.stop()
        second.start()
        wait_for(lambda: serving(second)[0] == "ab", timeout=90, what="the restarted worker serving ab")

        # Round one: every user gets a recommendation from their arm. Round two: users in the
        # treatment arm click the first item they were recommended (hits), the control's an item
        # they were not (misses).
        users = data.user_ids
        items = [it["item_id"] for it in data.items]
        now = int(time.time() * 1000)
        with EventProducer(settings) as producer:
            producer.send_many([{"user_id": u, "item_id": items[n % len(items)], "event_type": "click",
                                 "timestamp_ms": now + n} for n, u in enumerate(users)])

        def latest() -> dict[str, dict]:
            out = {}
            for key, value in topic_json(settings, "recommendations"):
                out[key.decode()] = value
            return out

        held = wait_for(lambda: (r := latest()) and all(r.get(u, {}).get("arm") for u in users) and r,
                        timeout=60, what="every user's recommendation from an arm")
        for user in users:
            arm = experiment.arm_of(user)
            assert held[user]["arm"] == arm.name and held[user]["model_version"] == arm.version
        round_two, expected = [], {"control": [0, 0], "treatment": [0, 0]}
        for n, user in enumerate(users):
            arm = experiment.arm_of(user).name
            recommended = [i["item_id"] for i in held[user]["items"]]
            item = recommended[0] if arm == "treatment" else next(i for i in items if i not in recommended)
            round_two.append({"user_id": user, "item_id": item, "event_type": "click", "timestamp_ms": now + 1000 + n})
            expected[arm][0] += 1
            expected[arm][1] += arm == "treatment"
        with EventProducer(settings) as producer:
            producer.send_many(round_two)

        def summed_metrics() -> dict[str, tuple[float, float]]:
            total: dict[str, list[float]] = {}
            for w in workers:
                for (name, arm), (t, h) in arm_counters(w).items():
                    if name == "ab":
                        pair = total.setdefault(arm, [0.0, 0.0])
                        pair[0] += t
                        pair[1] += h
            return {arm: (t, h) for arm, (t, h) in total.items()}

        want = {arm: (float(t), float(h)) for arm, (t, h) in expected.items()}
        wait_for(lambda: summed_metrics() == want, timeout=60, what=f"the workers' counters reaching {want}")
        per_worker = [arm_counters(w) for w in workers]
        assert all(per_worker), "both workers counted trials"  # the sum is over two workers, not one

        def api_results() -> dict:
            status, body = first.get("/experiments")
            assert status == 200
            return body["experiments"][0]

        result = wait_for(lambda: (r := api_results()) and {a["arm"]: (a["trials"], a["hits"]) for a in r["arms"]}
                          == {arm: (t, h) for arm, (t, h) in expected.items()} and r,
                          timeout=30, what="GET /experiments equal to the sums over both workers")
        assert result["running"] and result["control"] == "control"
        treatment = result["arms"][1]
        assert treatment["hit_rate"] == 1.0 and treatment["significant"] and treatment["difference"] == 1.0
        assert result["partitions_counted"] == [0, 1, 2, 3]
        # Every worker answers the same (each reads the results at most every 2 s).
        wait_for(lambda: second.get("/experiments")[1]["experiments"][0] == result, timeout=10,
                 what="the second worker's GET /experiments equal to the first's")

        status = experiment_command(settings, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout) == [result]
        table = experiment_command(settings, "status")
        assert "treatment" in table.stdout and "1.0000" in table.stdout

        # Stopped with the treatment promoted: everyone on v-b, no arm.
        stopped = experiment_command(settings, "stop", "--promote", "treatment")
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: all(serving(w) == (None, "v-b") for w in workers), timeout=60, what="v-b promoted")
        with EventProducer(settings) as producer:
            producer.send_many([{"user_id": u, "item_id": items[0], "event_type": "click",
                                 "timestamp_ms": now + 5000 + n} for n, u in enumerate(users[:10])])
        after = wait_for(lambda: (r := latest()) and all(r[u]["arm"] is None for u in users[:10]) and r,
                         timeout=60, what="recommendations without an arm after the stop")
        assert {after[u]["model_version"] for u in users[:10]} == {"v-b"}
        records = [v for _, v in topic_json(settings, "model-updates")]
        assert schema_violations("model-updates", records) == []
        assert [r["experiment"]["promoted"] for r in records if "experiment" in r] == [None, "treatment"]
        final = experiment_command(settings, "status", "--json")
        assert json.loads(final.stdout)[0]["promoted"] == "treatment"
    finally:
        if second is not None:
            second.stop()
        first.stop()

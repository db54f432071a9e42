"""Model versions on the real broker: a worker started after a good version and bad announcements
serves the good version from its first answer on (never the bootstrap model), and the trainer gates on it."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kafka import KafkaProducer

from bench.faults.versions import HOSTILE_FOLDERS, copy_version
from models.data.synthetic import generate_demo_dataset
from models.train.config import TrainConfig
from stream.kafka.admin import ensure_topics
from stream.kafka.config import kafka_python_options
from stream.kafka.producer import EventProducer, publish_catalog
from stream.settings import Settings
from stream.trainer.run import announce, latest_announcement, train_once, verified_announcement
from tests.helpers import free_port
from tests.worker_harness import WorkerProcess, recommendations_for, wait_for

pytestmark = pytest.mark.kafka

KEY = "integration-artifact-key-0123456789"
CONFIG = TrainConfig(tower="mean", dim=16, epochs=1, content="none", progress=False)


def test_a_restarted_worker_serves_the_last_good_version_not_the_bootstrap(kafka_bootstrap, tmp_path):
    prefix = f"itv-{uuid.uuid4().hex[:10]}."
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, topic_partitions=2,
                        data_dir=tmp_path / "state", artifacts_dir=tmp_path / "artifacts", web_port=free_port(),
                        app_id=f"streamrec-{prefix.rstrip('.')}", top_k=5, artifact_key=KEY)
    ensure_topics(settings)
    data = generate_demo_dataset(n_users=40, n_items=60, events_per_user=10, seed=3)
    publish_catalog(settings, data.items)
    with EventProducer(settings) as producer:
        producer.send_many(data.events, strict=True)
    # The default: the automatic choice among the candidate towers, beside the best baseline.
    run = train_once(settings, CONFIG, margin=1.0, time_budget_s=300)
    assert run.published, run.reason
    good, artifacts = run.version, settings.artifacts_dir
    choice = latest_announcement(settings).extra["selection"]
    tried = set(choice["valid_ndcg@10"])
    # the demo's items have text: every tower with content, and the mean tower content first
    from models.train.auto import AUTO_TOWERS

    assert tried == {f"{t}+tfidf" for t in AUTO_TOWERS} | {"mean+tfidf-first"} and choice["winner"] in tried
    # the winner is the best candidate on validation, and it is the version published
    assert choice["valid_ndcg@10"][choice["winner"]] == max(choice["valid_ndcg@10"].values())
    assert run.tower == choice["winner"].split("+")[0] == latest_announcement(settings).tower
    assert choice["best_baseline"] in choice["baselines_valid_ndcg@10"]
    assert choice["test_ndcg@10"] == run.metrics["ndcg@10"]
    assert choice["best_baseline_test_ndcg@10"] == run.baseline_metrics["ndcg@10"]
    signature = json.loads((artifacts / good / "manifest.json").read_text())["signature"]
    assert signature["alg"] == "HMAC-SHA256"

    # After it: a tampered version, one that does not exist (its path pointing at a good copy
    # elsewhere), an unsigned one, and records that are not announcements at all.
    HOSTILE_FOLDERS["tampered"](artifacts, good, "tampered", KEY.encode(), tmp_path / "outside")
    copy_version(artifacts, good, "unsigned", None)
    elsewhere = copy_version(artifacts, good, "elsewhere", KEY.encode(), dest_root=tmp_path / "outside")
    announce(settings, "tampered", artifacts / "tampered", {"ndcg@10": 1.0})
    announce(settings, "elsewhere", elsewhere, {"ndcg@10": 1.0})
    announce(settings, "unsigned", artifacts / "unsigned", {"ndcg@10": 1.0})
    producer = KafkaProducer(**kafka_python_options(settings))
    for value in (b"null", b'{"version": "../' + good.encode() + b'"}', b"\xff"):
        producer.send(settings.topic("model-updates"), key=b"v", value=value)
    producer.flush()
    producer.close()
    assert latest_announcement(settings).version == "unsigned"

    # The trainer gates on the version the workers serve, not on the last announcement.
    found = verified_announcement(settings)
    assert found is not None and found[0].version == good

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        status, health = worker.get("/healthz")  # the first healthy answer
        assert status == 200 and health["model_version"] == good, health
        assert worker.metric('streamrec_worker_model_swaps_total{result="initial"}') == 1
        # three versions and three records refused, each counted
        assert worker.metric('streamrec_worker_model_swaps_total{result="rejected"}') >= 6
        log = worker.log_path.read_text(errors="replace")
        for version, reason in (("tampered", "checksum"), ("elsewhere", "not_found"), ("unsigned", "unsigned")):
            assert f"model version rejected version={version} reason={reason}" in log
        assert "content-v0" not in {line.split("model_version=", 1)[1].split(" ", 1)[0]
                                    for line in log.splitlines() if "serving model_version=" in line}
        user = data.events[0]["user_id"]
        with EventProducer(settings) as producer:
            producer.send({"user_id": user, "item_id": data.items[3]["item_id"], "event_type": "play",
                           "timestamp_ms": int(time.time() * 1000), "value": 120.0})
        recs = wait_for(lambda: [r for r in recommendations_for(settings, user) if r["event_offset"] is not None],
                        timeout=60, what="a recommendation after the start")
        assert {r["model_version"] for r in recs} == {good}

        # The next trainer run is gated against the good version although the newest announcement is bad.
        second = train_once(settings, CONFIG, margin=1.0, publish=False, select="fixed")
        assert second.current_version == good and second.current_metrics is not None
    finally:
        worker.stop()

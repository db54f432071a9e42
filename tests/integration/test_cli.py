"""The ``streamrec`` console command, run as a user would, against the real broker."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream.core.topics import EVENTS, ITEMS
from stream.kafka.reader import read_range

STREAMREC = Path(sys.executable).parent / "streamrec"
COMMANDS = ["worker", "create-topics", "produce", "replay", "demo", "settings", "experiment", "dashboard"]


def run(settings, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "STREAMREC_KAFKA_BOOTSTRAP": ",".join(settings.kafka_bootstrap),
        "STREAMREC_TOPIC_PREFIX": settings.topic_prefix,
        "STREAMREC_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "STREAMREC_DATA_DIR": str(settings.data_dir),
        **env,
    }
    return subprocess.run([str(STREAMREC), *args], env=full_env, capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command():
    out = subprocess.run([str(STREAMREC), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert f"\n  {command} " in out.stdout
    for command in COMMANDS:
        sub = subprocess.run([str(STREAMREC), command, "--help"], capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0 and "Usage:" in sub.stdout


def test_packages_import():
    subprocess.run([sys.executable, "-c", "import stream, models, index"], check=True, timeout=60)


def test_invalid_settings_are_a_clear_error(tmp_path):
    env = {**os.environ, "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    out = subprocess.run([str(STREAMREC), "settings"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "STREAMREC_KAFKA_SASL_USERNAME" in out.stderr and "Traceback" not in out.stderr


def test_settings_command_masks_secrets(settings):
    out = run(settings, "settings", STREAMREC_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
              STREAMREC_KAFKA_SASL_USERNAME="svc", STREAMREC_KAFKA_SASL_PASSWORD="pa55-w0rd-xyz")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["kafka_sasl_password"] == "**********"
    assert "pa55-w0rd-xyz" not in out.stdout + out.stderr


@pytest.mark.kafka
def test_produce_generate_sends_events_and_catalogue(settings):
    out = run(settings, "produce", "--generate", "250", "--items", "40")
    assert out.returncode == 0, out.stderr
    assert "sent 250 events" in out.stdout
    events = asyncio.run(read_range(settings, settings.topic(EVENTS)))
    items = asyncio.run(read_range(settings, settings.topic(ITEMS)))
    assert len(events) == 250 and len(items) == 40
    assert {json.loads(r.value)["event_type"] for r in events} <= {"click", "play", "skip", "like", "purchase"}


@pytest.mark.kafka
def test_replay_file_with_bad_lines(settings, tmp_path):
    good = [{"user_id": f"u{n % 3}", "item_id": f"i{n}", "event_type": "click", "timestamp_ms": 1_767_225_600_000 + n}
            for n in range(20)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(e) for e in good[:10]] + ["{broken", json.dumps({"user_id": "u1"})]
                              + [json.dumps(e) for e in good[10:]]) + "\n")
    run(settings, "create-topics")
    out = run(settings, "replay", str(path), "--rate", "200", "--rebase")
    assert out.returncode == 1  # some lines were invalid: the command says so in its exit code
    assert "sent 20 events" in out.stdout
    assert "bad_json=1" in out.stdout and "missing_field=1" in out.stdout
    events = [json.loads(r.value) for r in asyncio.run(read_range(settings, settings.topic(EVENTS)))]
    assert sorted(e["item_id"] for e in events) == sorted(e["item_id"] for e in good)
    assert min(e["timestamp_ms"] for e in events) > 1_767_225_600_000  # rebased to now

    strict = run(settings, "replay", str(path), "--strict")
    assert strict.returncode != 0 and "invalid event (bad_json)" in strict.stderr


def test_replay_missing_file_is_a_usage_error(settings, tmp_path):
    out = run(settings, "replay", str(tmp_path / "nope.jsonl"))
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_evaluate_command_writes_table_json_and_chart(shared_data, tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "STREAMREC_DATASETS_DIR": str(shared_data)}
    result = subprocess.run([str(STREAMREC), "evaluate", "--data", "ml-100k", "--models", "pop,itemknn",
                             "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| pop | baseline |" in result.stdout and "| itemknn | baseline |" in result.stdout
    report = json.loads(out.read_text())
    assert "full ranking" in report["protocol"]["ranking"]
    for name in ("pop", "itemknn"):
        assert set(report["models"][name]) >= {"kind", "ndcg@10", "hr@10", "recall@10", "mrr@10", "coverage",
                                               "train_s"}
    assert report["models"]["itemknn"]["ndcg@10"] > report["models"]["pop"]["ndcg@10"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    bad = subprocess.run([str(STREAMREC), "evaluate", "--models", "nope"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "unknown model(s) nope" in bad.stderr


@pytest.mark.kafka
def test_train_without_the_topics_is_a_one_line_error(settings):
    out = run(settings, "train", "--select", "fixed", "--epochs", "1")  # nothing created under this prefix
    assert out.returncode == 1
    assert f"Error: topic {settings.topic(EVENTS)} does not exist" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout

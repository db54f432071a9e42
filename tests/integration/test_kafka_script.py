"""deploy/kafka/kafka.sh: idempotent verbs and clear errors."""

import os
import stat
import subprocess

import pytest

from tests.helpers import KAFKA_SH, free_port


def sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KAFKA_SH), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.kafka
def test_status_and_start_on_the_running_broker(kafka_broker):
    if kafka_broker.script_env is None:
        pytest.skip("the session broker was given from outside, not started with kafka.sh")
    status = sh("status", **kafka_broker.script_env)
    assert status.returncode == 0 and "running (pid" in status.stdout
    again = sh("start", **kafka_broker.script_env)
    assert again.returncode == 0 and "already running" in again.stdout


def test_stop_and_status_when_nothing_runs(tmp_path):
    env = {"STREAMREC_KAFKA_PORT": str(free_port()), "STREAMREC_KAFKA_DATA_DIR": str(tmp_path)}
    assert sh("stop", **env).returncode == 0
    assert sh("stop", **env).returncode == 0
    status = sh("status", **env)
    assert status.returncode == 3 and "not running" in status.stdout


def test_old_java_is_refused_with_a_clear_error(tmp_path):
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = sh("start", PATH=f"{fake.parent}:{os.environ['PATH']}", STREAMREC_KAFKA_PORT=str(free_port()),
             STREAMREC_KAFKA_DATA_DIR=str(tmp_path / "data"))
    assert out.returncode == 1
    assert "Java 17 or newer is required; found Java 11.0.22" in out.stderr


def test_unknown_verb(tmp_path):
    out = sh("launch")
    assert out.returncode == 1 and "unknown verb" in out.stderr

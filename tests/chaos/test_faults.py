"""Faults on purpose, short forms (``make test``); STREAMREC_SLOW_TESTS=1 adds the long forms.

Every scenario compares the worker's ``user-state`` changelog with an oracle
written apart from stream/ (bench/faults/oracle.py), so a lost event, an event
applied twice or a wrong history fails the test with the figures printed.
"""

from __future__ import annotations

import pytest

from bench.faults import scenarios

pytestmark = pytest.mark.kafka


def report(outcome) -> None:
    print("\n" + outcome.explain())
    assert outcome.ok, outcome.explain()


def test_crash_at_least_once_loses_nothing(kafka_bootstrap, tmp_path):
    report(scenarios.crash(kafka_bootstrap, tmp_path, events=2000, users=200, kills=3, guarantee="at_least_once",
                           rate=80.0))


def test_crash_exactly_once_loses_nothing(kafka_bootstrap, tmp_path):
    report(scenarios.crash(kafka_bootstrap, tmp_path, events=2000, users=200, kills=3, guarantee="exactly_once",
                           rate=80.0))


def test_broker_restart_mid_replay(tmp_path):
    report(scenarios.broker_restart(tmp_path, events=2000, users=200, restarts=1))


def test_second_worker_joins_and_leaves(kafka_bootstrap, tmp_path):
    report(scenarios.rebalance(kafka_bootstrap, tmp_path, events=2500, users=200, rounds=1))


def test_lost_rocksdb_folder_is_restored_from_changelog(kafka_bootstrap, tmp_path):
    report(scenarios.lost_disk(kafka_bootstrap, tmp_path, events=1500, users=150))


def test_bad_input_at_volume(kafka_bootstrap, tmp_path):
    report(scenarios.bad_input(kafka_bootstrap, tmp_path, bad=10_000, valid=500))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_crash_long(kafka_bootstrap, tmp_path):
    report(scenarios.crash(kafka_bootstrap, tmp_path, events=50_000, users=3000, kills=6, rate=900.0))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_crash_exactly_once_long(kafka_bootstrap, tmp_path):
    report(scenarios.crash(kafka_bootstrap, tmp_path, events=50_000, users=3000, kills=6, rate=900.0,
                           guarantee="exactly_once"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_broker_restart_long(tmp_path):
    report(scenarios.broker_restart(tmp_path, events=20_000, users=2000, restarts=3, rate=600.0))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rebalance_long(kafka_bootstrap, tmp_path):
    report(scenarios.rebalance(kafka_bootstrap, tmp_path, events=20_000, users=2000, rounds=3, rate=600.0))


def test_corrupt_artifacts_are_refused_and_serving_goes_on(kafka_bootstrap, tmp_path):
    report(scenarios.corrupt_artifacts(kafka_bootstrap, tmp_path))


def test_random_http_requests(kafka_bootstrap, tmp_path):
    report(scenarios.http_input(kafka_bootstrap, tmp_path, requests=1500))


def test_http_k_digit_lookalikes_answer_400(kafka_bootstrap, tmp_path):
    report(scenarios.http_input(kafka_bootstrap, tmp_path, requests=40, k_values=scenarios.K_DIGIT_LOOKALIKES))

"""A real Prometheus scrapes a real worker with the project's scrape config and alert rules.

Prometheus runs on loopback with its own data folder; its config is
deploy/prometheus/prometheus.yml with the worker job's DNS discovery replaced
by the test worker's address and a 1 s scrape and evaluation interval. The
worker's numbers are read back through Prometheus's HTTP query API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stream.core.events import REASONS
import yaml

from tests.helpers import REPO, free_port
from tests.integration.test_dashboard import concrete, dashboard, metric_names, queries, worker_with_catalog
from tests.worker_harness import wait_for

PROMETHEUS = shutil.which("prometheus")
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed: "
                       "deploy/prometheus/install.sh installs Debian's package"),
]

# Invalid records, by the reason the worker must give (stream/core/events.py REASONS).
BAD = {
    "bad_json": [b"{not json", b"[1, 2"],
    "unknown_event_type": [json.dumps({"user_id": "mallory", "item_id": "i1", "event_type": "zap",
                                       "timestamp_ms": 1767225600000}).encode()],
    "too_large": [b"x" * 20_000],
}
ROUNDS = 2  # a labelled counter's first sample is not an increase: rate() needs a second round
VALID_PER_ROUND = 24


def scrape_config(worker_port: int) -> dict[str, Any]:
    """The project's Prometheus config, aimed at one local worker, scraping and evaluating every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "streamrec-worker"]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    job["scrape_interval"] = "1s"
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    config["scrape_configs"] = [job]
    return config


class PrometheusProcess:
    """A Prometheus server on a free loopback port, with its log in a file."""

    def __init__(self, config: dict[str, Any], root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.config_path = root / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = root / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def api(self, path: str, **params: str) -> Any:
        """``data`` of an HTTP API answer; raises on an error status."""
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{path} {params}: HTTP {e.code} {e.read().decode(errors='replace')}") from e
        if body["status"] != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant vector query: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr} gave a {data['resultType']}, not a vector")
        return data["result"]

    def values(self, expr: str, by: str) -> dict[str, float]:
        return {r["metric"].get(by, ""): float(r["value"][1]) for r in self.query(expr)}

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, tmp_path_factory):
    """Topics, a catalogue, one worker and Prometheus scraping it."""
    from models.data.synthetic import generate_demo_dataset

    root = tmp_path_factory.mktemp("prometheus")
    data = generate_demo_dataset(n_users=8, n_items=40, events_per_user=2, seed=11)
    with worker_with_catalog(kafka_bootstrap, root, data, partitions=4, top_k=5) as (settings, worker):
        prometheus = PrometheusProcess(scrape_config(settings.web_port), root)
        try:
            yield settings, worker, prometheus.start(), data
        finally:
            prometheus.stop()


def send_round(settings, items: list[str], round_no: int) -> None:
    from kafka import KafkaProducer

    from stream.kafka.config import kafka_python_options
    from stream.kafka.producer import EventProducer

    now = int(time.time() * 1000)
    with EventProducer(settings) as producer:
        for i in range(VALID_PER_ROUND):
            producer.send({"user_id": f"u{i % 6}", "item_id": items[(i * 7 + round_no) % len(items)],
                           "event_type": "play", "timestamp_ms": now + i, "value": 120.0})
    raw = KafkaProducer(**kafka_python_options(settings))  # no validation: these records are invalid on purpose
    try:
        for values in BAD.values():
            for value in values:
                raw.send(settings.topic("events"), key=b"mallory", value=value)
        raw.flush(timeout=30)
    finally:
        raw.close(timeout=10)


@pytest.fixture(scope="module")
def driven(stack):
    """Two rounds of valid and invalid events, counted through Prometheus before and after."""
    settings, worker, prometheus, data = stack
    wait_for(lambda: prometheus.value('up{job="streamrec-worker"}') == 1, timeout=20,
             what="Prometheus scraping the worker")
    before = prometheus.value("streamrec_worker_events_consumed_total")
    applied_before = prometheus.value("streamrec_worker_events_applied_total")
    duplicate_before = prometheus.value("streamrec_worker_events_duplicate_total")
    assert None not in (before, applied_before, duplicate_before)
    items = [it["item_id"] for it in data.items]
    sent = 0
    for round_no in range(ROUNDS):
        send_round(settings, items, round_no)
        sent += VALID_PER_ROUND + sum(map(len, BAD.values()))
        wait_for(lambda: prometheus.value("streamrec_worker_events_consumed_total") == before + sent,
                 timeout=30, what=f"round {round_no} consumed, as Prometheus sees it")
        time.sleep(1.5)  # at least one scrape between the rounds: rate() sees two points
    return {"before": before, "applied_before": applied_before, "duplicate_before": duplicate_before, "sent": sent}


def test_prometheus_scrapes_the_worker(stack):
    settings, worker, prometheus, data = stack
    targets = wait_for(lambda: prometheus.api("targets")["activeTargets"], timeout=10, what="the worker target")
    assert [(t["labels"]["job"], t["scrapeUrl"]) for t in targets] == [
        ("streamrec-worker", f"http://127.0.0.1:{settings.web_port}/metrics")]
    wait_for(lambda: prometheus.value('up{job="streamrec-worker"}') == 1, timeout=20, what="the target up")
    versions = prometheus.query("streamrec_worker_model_info == 1")
    assert [r["metric"]["model_version"] for r in versions] == [worker.get("/healthz")[1]["model_version"]]
    assert prometheus.value("streamrec_worker_index_items") == len(data.items)


def test_counts_read_through_prometheus_match_what_was_sent(stack, driven):
    settings, worker, prometheus, data = stack
    sent, before = driven["sent"], driven["before"]
    valid = ROUNDS * VALID_PER_ROUND
    time.sleep(2)  # more scrapes: the count stays exact (nothing counted twice)
    assert prometheus.value("streamrec_worker_events_consumed_total") == before + sent
    # Every valid record is accounted for: applied, or recognised as a redelivery.
    assert prometheus.value("streamrec_worker_events_applied_total + streamrec_worker_events_duplicate_total") \
        == driven["applied_before"] + driven["duplicate_before"] + valid
    # Every known reason is exported from the start (at 0); the ones sent count exactly.
    rejected = prometheus.values("sum by (reason) (streamrec_worker_events_rejected_total)", by="reason")
    assert {reason: n for reason, n in rejected.items() if n} == {
        reason: float(ROUNDS * len(values)) for reason, values in BAD.items()}
    assert set(rejected) >= set(REASONS)
    assert prometheus.value("sum(streamrec_worker_recommendations_published_total)") > 0
    assert prometheus.value("sum(streamrec_worker_freshness_seconds_count)") > 0
    # Every partition's lag is reported, and reaches zero once everything is consumed.
    lags = wait_for(lambda: (lambda v: v if len(v) == settings.topic_partitions and not any(v.values()) else None)(
        prometheus.values("streamrec_worker_consumer_lag_records", by="partition")), timeout=20,
        what="consumer lag of every partition at 0")
    assert set(lags) == {str(p) for p in range(settings.topic_partitions)}
    users = {f"u{i % 6}" for i in range(VALID_PER_ROUND)}
    wait_for(lambda: prometheus.value("streamrec_worker_table_keys") == len(users), timeout=20,
             what=f"table size {len(users)}")


def test_no_fresh_event_is_taken_for_a_redelivery(stack, driven):
    """Nothing was redelivered (one worker, no restart), so every valid event is applied."""
    settings, worker, prometheus, data = stack
    assert prometheus.value("streamrec_worker_events_duplicate_total") == driven["duplicate_before"]
    assert prometheus.value("streamrec_worker_events_applied_total") == \
        driven["applied_before"] + ROUNDS * VALID_PER_ROUND


def test_alert_rules_evaluate_on_live_data(stack, driven):
    settings, worker, prometheus, data = stack

    def rules():
        found = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return found if found and all(rule["health"] != "unknown" for rule in found) else None

    evaluated = wait_for(rules, timeout=20, what="every rule evaluated once")
    broken = {rule["name"]: rule.get("lastError") for rule in evaluated if rule["health"] != "ok"}
    assert not broken, broken
    expected = {rule["alert"] for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
                for rule in group["rules"]}
    assert {rule["name"] for rule in evaluated} == expected

    # Over 1% of the records were invalid: the dead-letter alert is pending for each reason.
    def dead_letter_alerts():
        alerts = prometheus.api("alerts")["alerts"]
        reasons = {a["labels"]["reason"] for a in alerts if a["labels"]["alertname"] == "StreamrecDeadLetterRateHigh"}
        return alerts if reasons == set(BAD) else None

    alerts = wait_for(dead_letter_alerts, timeout=20, what="StreamrecDeadLetterRateHigh for every reason sent")
    raised = {a["labels"]["alertname"] for a in alerts}
    assert not raised & {"StreamrecWorkerDown", "StreamrecNoWorkers", "StreamrecConsumerLagGrowing",
                         "StreamrecWorkersServeDifferentModels", "StreamrecModelSwapRejected"}, raised


def test_dashboard_queries_run_on_prometheus(stack, driven):
    """Every query of the Grafana dashboard is valid PromQL here; the worker's return series (but
    the experiment panels': their series exist only while an experiment runs, and
    tests/integration/test_experiments.py checks those metrics on two workers)."""
    settings, worker, prometheus, data = stack
    for title, expr in queries(dashboard()):
        result = prometheus.query(concrete(expr, rate_interval="30s"))
        names = metric_names(expr)
        if not any(name.startswith(("streamrec_trainer_", "streamrec_worker_experiment_")) for name in names):
            assert result, f"panel {title!r}: {expr} returned nothing"

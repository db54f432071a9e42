"""The Grafana dashboard queries metrics the worker and the trainer really export.

The worker's names are read from a live worker's ``/metrics``; the trainer's
from its registry (``stream/trainer/metrics.py``). The layout checks need no
broker.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "streamrec.json"

# Series each kind of metric family exposes (Prometheus text format).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_names(families: Iterable) -> set[str]:
    """Series names of prometheus_client metric families, whether or not they hold samples yet.

    A labelled metric has no samples before its first label values are used, but
    its family (``# TYPE`` line) is there, so the names are derived from the type.
    """
    names = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The project's metric names a PromQL expression reads."""
    return set(re.findall(r"\b(streamrec_[a-z0-9_]+)\b", expr))


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    out = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of the dashboard."""
    return [(panel["title"], target["expr"]) for panel in panels(board) for target in panel["targets"]]


def concrete(expr: str, rate_interval: str = "1m") -> str:
    """A query with Grafana's variables replaced as Grafana would for 'All' workers."""
    return expr.replace("$__rate_interval", rate_interval).replace("$instance", ".*")


# --- layout (no broker) -----------------------------------------------------------------


def test_dashboard_layout_and_datasource():
    board = dashboard()
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    ids = [p["id"] for p in board["panels"]] + [p["id"] for p in panels(board) if p not in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
    for panel in panels(board):
        assert panel["targets"], f"{panel['title']} has no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"instance"}
    used = {name for _, expr in queries(board) for name in re.findall(r"\$(\w+)", expr)} - {"__rate_interval"}
    assert used <= set(variables), f"queries use undefined variables {used - set(variables)}"


def test_dashboard_has_the_panels_operators_need():
    titles = {panel["title"] for panel in panels(dashboard())}
    assert {"Event rate", "Rejected records by topic and reason", "Freshness", "Retrieval latency",
            "Consumer lag by partition", "Online hit rate", "Model and index versions", "Table size",
            "Trainer runs by result", "Published model quality"} <= titles


def test_dashboard_queries_parse():
    """promtool parses each query (as a recording rule) when it is installed."""
    import shutil
    import tempfile

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (deploy/prometheus/install.sh installs Debian's prometheus)")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": concrete(expr)} for i, (_, expr) in enumerate(queries(dashboard()))
    ]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        done = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- against the code --------------------------------------------------------------------


def test_trainer_panels_name_metrics_the_trainer_exports():
    try:
        from stream.trainer import metrics as trainer_metrics
    except ImportError:
        pytest.skip("stream/trainer/metrics.py does not exist yet: the trainer's panels are not checked")
    exported = exported_names(trainer_metrics.REGISTRY.collect())
    wanted = {name for _, expr in queries(dashboard()) for name in metric_names(expr)
              if name.startswith("streamrec_trainer_")}
    assert wanted, "no panel shows the trainer"
    assert wanted <= exported, f"the trainer exports none of {sorted(wanted - exported)}"
    shown = {family.name for family in trainer_metrics.REGISTRY.collect()
             if exported_names([family]) & wanted}
    assert shown == {family.name for family in trainer_metrics.REGISTRY.collect()}, "a trainer metric has no panel"


@contextlib.contextmanager
def worker_with_catalog(kafka_bootstrap: str, root: Path, data, partitions: int = 2, **settings_fields: Any):
    """Topics of their own, ``data``'s catalogue published and one running worker; topics deleted after.

    Yields ``(settings, worker)``.
    """
    from stream.core.topics import project_topics
    from stream.kafka.admin import delete_topics, ensure_topics
    from stream.kafka.producer import publish_catalog
    from stream.settings import Settings
    from tests.helpers import free_port
    from tests.worker_harness import WorkerProcess

    prefix = f"it{root.name[:4]}-{uuid.uuid4().hex[:10]}."
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, topic_partitions=partitions,
                        data_dir=root / "state", artifacts_dir=root / "artifacts", web_port=free_port(),
                        app_id=f"streamrec-{prefix.rstrip('.')}", **settings_fields)
    ensure_topics(settings)
    publish_catalog(settings, data.items)
    worker = WorkerProcess(settings, root / "worker.log").start()
    try:
        yield settings, worker
    finally:
        worker.stop()
        delete_topics(settings, [t.name for t in project_topics(settings)])


@pytest.fixture(scope="module")
def live_worker(kafka_bootstrap, tmp_path_factory):
    """A worker with a small catalogue, for its /metrics page."""
    from models.data.synthetic import generate_demo_dataset

    data = generate_demo_dataset(n_users=5, n_items=24, events_per_user=2, seed=3)
    with worker_with_catalog(kafka_bootstrap, tmp_path_factory.mktemp("dashboard"), data) as (_, worker):
        yield worker


@pytest.mark.kafka
def test_worker_panels_name_metrics_a_live_worker_exports(live_worker):
    from prometheus_client.parser import text_string_to_metric_families

    status, text = live_worker.get("/metrics")
    assert status == 200, text
    # prometheus_client's creation timestamps (*_created) come as families of their own.
    families = [f for f in text_string_to_metric_families(text)
                if f.name.startswith("streamrec_worker_") and not f.name.endswith("_created")]
    exported = exported_names(families)
    board = dashboard()
    for title, expr in queries(board):
        wanted = {name for name in metric_names(expr) if not name.startswith("streamrec_trainer_")}
        assert wanted <= exported, f"panel {title!r} queries {sorted(wanted - exported)}, which the worker " \
                                   f"does not export"
    shown = {name for _, expr in queries(board) for name in metric_names(expr)}
    missing = sorted(f.name for f in families if not exported_names([f]) & shown)
    assert not missing, f"worker metrics without a panel: {missing}"


@pytest.mark.kafka
def test_image_healthcheck_passes_on_a_live_worker(live_worker, tmp_path):
    from tests.unit.test_compose import DOCKERFILE, heredoc

    script = tmp_path / "healthcheck"
    script.write_text(heredoc(DOCKERFILE.read_text(), "/usr/local/bin/streamrec-healthcheck"))
    done = subprocess.run([sys.executable, str(script), "worker"], env=live_worker.env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_helpers_derive_series_names():
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    Counter("x_events_total", "", ["reason"], registry=registry)  # no samples yet
    Histogram("x_latency_seconds", "", registry=registry)
    assert exported_names(registry.collect()) >= {"x_events_total", "x_latency_seconds_bucket",
                                                  "x_latency_seconds_count", "x_latency_seconds_sum"}
    assert metric_names('sum by (le) (rate(streamrec_a_b_bucket{job="streamrec-worker"}[1m])) / streamrec_c') == {
        "streamrec_a_b_bucket", "streamrec_c"}

"""The docker-compose stack, the image and the Prometheus files agree with each other and with the code.

No Docker engine is needed: the compose file is read as YAML (and validated by
``docker-compose config`` when that tool is installed), the Dockerfile's
embedded scripts are run with this interpreter, and the Prometheus files are
checked and unit-tested with ``promtool`` when it is installed
(deploy/prometheus/install.sh installs both tools).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stream.settings import Settings
from tests.helpers import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"

STREAMREC_SERVICES = ("topics", "worker", "trainer", "producer")
LONG_RUNNING = ("kafka", "worker", "trainer", "prometheus", "grafana")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def prometheus_config() -> dict:
    return yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())


def interpolated(value: object) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default (what a bare shell gets)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))


def mounts(service: dict) -> dict[str, str | None]:
    """Container path -> source (volume name or ``./`` host path, with ``:ro`` when read-only),
    or ``None`` for an anonymous volume."""
    out: dict[str, str | None] = {}
    for spec in service.get("volumes", []):
        parts = spec.split(":")
        if len(parts) == 1:
            out[parts[0]] = None
        else:
            out[parts[1]] = ":".join([parts[0], *parts[2:]])
    return out


def heredoc(text: str, marker: str) -> str:
    """The body of the heredoc opened on the Dockerfile line containing ``marker``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        opened = re.search(r"<<'(\w+)'", line)
        if opened and marker in line:
            end = lines.index(opened.group(1), i + 1)
            return "\n".join(lines[i + 1:end]) + "\n"
    raise LookupError(f"no heredoc on a line with {marker!r}")


# --- services -----------------------------------------------------------------------


def test_every_service_has_a_pinned_image_or_the_project_build(services):
    assert set(services) >= {"kafka", "topics", "worker", "trainer", "prometheus", "grafana"}
    for name, service in services.items():
        if name in STREAMREC_SERVICES:
            build = service["build"]
            assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
            assert build["args"]["VARIANT"] == "${VARIANT:-cpu}", name
            # One tag for all of them: compose builds once and every service runs the same code.
            assert service["image"] == "streamrec:${VARIANT:-cpu}", name
        else:
            assert "build" not in service, name
            image, _, tag = interpolated(service["image"]).rpartition(":")
            assert image and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a version, not {tag!r}"
    assert services["kafka"]["image"].startswith("apache/kafka:")


def test_long_running_services_have_health_checks_and_one_shot_jobs_do_not_restart(services):
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^HEALTHCHECK .*CMD \[\"streamrec-healthcheck\"\]$", dockerfile, re.M)
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2, name
        assert {"interval", "timeout", "retries"} <= set(check), name
        assert services[name]["restart"] == "unless-stopped", name
    # The image's check probes the worker or the trainer; compose names which explicitly.
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "streamrec-healthcheck", "worker"]
    assert services["trainer"]["healthcheck"]["test"] == ["CMD", "streamrec-healthcheck", "trainer"]
    for name in ("topics", "producer"):
        assert services[name]["restart"] == "no", name


def test_depends_on_conditions_match_what_the_dependency_offers(services):
    for name, service in services.items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = spec["condition"]
            assert condition in CONDITIONS, (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which has no check"
            if condition == "service_completed_successfully":
                assert services[dep]["restart"] == "no", f"{dep} is a job {name} waits for: it must not restart"
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in ("worker", "trainer", "producer"):
        assert services[name]["depends_on"] == {"topics": {"condition": "service_completed_successfully"}}, name
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    # Workers are discovered by DNS whenever they appear: Prometheus waits for nothing.
    assert "depends_on" not in services["prometheus"]


def test_environment_keys_are_settings_and_their_values_validate(services, monkeypatch):
    for key in list(os.environ):
        if key.startswith("STREAMREC_"):
            monkeypatch.delenv(key)
    for name in STREAMREC_SERVICES:
        env = services[name]["environment"]
        fields = {}
        for key, value in env.items():
            assert key.startswith("STREAMREC_"), f"{name}: {key} is no streamrec setting"
            field = key.removeprefix("STREAMREC_").lower()
            assert field in Settings.model_fields, f"{name}: {key} is not a field of stream.settings.Settings"
            fields[field] = interpolated(value)
        settings = Settings(**fields)  # raises on a value of the wrong type or range
        assert settings.kafka_bootstrap == ("kafka:9092",), name
        assert settings.data_dir == Path("/var/lib/streamrec/data"), name
        assert settings.artifacts_dir == Path("/var/lib/streamrec/artifacts"), name
    # The image's own defaults agree with the compose file.
    dockerfile = DOCKERFILE.read_text()
    assert "STREAMREC_DATA_DIR=/var/lib/streamrec/data" in dockerfile
    assert "STREAMREC_ARTIFACTS_DIR=/var/lib/streamrec/artifacts" in dockerfile


def test_kafka_listeners_are_consistent(services):
    env = services["kafka"]["environment"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    listeners = dict(part.split("://") for part in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(part.split("://") for part in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(part.split(":") for part in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols)
    assert set(advertised) == set(listeners) - {env["KAFKA_CONTROLLER_LISTENER_NAMES"]}
    assert advertised["PLAINTEXT"] == "kafka:9092"  # what the containers use
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka{listeners['CONTROLLER']}"
    host_port = advertised["EXTERNAL"].rpartition(":")[2]
    assert f"127.0.0.1:{host_port}:{listeners['EXTERNAL'].lstrip(':')}" in services["kafka"]["ports"]
    assert mounts(services["kafka"])[env["KAFKA_LOG_DIRS"]] == "kafka-data"


def test_workers_scale_out(services):
    worker = services["worker"]
    # Anything fixed per container breaks `--scale worker=N`.
    assert not {"container_name", "hostname"} & set(worker)
    for port in worker.get("ports", []):
        assert re.fullmatch(r"(127\.0\.0\.1:)?:?6066", port), f"fixed host port {port!r} clashes between replicas"
    # Each replica's canonical URL must be its own: no fixed STREAMREC_WEB_HOST, and
    # the entrypoint defaults it to the container's hostname.
    assert "STREAMREC_WEB_HOST" not in worker["environment"]
    data = mounts(worker)
    assert data["/var/lib/streamrec/data"] is None, "the table folder must be an anonymous volume (one per replica)"
    assert data["/var/lib/streamrec/artifacts"] == "artifacts:ro"


def test_entrypoint_gives_each_container_its_own_web_host(tmp_path):
    script = tmp_path / "entrypoint"
    script.write_text(heredoc(DOCKERFILE.read_text(), "/usr/local/bin/streamrec-entrypoint"))
    env = {k: v for k, v in os.environ.items() if k != "STREAMREC_WEB_HOST"}
    printed = subprocess.run(["sh", str(script), "sh", "-c", 'echo "$STREAMREC_WEB_HOST"'], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert printed == subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()
    env["STREAMREC_WEB_HOST"] = "worker-7.example"
    printed = subprocess.run(["sh", str(script), "sh", "-c", 'echo "$STREAMREC_WEB_HOST"'], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert printed == "worker-7.example"


def test_healthcheck_script_reports_an_unreachable_worker(tmp_path):
    from tests.helpers import free_port

    script = tmp_path / "healthcheck"
    script.write_text(heredoc(DOCKERFILE.read_text(), "/usr/local/bin/streamrec-healthcheck"))
    env = {**os.environ, "STREAMREC_WEB_HOST": "127.0.0.1", "STREAMREC_WEB_PORT": str(free_port())}
    down = subprocess.run([sys.executable, str(script), "worker"], env=env, capture_output=True, text=True)
    assert down.returncode == 1 and "worker unhealthy at 127.0.0.1" in down.stdout
    # Not a worker or trainer (a one-shot job): healthy while it runs.
    assert subprocess.run([sys.executable, str(script), "create-topics"], env=env).returncode == 0


def test_trainer_and_workers_share_the_artifacts_volume(compose, services):
    artifacts = "/var/lib/streamrec/artifacts"
    assert mounts(services["trainer"])[artifacts] == "artifacts"  # the writer
    assert mounts(services["worker"])[artifacts] == "artifacts:ro"  # the readers
    declared = set(compose["volumes"])
    assert declared == {"kafka-data", "artifacts", "prometheus-data", "grafana-data"}
    used = set()
    for name, service in services.items():
        for target, source in mounts(service).items():
            if source is None:
                continue
            source = source.removesuffix(":ro")
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                used.add(source)
    assert used == declared
    assert mounts(services["prometheus"])["/prometheus"] == "prometheus-data"
    assert mounts(services["grafana"])["/var/lib/grafana"] == "grafana-data"


# --- Prometheus and Grafana wiring -------------------------------------------------------


def test_prometheus_scrapes_every_worker_replica_and_the_trainer(services, prometheus_config):
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    worker_sd = jobs["streamrec-worker"]["dns_sd_configs"]
    assert worker_sd == [{"names": ["worker"], "type": "A", "port": int(services["worker"]["environment"][
        "STREAMREC_WEB_PORT"]), "refresh_interval": "15s"}]
    trainer_env = services["trainer"]["environment"]
    assert trainer_env["STREAMREC_TRAINER_HOST"] == "0.0.0.0"
    assert jobs["streamrec-trainer"]["static_configs"] == [
        {"targets": [f"trainer:{trainer_env['STREAMREC_TRAINER_PORT']}"]}]
    mounted = mounts(services["prometheus"])
    config_path = next(arg.split("=", 1)[1] for arg in services["prometheus"]["command"]
                       if arg.startswith("--config.file="))
    assert mounted[config_path] == "./deploy/prometheus/prometheus.yml:ro"
    for rule_file in prometheus_config["rule_files"]:
        assert mounted[str(Path(config_path).parent / rule_file)] == f"./deploy/prometheus/{rule_file}:ro"


def test_grafana_provisions_the_datasource_and_dashboards(services):
    mounted = mounts(services["grafana"])
    assert mounted["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning:ro"
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    prometheus_port = services["prometheus"]["ports"][0].rpartition(":")[2]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{prometheus_port}"
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/streamrec.yml").read_text())
    (provider,) = providers["providers"]
    path = provider["options"]["path"]
    assert mounted[path] == "./deploy/grafana/dashboards:ro"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path + "/") and (GRAFANA_DIR / "dashboards" / Path(home).name).is_file()
    dashboard = (GRAFANA_DIR / "dashboards" / Path(home).name).read_text()
    assert f'"uid": "{source["uid"]}"' in dashboard


# --- the image ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_image_requirements_hold_exactly_one_faiss(variant, tmp_path):
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    script = heredoc(DOCKERFILE.read_text(), "requirements.txt")
    out = subprocess.run([sys.executable, "-", variant], input=script, cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    names = [re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower() for line in out]
    faiss = [n for n in names if n.startswith("faiss")]
    assert faiss == (["faiss-cpu"] if variant == "cpu" else ["faiss-gpu-cu12-cuvs"])
    # The CPU variant installs torch from PyTorch's CPU index first, picked by this pattern.
    assert len([line for line in out if re.match(r"^torch[^a-z_-]", line)]) == 1
    assert len(names) == len(set(names))


def test_dockerfile_is_multi_stage_non_root_with_a_variant_argument():
    dockerfile = DOCKERFILE.read_text()
    assert dockerfile.startswith("# syntax=docker/dockerfile:1")  # heredocs need BuildKit's frontend
    assert re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.M) == ["build", "runtime"]
    assert re.search(r"^USER streamrec$", dockerfile, re.M)
    assert dockerfile.count("ARG VARIANT=cpu") == 2  # each stage declares the arguments it reads
    assert 'ENTRYPOINT ["streamrec-entrypoint"]' in dockerfile
    assert re.search(r"^COPY --from=build /opt/streamrec /opt/streamrec$", dockerfile, re.M)


# --- external tools ---------------------------------------------------------------------


def _compose_tool() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    tool = _compose_tool()
    if tool is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed (deploy/prometheus/install.sh)")
    path = COMPOSE
    if tool == ["docker-compose"]:
        # Debian's docker-compose 1.29 predates the top-level `name` key (Compose v2
        # reads it); everything else is checked against its schema.
        text = re.sub(r"^name: .*\n", "", COMPOSE.read_text(), flags=re.M)
        path = tmp_path / "docker-compose.yml"
        path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    done = subprocess.run([*tool, "--project-directory", str(REPO), "-p", "streamrec", "-f", str(path),
                           "--profile", "demo", "config"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == set(yaml.safe_load(COMPOSE.read_text())["services"])
    assert resolved["services"]["worker"]["environment"]["STREAMREC_TOPIC_PARTITIONS"] == "8"


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (deploy/prometheus/install.sh installs Debian's prometheus)")
    return tool


def test_promtool_checks_config_and_rules():
    done = subprocess.run([_promtool(), "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alert_rules_pass_their_unit_tests():
    done = subprocess.run([_promtool(), "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested_labelled_and_names_real_metrics():
    from stream.runtime import metrics
    from tests.integration.test_dashboard import exported_names, metric_names

    known = exported_names(metrics.REGISTRY.collect()) | {"up"}
    try:
        from stream.trainer import metrics as trainer_metrics
    except ImportError:
        trainer_metrics = None
    if trainer_metrics is not None:
        known |= exported_names(trainer_metrics.REGISTRY.collect())
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    cases = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    tested = {check["alertname"] for case in cases for check in case["alert_rule_test"] if check.get("exp_alerts")}
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    # What the stack must page on (the deployment issue's list).
    assert {"StreamrecConsumerLagGrowing", "StreamrecDeadLetterRateHigh", "StreamrecFreshnessP99High",
            "StreamrecModelStale", "StreamrecWorkerDown", "StreamrecNoWorkers"} <= names
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no case in alerts.test.yml where it fires"
        used = metric_names(rule["expr"])
        if trainer_metrics is None:
            used = {m for m in used if not m.startswith("streamrec_trainer_")}
        assert used <= known, f"{rule['alert']} names metrics nothing exports: {used - known}"

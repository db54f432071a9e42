"""Docs and deployment files stay true to the code."""

import re

import yaml

from stream.settings import Settings
from tests.helpers import REPO


def test_readme_documents_every_setting():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`(STREAMREC_[A-Z0-9_]+)`", readme))
    for name in Settings.model_fields:
        assert f"STREAMREC_{name.upper()}" in documented, f"README lacks STREAMREC_{name.upper()}"


def test_readme_opens_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_compose_wires_broker_topics_and_worker():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "healthcheck" in services["kafka"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    for name in ("topics", "worker"):
        env = services[name]["environment"]
        assert env["STREAMREC_KAFKA_BOOTSTRAP"] == "kafka:9092"
        for key in env:
            assert key.removeprefix("STREAMREC_").lower() in Settings.model_fields, key
        assert (REPO / services[name]["build"]["dockerfile"]).is_file()


def test_dockerfile_runs_as_non_root():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^USER streamrec$", dockerfile, re.M)
    assert dockerfile.count("FROM ") >= 2  # multi-stage

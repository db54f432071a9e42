"""The Kafka clients and a worker, logging at DEBUG against a real SASL/PLAIN broker, write no password.

The session broker speaks PLAINTEXT, so this module starts its own broker (the jars
deploy/kafka/kafka.sh installs) with a SASL_PLAINTEXT listener that knows one user.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from models.data.synthetic import generate_demo_dataset
from stream.cli import MASK, mask_secrets_in_logs, secret_renderings
from stream.kafka.admin import ensure_topics
from stream.kafka.producer import EventProducer, publish_catalog
from stream.kafka.reader import read_range
from stream.settings import Settings
from tests.helpers import KAFKA_SH, REPO, free_port
from tests.worker_harness import WorkerProcess

pytestmark = pytest.mark.kafka

USER = "streamrec"
PASSWORD = "sasl-pw-" + uuid.uuid4().hex  # only in the broker's JAAS line and the settings
TOKEN = "api-token-" + uuid.uuid4().hex
BROKER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
required username="broker" password="broker-pw" user_broker="broker-pw" user_{user}="{password}";
log.dirs={data}/log
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
"""


def leaks(text: str) -> list[str]:
    return [r for r in secret_renderings([PASSWORD, TOKEN]) if r in text]


@pytest.fixture(scope="module")
def sasl_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single-node KRaft broker whose client listener is SASL_PLAINTEXT (PLAIN)."""
    installed = subprocess.run([str(KAFKA_SH), "install"], capture_output=True, text=True)
    if installed.returncode != 0:
        pytest.skip(f"the broker's jars are not installed: {installed.stderr.strip()}")
    cache = Path(os.environ.get("STREAMREC_KAFKA_CACHE", Path.home() / ".cache" / "streamrec"))
    libs = cache / f"kafka-{os.environ.get('STREAMREC_KAFKA_VERSION', '4.4.0')}" / "libs"
    data = tmp_path_factory.mktemp("sasl-kafka")
    (data / "logs").mkdir()
    port, controller = free_port(), free_port()
    config = data / "server.properties"
    config.write_text(BROKER_PROPERTIES.format(port=port, controller=controller, data=data, user=USER,
                                               password=PASSWORD))
    java = ["java", "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={data / 'logs'}", f"-Dlog4j2.configurationFile={REPO / 'deploy/kafka/log4j2.yaml'}",
            "-cp", f"{libs}/*"]
    cluster = subprocess.run([*java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True,
                             check=True).stdout.strip()
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(config)],
                   capture_output=True, text=True, check=True)
    out = (data / "logs" / "stdout.log").open("wb")
    broker = subprocess.Popen([*java, "kafka.Kafka", str(config)], stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    log = data / "logs" / "server.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and "Kafka Server started" in log.read_text(errors="replace")):
        if broker.poll() is not None or time.monotonic() > deadline:
            broker.kill()
            pytest.fail("the SASL broker did not start:\n" + (log.read_text(errors="replace")[-4000:]
                                                               if log.exists() else ""))
        time.sleep(0.3)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(broker.pid, signal.SIGKILL)
            broker.wait(timeout=10)
        out.close()


@pytest.fixture
def sasl_settings(sasl_bootstrap: str, tmp_path: Path) -> Settings:
    prefix = f"its-{uuid.uuid4().hex[:10]}."
    return Settings(kafka_bootstrap=sasl_bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                    kafka_sasl_mechanism="PLAIN", kafka_sasl_username=USER, kafka_sasl_password=PASSWORD,
                    api_token=TOKEN, topic_prefix=prefix, topic_partitions=2, data_dir=tmp_path / "state",
                    artifacts_dir=tmp_path / "artifacts", web_port=free_port(),
                    app_id=f"streamrec-{prefix.rstrip('.')}", log_level="DEBUG")


@pytest.fixture
def restore_record_factory():
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def test_kafka_python_and_aiokafka_at_debug_log_no_password(sasl_settings, caplog, restore_record_factory):
    settings = sasl_settings
    mask_secrets_in_logs(settings.secret_values())  # what streamrec's entry point does
    events = [{"user_id": f"u{i}", "item_id": "i1", "event_type": "click", "timestamp_ms": 1767225600000 + i}
              for i in range(5)]
    with caplog.at_level(logging.DEBUG):
        ensure_topics(settings)  # kafka-python's admin client
        with EventProducer(settings) as producer:
            producer.send_many(events)
        read = asyncio.run(read_range(settings, settings.topic("events")))  # aiokafka
    assert len(read) == len(events)  # they did authenticate
    text = caplog.text
    # The lines that carried the password before the mask, and proof of the SASL exchange.
    assert "Starting KafkaAdminClient with configuration" in text and "SaslAuthenticateRequest" in text
    assert f"Authenticated as {USER} via PLAIN" in text and MASK in text
    assert not leaks(text), [line for line in text.splitlines() if leaks(line)][:5]


def test_a_worker_at_debug_on_sasl_logs_no_password(sasl_settings, tmp_path):
    settings = sasl_settings
    ensure_topics(settings)
    data = generate_demo_dataset(n_users=8, n_items=12, events_per_user=3, seed=5)
    publish_catalog(settings, data.items)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.start()
        with EventProducer(settings) as producer:
            producer.send_many(data.events)
        user = data.events[0]["user_id"]
        deadline = time.monotonic() + 60
        while worker.get(f"/recommendations/{user}")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.get(f"/recommendations/{user}")[0] == 200
        assert worker.get(f"/recommendations/{user}", auth=False)[0] == 401
    finally:
        worker.stop()
    text = (tmp_path / "worker.log").read_text(errors="replace")
    # It logged at DEBUG, aiokafka's SASL/PLAIN request too (b'user\x00user\x00password' unmasked).
    assert "[DEBUG]" in text and "SaslAuthenticateRequest" in text and MASK in text, text[-2000:]
    assert f"Authenticated as {USER} via PLAIN" in text
    assert not leaks(text), [line for line in text.splitlines() if leaks(line)][:5]

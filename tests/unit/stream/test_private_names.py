"""stream.runtime.private against the real installed Faust, mode and aiokafka (no fakes), and the
worker's refusal of other releases.

The glue's own unit tests (test_offsets, test_batch_feed, test_state_store) run on fake consumers
and stores, so they would stay green on a Faust release that renamed what the glue touches: these
tests are the ones that fail then.
"""

import ast
import asyncio
import dataclasses
import os
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import aiokafka
import faust
import pytest
from faust.transport.consumer import Consumer, Fetcher
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stream.runtime import faust_fixes, private
from stream.runtime.private import PINNED, PRIVATE_NAMES, PrivateName, UnsupportedRuntime, check

REPO = Path(__file__).resolve().parents[3]
NO_BROKER = "127.0.0.1:1"  # nothing here is ever started


def real_instances(datadir: Path) -> dict[str, object]:
    """A real object of every owner whose entries are instance attributes, built without a broker."""

    async def build() -> dict[str, object]:
        app = faust.App("private-names", broker=f"kafka://{NO_BROKER}", store="rocksdb://",
                        datadir=str(datadir), autodiscover=False)
        table = app.Table("t", partitions=1)
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=NO_BROKER, transactional_id="private-names")
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=NO_BROKER)
        try:
            return {
                "faust.transport.consumer.Consumer": app.consumer,
                "faust.transport.drivers.aiokafka.Consumer": app.consumer,
                "faust.transport.consumer.Fetcher": Fetcher(app),
                "faust.stores.rocksdb.Store": table.data,
                "faust.stores.rocksdb.RocksDBOptions": table.data.rocksdb_options,
                "aiokafka.producer.producer.AIOKafkaProducer": producer,
                "aiokafka.producer.message_accumulator.MessageAccumulator": producer._message_accumulator,
                "aiokafka.producer.transaction_manager.TransactionManager": producer._txn_manager,
                "aiokafka.consumer.consumer.AIOKafkaConsumer": consumer,
            }
        finally:
            await producer.stop()  # never started: this only marks it closed
            await consumer.stop()

    return asyncio.run(build())


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    return real_instances(tmp_path_factory.mktemp("faust"))


def test_every_name_holds_in_the_installed_libraries(instances):
    assert check(PRIVATE_NAMES, instances) == []


def test_every_instance_attribute_is_checked_on_a_real_instance(instances):
    # Not on the class-source fallback that the worker's start-up check uses.
    assert {e.owner for e in PRIVATE_NAMES if e.instance} <= instances.keys()


def test_the_worker_check_without_instances_finds_them_in_init():
    assert check(PRIVATE_NAMES) == []


def test_every_replaced_name_and_called_method_has_a_pinned_signature():
    assert all(e.signature for e in PRIVATE_NAMES if e.kind == "replace")
    assert all(e.signature for e in PRIVATE_NAMES if e.kind == "call" and e.name.startswith("_"))


def test_the_replaced_commit_check_still_checks_once_installed(monkeypatch, instances):
    monkeypatch.setattr(Consumer, "_new_offset", Consumer._new_offset)  # restored after the test
    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer",
                        AIOKafkaConsumerThread._create_worker_consumer)
    faust_fixes.apply()
    assert Consumer._new_offset is faust_fixes._new_offset
    assert AIOKafkaConsumerThread._create_worker_consumer is faust_fixes._create_worker_consumer
    assert check(PRIVATE_NAMES, instances) == []


def test_the_worker_consumer_fetches_with_the_configured_wait(monkeypatch, tmp_path):
    """Faust builds its consumer with fetch_max_wait_ms=1500; the fix gives the one Faust really
    builds (and so its Fetcher, which AIOKafkaConsumer.start makes from it) the configured wait."""
    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer",
                        AIOKafkaConsumerThread._create_worker_consumer)
    monkeypatch.setattr(faust_fixes, "_fetch_max_wait_ms", None)

    async def built_wait() -> int:
        app = faust.App("fetch-wait", broker=f"kafka://{NO_BROKER}", datadir=str(tmp_path), autodiscover=False)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(built_wait()) == 1500  # Faust's own, as pinned
    faust_fixes.apply(fetch_max_wait_ms=50)
    assert asyncio.run(built_wait()) == 50


def _misspelled(entry: PrivateName) -> PrivateName:
    return dataclasses.replace(entry, name=entry.name + "x")


def test_the_checker_reports_a_misspelled_entry(instances):
    """The test of the test: a name that is not there fails, whichever way it is looked up."""
    by_name = {(e.owner, e.name): e for e in PRIVATE_NAMES}
    class_level = by_name[("faust.transport.consumer.Consumer", "_new_offset")]
    on_instance = by_name[("faust.transport.consumer.Consumer", "_acked")]
    module_level = by_name[("aiokafka.producer.message_accumulator", "BatchBuilder")]
    for bad in (class_level, on_instance, module_level):
        names = [*PRIVATE_NAMES, _misspelled(bad)]
        for found in (check(names, instances), check(names)):
            assert len(found) == 1 and found[0].startswith(f"{bad.label}x ("), found


def test_the_checker_reports_changed_signatures_values_kinds_and_owners(instances):
    by_name = {(e.owner, e.name): e for e in PRIVATE_NAMES}
    drain = by_name[("faust.transport.consumer.Consumer", "_drain_messages")]
    id_format = by_name[("faust.transport.consumer.TransactionManager", "transactional_id_format")]
    acked = by_name[("faust.transport.consumer.Consumer", "_acked")]
    bad = [
        dataclasses.replace(drain, signature="(self, fetcher) -> None"),
        dataclasses.replace(id_format, value="{group_id}-{tpg.partition}"),
        dataclasses.replace(acked, kind="call"),  # a list is not callable
        dataclasses.replace(acked, owner="faust.transport.consumer.Consumr"),
    ]
    found = check(bad, instances)
    assert len(found) == 4
    assert "signature changed" in found[0] and "value changed" in found[1] and "not callable" in found[2]
    assert "cannot be checked" in found[3]
    wrong_instance = check([acked], {acked.owner: object()})
    assert len(wrong_instance) == 1 and "not a faust.transport.consumer.Consumer" in wrong_instance[0]


def _private_attributes(path: Path) -> set[str]:
    """Private attribute names ``path`` reads on objects other than ``self`` (getattr included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.add(node.attr)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_")):
            found.add(node.args[1].value)
    return found


def test_the_list_names_every_private_attribute_the_runtime_touches():
    listed = {e.name for e in PRIVATE_NAMES}
    unlisted = {}
    for path in sorted((REPO / "stream" / "runtime").glob("*.py")):
        missing = _private_attributes(path) - listed
        if missing:
            unlisted[path.name] = sorted(missing)
    assert unlisted == {}, "private names used but not listed in stream/runtime/private.py"


def test_no_room_but_the_runtime_touches_private_attributes():
    outside = {}
    for path in sorted((REPO / "stream").rglob("*.py")):
        if "runtime" in path.relative_to(REPO / "stream").parts:
            continue
        found = _private_attributes(path)
        if found:
            outside[str(path.relative_to(REPO))] = sorted(found)
    assert outside == {}


# --- the pins and the worker's refusal of other releases ----------------------------------------

def test_pyproject_pins_exactly_the_checked_releases():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in dependencies:
        name, sep, pinned = dep.partition("==")
        if sep:
            pins[name.split("[")[0].strip()] = pinned.strip()
    assert {dist: pins.get(dist) for dist in PINNED} == dict(PINNED)


def test_the_installed_releases_are_the_pinned_ones():
    assert private.version_problems() == []
    private.require_supported_runtime()


def test_the_worker_refuses_other_releases_naming_the_pinned_ones(monkeypatch):
    installed = {**PINNED, "faust-streaming": "0.16.0"}
    monkeypatch.setattr(private, "version", installed.__getitem__)
    with pytest.raises(UnsupportedRuntime) as refused:
        private.require_supported_runtime()
    message = str(refused.value)
    assert "faust-streaming==0.15.3, mode-streaming==0.7.1, aiokafka==0.14.0" in message
    assert "faust-streaming 0.16.0 (pinned 0.15.3)" in message
    assert "mode-streaming 0.7.1" not in message  # only what differs is named as installed


def test_a_missing_distribution_is_refused(monkeypatch):
    def lookup(dist):
        if dist == "mode-streaming":
            raise PackageNotFoundError(dist)
        return PINNED[dist]

    monkeypatch.setattr(private, "version", lookup)
    assert private.version_problems() == ["mode-streaming not installed (pinned 0.7.1)"]
    with pytest.raises(UnsupportedRuntime, match="mode-streaming not installed"):
        private.require_supported_runtime()


REFUSED_WORKER = """
import sys
from stream.runtime import private
private.version = lambda dist: "0.0.1"
sys.argv = ["streamrec", "worker"]
from stream.cli import main
try:
    main()
finally:
    from faust.transport.consumer import Consumer
    print("patched" if Consumer._new_offset.__module__.startswith("stream.") else "unpatched")
"""


def test_streamrec_worker_exits_with_the_message_before_patching_anything(tmp_path):
    env = {**os.environ, "STREAMREC_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", REFUSED_WORKER], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("streamrec: the worker runs only on faust-streaming==0.15.3, "
                                 "mode-streaming==0.7.1, aiokafka==0.14.0"), out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout.split() == ["unpatched"] and not (tmp_path / "data").exists()

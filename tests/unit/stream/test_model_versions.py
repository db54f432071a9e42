"""The worker's model-updates handling: at start-up the newest announced version that verifies
serves (walking back past bad ones), later fetches the same way down to the version served, a
refusal never stops serving, every refusal is counted; and model_from_artifact's agreement checks.

The worker here is built without Faust (``Worker.__new__``): only the attributes the model-version
code reads are set, and versions are real artifacts in a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.faults.versions import HOSTILE_FOLDERS, HOSTILE_REASONS, copy_version, remanifest
from models.artifacts import ArtifactError, save_artifact
from models.train.config import TrainConfig
from models.train.demo import demo_split
from models.train.loop import train_two_tower
from stream.core.items import parse_item
from stream.core.records import Record
from stream.runtime import metrics
from stream.runtime.worker import Worker
from stream.serving.model import ModelHolder, bootstrap_model, model_from_artifact
from stream.settings import Settings

KEY = "unit-test-artifact-key-0123456789"


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return train_two_tower(demo_split(n_users=50, n_items=30),
                           TrainConfig(tower="mean", dim=8, epochs=1, max_steps=2, content="none", progress=False))


def _index_builder(vectors: np.ndarray, ids: tuple[str, ...], folder: Path) -> None:
    from index import IndexConfig, build_index, save_index

    save_index(build_index(vectors, np.arange(len(ids), dtype=np.int64), IndexConfig(kind="flat")), folder,
               overwrite=True)


@pytest.fixture
def artifacts(trained, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    save_artifact(trained, root, version="good", index_builder=_index_builder, key=KEY.encode())
    return root


def make_worker(artifacts: Path, key: str | None = KEY) -> Worker:
    worker = Worker.__new__(Worker)
    worker.settings = Settings(artifacts_dir=artifacts, artifact_key=key, index_kind="flat")
    worker.holder = ModelHolder()
    worker.catalog = {}
    worker._deleted = set()
    worker._catalog_changes = []
    worker._loading = None
    worker._catalog_read = asyncio.Event()
    worker._versions_walked = asyncio.Event()
    worker._startup_announcements = {}
    worker._startup_experiment = None
    worker.experiments = {}
    worker._updates_done = {}
    worker.dead_lettered = []

    async def dead_letter_feed(topic, rejected):
        worker.dead_lettered += rejected

    worker._dead_letter_feed = dead_letter_feed
    worker._serve = lambda model: worker.holder.swap(model)  # metrics and the heap are not what is tested here
    return worker


def announcement(offset: int, version, **fields) -> Record:
    value = None if version is None else json.dumps({"version": version, "created_ms": 1, **fields}).encode()
    return Record("model-updates", 0, offset, b"v", value, 0)


def experiment(offset: int, name: str, arms, stopped_ms=None, promoted=None, started_ms=5) -> Record:
    record = {"name": name, "arms": [{"name": a, "version": v, "share": s} for a, v, s in arms],
              "started_ms": started_ms, "stopped_ms": stopped_ms, "promoted": promoted}
    return Record("model-updates", 0, offset, f"experiment:{name}".encode(), json.dumps({"experiment": record}).encode(), 0)


AB = [("control", "good", 0.5), ("treatment", "second", 0.5)]


def arms(worker: Worker) -> dict[str, str]:
    return {name: m.model_version for name, m in worker.holder.serving.arms.items()}


def rejected() -> float:
    return metrics.MODEL_SWAPS.labels("rejected")._value.get()


def serving(worker: Worker) -> str | None:
    return worker.holder.current.model_version if worker.holder.current is not None else None


def start(worker: Worker, records: list[Record]) -> None:
    async def go():
        await worker._on_announcements(records)
        await worker._on_updates_caught_up()

    asyncio.run(go())


def test_a_starting_worker_walks_back_to_the_newest_version_that_verifies(artifacts: Path, tmp_path: Path) -> None:
    HOSTILE_FOLDERS["tampered"](artifacts, "good", "tampered", KEY.encode(), tmp_path)
    copy_version(artifacts, "good", "unsigned", None)
    worker = make_worker(artifacts)
    before = rejected()
    start(worker, [announcement(0, "good"), announcement(1, "tampered"), announcement(2, "unsigned"),
                   announcement(3, "never-written"), announcement(4, "../good"), announcement(5, None)])
    assert serving(worker) == "good"
    assert worker._versions_walked.is_set()
    # three versions refused, two records refused (a path-like version, a tombstone)
    assert rejected() - before == 5
    assert [record.offset for record, _, _ in worker.dead_lettered] == [4, 5]


def test_a_starting_worker_with_no_good_version_serves_nothing_so_the_bootstrap_serves(artifacts: Path) -> None:
    worker = make_worker(artifacts)
    start(worker, [announcement(0, "never-written"), announcement(1, "also-missing")])
    assert worker.holder.current is None and worker._versions_walked.is_set()


def test_the_announced_path_is_never_read(artifacts: Path, tmp_path: Path) -> None:
    elsewhere = copy_version(artifacts, "good", "elsewhere", KEY.encode(), dest_root=tmp_path / "outside")
    worker = make_worker(artifacts)
    start(worker, [announcement(0, "elsewhere", path=str(elsewhere))])
    assert worker.holder.current is None


def test_later_fetches_walk_back_down_to_the_version_served(artifacts: Path, tmp_path: Path) -> None:
    worker = make_worker(artifacts)
    start(worker, [announcement(0, "good")])
    copy_version(artifacts, "good", "second", KEY.encode())
    copy_version(artifacts, "good", "mis-signed", b"not the worker's key at all....")
    asyncio.run(worker._on_announcements([announcement(1, "second"), announcement(2, "mis-signed"),
                                          announcement(3, "gone")]))
    assert serving(worker) == "second"
    # Nothing newer verifies: the version served stays, and an older good one is not gone back to.
    before = rejected()
    asyncio.run(worker._on_announcements([announcement(4, "good"), announcement(5, "second"),
                                          announcement(6, "mis-signed")]))
    assert serving(worker) == "second" and rejected() - before == 1
    # Replayed records (the feed reconnected and read from the beginning again) are ignored.
    asyncio.run(worker._on_announcements([announcement(0, "good"), announcement(1, "second")]))
    assert serving(worker) == "second"


@pytest.mark.parametrize("kind", sorted(HOSTILE_FOLDERS))
def test_every_hostile_folder_is_refused_and_the_current_version_keeps_serving(artifacts: Path, tmp_path: Path,
                                                                               kind: str, caplog) -> None:
    HOSTILE_FOLDERS[kind](artifacts, "good", "hostile", KEY.encode(), tmp_path / "outside")
    worker = make_worker(artifacts)
    start(worker, [announcement(0, "good")])
    before = rejected()
    with caplog.at_level("ERROR", logger="stream.runtime.worker"):
        asyncio.run(worker._on_announcements([announcement(1, "hostile")]))
    assert serving(worker) == "good" and rejected() - before == 1
    line = next(r.getMessage() for r in caplog.records if "model version rejected version=hostile" in r.getMessage())
    assert line.split("reason=", 1)[1].split(" ", 1)[0] in HOSTILE_REASONS[kind], line


def test_without_a_key_unsigned_versions_load_and_checksums_still_count(artifacts: Path, tmp_path: Path) -> None:
    copy_version(artifacts, "good", "unsigned", None)
    HOSTILE_FOLDERS["tampered"](artifacts, "good", "tampered", None, tmp_path)
    worker = make_worker(artifacts, key=None)
    start(worker, [announcement(0, "unsigned"), announcement(1, "tampered")])
    assert serving(worker) == "unsigned"


def test_items_taken_down_and_catalogue_changes_during_the_load_reach_the_new_version(artifacts: Path) -> None:
    worker = make_worker(artifacts)
    worker.catalog = {"new-1": parse_item({"item_id": "new-1", "title": "Fresh", "tags": ["jazz"]}).encode()}
    known = json.loads((artifacts / "good" / "items.json").read_text())
    worker._deleted = {known[0]}
    start(worker, [announcement(0, "good")])
    model = worker.holder.current
    assert model.has_item("new-1") and not model.has_item(known[0]) and model.has_item(known[1])
    assert model.titles["new-1"] == "Fresh"


def test_model_from_artifact_refuses_an_index_that_disagrees_with_the_ids(artifacts: Path, trained) -> None:
    folder = artifacts / "good"
    items = json.loads((folder / "items.json").read_text())
    # An index over one item fewer, every checksum rewritten and the manifest signed: only the
    # agreement of ids, vectors and index catches it.
    import shutil

    shutil.rmtree(folder / "index")
    (folder / "index").mkdir()
    _index_builder(trained.item_embeddings[:-1], tuple(items[:-1]), folder / "index")
    remanifest(folder, KEY.encode())
    with pytest.raises(ArtifactError) as err:
        model_from_artifact(artifacts, "good", key=KEY.encode())
    assert err.value.reason == "size_mismatch"


def test_model_from_artifact_serves_a_good_version(artifacts: Path) -> None:
    model = model_from_artifact(artifacts, "good", key=KEY.encode())
    assert model.model_version == "good" and model.n_items == len(model.index.ids())
    assert bootstrap_model([]).model_version == "content-v0"


def test_a_trained_version_serves_users_whose_history_holds_items_it_was_not_trained_on(artifacts: Path) -> None:
    # Items published after training get content vectors and positions past the towers' id table:
    # a history holding one crashed the batch (an id-embedding lookup out of range), and the
    # redelivered batch crashed the restarted worker again.
    from stream.core.state import UserState, apply_event

    model = model_from_artifact(artifacts, "good", key=KEY.encode())
    trained_item = model.item_ids[0]
    assert model.add_items([{"item_id": "cold-1", "title": "New", "tags": ["jazz"]}]) == 1
    only_cold, mixed = UserState(), UserState()
    apply_event(only_cold, "cold-1", "play", 1_000, None, 0, 50)
    for offset, item in enumerate([trained_item, "cold-1"]):
        apply_event(mixed, item, "play", 2_000 + offset, None, offset, 50)
    history = model.histories([only_cold.history, mixed.history, [[trained_item, "play", 1, 1.0]]])
    vectors = model.vectors_of(history)
    assert vectors[0] is None  # nothing the towers know: served trending items, as a new user is
    np.testing.assert_allclose(vectors[1], vectors[2], atol=1e-6)  # the cold item is left out of the tower's input


def test_the_worker_keeps_catalogue_records_at_their_own_size() -> None:
    # orjson's output keeps a 4 KB buffer per bytes object: a million catalogue records held as
    # such took 5.6 GB in the memory bench, against ~0.3 GB as exact-size copies.
    import tracemalloc

    worker = Worker.__new__(Worker)
    worker.catalog, worker._deleted, worker._catalog_changes, worker._loading = {}, set(), [], None
    worker.holder = ModelHolder()
    records = [Record("items", 0, n, f"i{n}".encode(), json.dumps({"item_id": f"i{n}", "title": "t" * 50}).encode(),
                      0) for n in range(2000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        asyncio.run(worker._on_items(records))
        per_item = (tracemalloc.get_traced_memory()[0] - before) / len(records)
    finally:
        tracemalloc.stop()
    assert len(worker.catalog) == 2000 and parse_item(worker.catalog["i7"]).title == "t" * 50
    assert per_item < 1024, per_item


def test_an_experiment_record_serves_each_arm_from_its_version_and_a_stop_promotes(artifacts: Path) -> None:
    copy_version(artifacts, "good", "second", KEY.encode())
    worker = make_worker(artifacts)
    start(worker, [announcement(0, "good")])
    asyncio.run(worker._on_announcements([experiment(1, "ab", AB)]))
    assert serving(worker) == "good" and worker.holder.experiment.name == "ab"
    assert arms(worker) == {"control": "good", "treatment": "second"}
    assert worker.holder.serving.arms["control"] is worker.holder.current  # the served version is not loaded twice
    users = [f"u{i}" for i in range(200)]
    by_arm = {u: worker.holder.serving.model_for(u)[1] for u in users}
    assert {worker.holder.experiment.arm_of(u).name for u in users} == set(by_arm.values()) == {"control", "treatment"}
    asyncio.run(worker._on_announcements([experiment(2, "ab", AB, stopped_ms=9, promoted="treatment")]))
    assert worker.holder.experiment is None and serving(worker) == "second"
    assert worker.experiments["ab"].promoted == "treatment"


def test_a_restarted_worker_serves_the_experiment_in_force_and_a_promotion_as_an_announcement(artifacts: Path) -> None:
    copy_version(artifacts, "good", "second", KEY.encode())
    copy_version(artifacts, "good", "third", KEY.encode())
    running = make_worker(artifacts)
    start(running, [announcement(0, "good"), experiment(1, "ab", AB), announcement(2, "third")])
    # The newest version serves by default; the experiment's arms keep theirs.
    assert serving(running) == "third" and arms(running) == {"control": "good", "treatment": "second"}
    promoted = make_worker(artifacts)
    start(promoted, [announcement(0, "good"), experiment(1, "ab", AB), announcement(2, "third"),
                     experiment(3, "ab", AB, stopped_ms=9, promoted="treatment")])
    # The stop that promoted "second" announced it after "third": it is the newest.
    assert promoted.holder.experiment is None and serving(promoted) == "second"
    stopped = make_worker(artifacts)
    start(stopped, [announcement(0, "good"), experiment(1, "ab", AB), experiment(2, "ab", AB, stopped_ms=9)])
    assert stopped.holder.experiment is None and serving(stopped) == "good"


def test_an_experiment_whose_version_does_not_load_is_refused_and_serving_goes_on(artifacts: Path) -> None:
    worker = make_worker(artifacts)
    start(worker, [announcement(0, "good")])
    before = metrics.EXPERIMENT_CHANGES.labels("rejected")._value.get()
    asyncio.run(worker._on_announcements([experiment(1, "ab", [("control", "good", 0.5), ("t", "missing", 0.5)]),
                                          experiment(2, "bad shares", AB), experiment(3, "x", [("a", "good", 1.0)])]))
    assert worker.holder.experiment is None and serving(worker) == "good"
    assert metrics.EXPERIMENT_CHANGES.labels("rejected")._value.get() - before == 1
    # The two invalid records are dead letters with their reasons.
    assert [(r.offset, reason) for r, reason, _ in worker.dead_lettered] == [(2, "bad_name"), (3, "bad_arms")]

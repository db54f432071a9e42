"""Hostile model-updates: a fuzz of announcements and version folders against a running worker.

Records an outside client may write on ``model-updates`` (wrong types at every field,
nulls, lists, invalid UTF-8, huge records up to the topic's limit, tombstones,
path-like and absolute versions, versions that do not exist, an announced ``path``
pointing at a good version elsewhere) and version folders someone with write access
may leave in the artifacts folder (tampered files, unsigned, mis-signed or re-signed
with another key, a manifest naming another version, a symlink out of the folder,
pickle weights, an index or id map that disagrees), mixed in rounds with valid
versions. The worker runs with ``STREAMREC_ARTIFACT_KEY`` set. Figures: records
tried, crashes, valid versions applied, versions served that should not have been,
refusals counted, and whether a restarted worker serves the last valid version
although the newest announcements are bad.

:func:`versions_fuzz` is the scenario (``bench/chaos.py --only versions``;
``tests/chaos/test_versions.py`` runs its short form). :func:`copy_version` and
:data:`HOSTILE_FOLDERS` are what the unit tests use too.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from bench.faults.kit import Outcome, one_worker, wait_until
from models.artifacts import MANIFEST, sign_manifest

KEY = "fuzz-artifact-key-0123456789abcdef"
OTHER_KEY = b"another-key-not-the-workers-0123456789"


# --- version folders ---------------------------------------------------------------------
def remanifest(folder: Path, key: bytes | None = None, **fields: Any) -> None:
    """Rewrite ``folder``'s manifest to agree with its files (sizes, sha256), with ``fields``
    changed, signed with ``key`` (unsigned without): what whoever can write the folder can do."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.pop("signature", None)
    manifest["files"] = {p.relative_to(folder).as_posix(): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                                            "bytes": p.stat().st_size}
                         for p in sorted(folder.rglob("*")) if p.is_file() and p != folder / MANIFEST}
    manifest.update(fields)
    if key:
        manifest = sign_manifest(manifest, key)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def copy_version(root: Path, source: str, version: str, key: bytes | None, dest_root: Path | None = None) -> Path:
    """Copy version ``source`` of ``root`` as ``version`` (into ``dest_root``, default ``root``): the
    manifest renamed and signed with ``key``, so the copy verifies as a version of its own."""
    folder = (dest_root or root) / version
    shutil.copytree(root / source, folder, symlinks=True)
    remanifest(folder, key, version=version)
    return folder


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _largest(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST), key=lambda p: p.stat().st_size)


def _pickle_weights(folder: Path, key: bytes) -> None:
    import torch

    (folder / "weights.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, folder / "weights.pt")  # a pickle, whoever signed it
    config = json.loads((folder / "config.json").read_text())
    config["weights"] = "weights.pt"
    (folder / "config.json").write_text(json.dumps(config))
    remanifest(folder, key)


def _index_count(folder: Path, key: bytes) -> None:
    index_manifest = folder / "index" / "manifest.json"
    raw = json.loads(index_manifest.read_text())
    raw["count"] += 1
    index_manifest.write_text(json.dumps(raw))
    remanifest(folder, key)


def _index_truncated(folder: Path, key: bytes) -> None:
    index_file = folder / "index" / "index.faiss"
    index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])
    raw = json.loads((folder / "index" / "manifest.json").read_text())
    data = index_file.read_bytes()
    raw["files"]["index.faiss"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    raw["sha256"] = raw["files"]["index.faiss"]["sha256"]
    (folder / "index" / "manifest.json").write_text(json.dumps(raw))
    remanifest(folder, key)  # every checksum agrees: only the content is cut


def _ids_mismatch(folder: Path, key: bytes) -> None:
    items = json.loads((folder / "items.json").read_text())
    (folder / "items.json").write_text(json.dumps(items[:-1]))
    remanifest(folder, key)


# name: make(root, good_version, new_version, key, outside) -> what an announcement of new_version finds.
# Each is refused by the worker for the reason in HOSTILE_REASONS.
HOSTILE_FOLDERS: dict[str, Callable[[Path, str, str, bytes, Path], None]] = {
    "tampered": lambda r, g, v, k, o: _flip(_largest(copy_version(r, g, v, k))),
    "tampered_resigned_other_key": lambda r, g, v, k, o: (lambda f: (_flip(_largest(f)), remanifest(f, OTHER_KEY)))(
        copy_version(r, g, v, k)),
    "unsigned": lambda r, g, v, k, o: copy_version(r, g, v, None),
    "mis_signed": lambda r, g, v, k, o: copy_version(r, g, v, OTHER_KEY),
    "manifest_names_another_version": lambda r, g, v, k, o: shutil.copytree(r / g, r / v),
    "symlink_out": lambda r, g, v, k, o: (r / v).symlink_to(copy_version(r, g, v, k, dest_root=o),
                                                            target_is_directory=True),
    "pickle_weights": lambda r, g, v, k, o: _pickle_weights(copy_version(r, g, v, k), k),
    "index_count": lambda r, g, v, k, o: _index_count(copy_version(r, g, v, k), k),
    "index_truncated": lambda r, g, v, k, o: _index_truncated(copy_version(r, g, v, k), k),
    "ids_mismatch": lambda r, g, v, k, o: _ids_mismatch(copy_version(r, g, v, k), k),
    "stray_file": lambda r, g, v, k, o: (copy_version(r, g, v, k) / "weights.pt").write_bytes(b"\x80\x04N."),
}
HOSTILE_REASONS = {
    "tampered": {"checksum"}, "tampered_resigned_other_key": {"bad_signature"}, "unsigned": {"unsigned"},
    "mis_signed": {"bad_signature"}, "manifest_names_another_version": {"version_mismatch"},
    "symlink_out": {"outside_artifacts_dir"}, "pickle_weights": {"not_safetensors"}, "index_count": {"index"},
    "index_truncated": {"index"}, "ids_mismatch": {"size_mismatch"}, "stray_file": {"unlisted_file"},
}


# --- records -------------------------------------------------------------------------------
def _announcement(version: Any, **fields: Any) -> bytes:
    return json.dumps({"version": version, "created_ms": int(time.time() * 1000), "metrics": {"ndcg@10": 0.5},
                       **fields}).encode()


def hostile_records(rng: random.Random, n: int, folders: list[str], outside: str, max_bytes: int
                    ) -> list[tuple[str, bytes | None]]:
    """``n`` hostile ``(kind, value)`` records, every kind in turn, then at random (seeded).

    ``folders``: versions of hostile folders (announcing one is hostile); ``outside``: a good
    version's folder outside the artifacts folder (an announced ``path`` must never lead there);
    ``max_bytes``: the topic's record limit (huge records stay under it).
    """
    missing = lambda: f"v{rng.randrange(10**12)}-missing"  # noqa: E731
    kinds: dict[str, Callable[[], bytes | None]] = {
        "tombstone": lambda: None,
        "empty": lambda: b"",
        "null": lambda: b"null",
        "list": lambda: json.dumps([{"version": missing()}]).encode(),
        "string": lambda: b'"v1"',
        "number": lambda: str(rng.random()).encode(),
        "bad_utf8": lambda: b'{"version": "\xff\xfe' + rng.randbytes(6) + b'"}',
        "truncated": lambda: _announcement(missing())[: rng.randrange(1, 30)],
        "nested": lambda: b"[" * 5000 + b"]" * 5000,
        "huge": lambda: _announcement(missing(), pad="x" * rng.randrange(70_000, max(70_001, max_bytes - 1024))),
        "no_version": lambda: json.dumps({"created_ms": 1}).encode(),
        "version_null": lambda: _announcement(None),
        "version_int": lambda: _announcement(rng.randrange(10**6)),
        "version_list": lambda: _announcement(["v1"]),
        "version_object": lambda: _announcement({"v": 1}),
        "version_empty": lambda: _announcement(""),
        "version_long": lambda: _announcement("v" * rng.choice([129, 1000, 60_000])),
        "path_like": lambda: _announcement(rng.choice(["../v1", "../../etc", "a/b", "..", ".", "v1/..", "./v1",
                                                        "v1\n", "v1\x00", "C:\\v1", "~root", "v 1", "%2e%2e"])),
        "absolute": lambda: _announcement(rng.choice(["/etc/passwd", "/tmp", outside, "//server/share"])),
        "missing_version": lambda: _announcement(missing()),
        "missing_with_path_to_good": lambda: _announcement(missing(), path=outside),
        # The good version elsewhere, by its own name: loading it from the announced path would work.
        "outside_with_path_to_it": lambda: _announcement(Path(outside).name, path=outside),
        "hostile_folder": lambda: _announcement(rng.choice(folders)),
        "created_string": lambda: _announcement(missing(), created_ms="yesterday"),
        "created_negative": lambda: _announcement(missing(), created_ms=-5),
        "metrics_nan": lambda: _announcement(missing(), metrics={"ndcg@10": float("nan")}),
        "metrics_list": lambda: _announcement(missing(), metrics=[1, 2]),
        "path_int": lambda: _announcement(missing(), path=7),
        "users_negative": lambda: _announcement(missing(), users=-1),
    }
    names = sorted(kinds)
    out = []
    for i in range(n):
        name = names[i] if i < len(names) else rng.choice(names)
        # Huge records are costly to send and read: one in fifty at most.
        if name == "huge" and i >= len(names) and rng.random() > 0.02:
            name = "missing_version"
        out.append((name, kinds[name]()))
    return out


def _served(worker) -> str | None:
    status, body = worker.get("/healthz")
    return body.get("model_version") if status == 200 and isinstance(body, dict) else None


def _alive(worker) -> bool:
    return worker.proc is not None and worker.proc.poll() is None


def versions_fuzz(bootstrap: str, root: Path, records: int = 1000, rounds: int = 4, folders_per_kind: int = 1,
                  seed: int = 11, restart: bool = True) -> Outcome:
    """``records`` hostile model-updates records in ``rounds`` rounds, each with one valid new version at a
    random place; after each round the worker must serve that round's version (see the module docstring)."""
    from kafka import KafkaProducer

    from models.train.config import TrainConfig
    from stream.kafka.config import kafka_python_options
    from stream.kafka.producer import EventProducer
    from stream.trainer.run import train_once

    started = time.perf_counter()
    rng = random.Random(seed)
    outcome = Outcome()
    key = KEY.encode()
    with one_worker(bootstrap, root, n_users=40, events_per_user=10, artifact_key=KEY) as (world, worker):
        settings = world.settings
        artifacts = settings.artifacts_dir
        with EventProducer(settings) as producer:
            producer.send_many(world.dataset.events, strict=True)
        run = train_once(settings, TrainConfig(tower="mean", dim=16, epochs=1, content="none", progress=False),
                         margin=1.0, select="fixed")
        if not run.published:
            raise RuntimeError(f"the trainer published nothing: {run.reason}")
        wait_until(lambda: _served(worker) == run.version, 120, "the trained version served")
        good = run.version
        outside_root = root / "outside"
        outside = str(copy_version(artifacts, good, "outside-good", key, dest_root=outside_root))
        folders: dict[str, str] = {}
        for kind, make in HOSTILE_FOLDERS.items():
            for n in range(folders_per_kind):
                version = f"bad-{kind.replace('_', '-')}-{n}"
                make(artifacts, good, version, key, outside_root)
                folders[version] = kind
        producer = KafkaProducer(**kafka_python_options(settings), acks="all", linger_ms=5,
                                 allow_auto_create_topics=False, max_request_size=settings.topic_max_message_bytes)
        topic = settings.topic("model-updates")
        ok_before, rejected_before = _swaps(worker, "ok"), _swaps(worker, "rejected")
        kinds_sent: dict[str, int] = {}
        applied, wrong, crashes, sent_valid = 0, [], 0, []
        per_round = max(1, records // rounds)
        for r in range(rounds):
            batch = hostile_records(rng, per_round, list(folders), outside, settings.topic_max_message_bytes)
            version = f"{good}-r{r}"
            copy_version(artifacts, good, version, key)
            batch.insert(rng.randrange(len(batch) + 1), ("valid", _announcement(version, path=str(artifacts / version))))
            for kind, value in batch:
                kinds_sent[kind] = kinds_sent.get(kind, 0) + 1
                producer.send(topic, key=b"fuzz", value=value)
            producer.flush(timeout=120)
            sent_valid.append(version)
            try:
                wait_until(lambda: _served(worker) == version, 120, f"round {r}'s version {version} served")
                applied += 1
            except TimeoutError:
                served = _served(worker)
                wrong.append(f"round {r}: serving {served} instead of {version}")
            if not _alive(worker):
                crashes += 1
                outcome.problems.append(f"the worker died in round {r}:\n{worker.log_tail(30)}")
                worker.start()
        # The newest announcements bad: a restarted worker walks back to the last valid version.
        tail = hostile_records(rng, 50, list(folders), outside, settings.topic_max_message_bytes)
        for kind, value in tail:
            kinds_sent[kind] = kinds_sent.get(kind, 0) + 1
            producer.send(topic, key=b"fuzz", value=value)
        producer.flush(timeout=120)
        producer.close(timeout=30)
        time.sleep(2.0)
        served_before_restart = _served(worker)
        ok_swaps = _swaps(worker, "ok") - ok_before
        rejected = _swaps(worker, "rejected") - rejected_before
        if not _alive(worker):
            crashes += 1
        loaded, refusals = _versions_logged(worker)
        hostile_served = sorted(v for v in loaded if v in folders or v == Path(outside).name)
        wrong_reason = sorted(f"{v}: {reason}" for v, reason in refusals
                              if v in folders and reason not in HOSTILE_REASONS[folders[v]])
        folder_kinds_refused = len({folders[v] for v, _ in refusals if v in folders})
        restart_serves = None
        if restart:
            worker.stop()
            worker.start()
            try:
                restart_serves = wait_until(lambda: _served(worker) if _served(worker) != "content-v0" else None,
                                            120, "a version served after the restart")
            except TimeoutError:
                restart_serves = _served(worker)
        last = sent_valid[-1] if sent_valid else good
        outcome.figures = {
            "scenario": "hostile model-updates", "records_tried": sum(kinds_sent.values()),
            "bad_records": sum(n for k, n in kinds_sent.items() if k != "valid"),
            "record_kinds": len(kinds_sent), "hostile_folders": len(folders), "valid_versions": len(sent_valid),
            "versions_applied": applied, "ok_swaps": ok_swaps, "rejected_counted": rejected, "crashes": crashes,
            "hostile_versions_served": len(hostile_served), "folder_kinds_refused": folder_kinds_refused,
            "wrong_reasons": len(wrong_reason), "served_before_restart": served_before_restart,
            "restart_serves": restart_serves, "restart_serves_last_valid": restart_serves == last if restart else None,
            "seconds": round(time.perf_counter() - started, 1),
        }
        outcome.problems += wrong[:5] + wrong_reason[:5] + [f"served {v}" for v in hostile_served[:5]]
        if wrong_reason:
            outcome.problems.append("hostile folders refused for another reason than theirs")
        if crashes or applied != len(sent_valid) or hostile_served or ok_swaps != len(sent_valid):
            outcome.problems.append("a crash, a valid version not applied, or a hostile version served")
        if served_before_restart != last or (restart and restart_serves != last):
            outcome.problems.append(f"serving {served_before_restart} / after restart {restart_serves}, not {last}")
        if rejected < len(folders):
            outcome.problems.append(f"only {rejected} refusals counted")
    return outcome


def _swaps(worker, result: str) -> float:
    status, text = worker.get("/metrics")
    prefix = f'streamrec_worker_model_swaps_total{{result="{result}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0) \
        if status == 200 else -1.0


def _versions_logged(worker) -> tuple[set[str], set[tuple[str, str]]]:
    """What the worker's log says: versions loaded, and ``(version, reason)`` of versions refused."""
    loaded, refused = set(), set()
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if "model version loaded version=" in line:
            loaded.add(line.split("model version loaded version=", 1)[1].split(" ", 1)[0])
        elif "model version rejected version=" in line:
            rest = line.split("model version rejected version=", 1)[1]
            refused.add((rest.split(" ", 1)[0], rest.split("reason=", 1)[1].split(" ", 1)[0] if "reason=" in rest else ""))
    return loaded, refused

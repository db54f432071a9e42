"""The fault scenarios as typed functions: the tests run their short forms, bench/chaos.py the long ones.

Each returns an :class:`~bench.faults.kit.Outcome` whose ``figures`` are one
row of the results table and whose ``ok`` says whether nothing was lost,
applied twice or answered wrongly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import signal
import time
from pathlib import Path

from bench.faults.kit import (Outcome, PrivateBroker, Replay, check_state, generate_events, make_world,
                              one_worker, read_topic, wait_until)
from bench.faults.malformed import send_mixed


def crash(bootstrap: str, root: Path, events: int = 3000, users: int = 300, kills: int = 3,
          guarantee: str = "at_least_once", rate: float = 400.0, seed: int = 1) -> Outcome:
    """SIGKILL the worker at random moments of a replay, restarting it each time.

    Each kill lands a random 0.2-3.5 s after the worker started applying events
    again, so kills hit batches in flight and offsets committed or not
    (Faust commits every 2.8 s), not only a worker still starting up.
    """
    rng = random.Random(seed)
    started = time.perf_counter()
    with one_worker(bootstrap, root, processing_guarantee=guarantee) as (world, worker):
        replay = Replay(world.settings, generate_events(events, users, world.item_ids, seed), rate)
        replay.start()
        applied_at_kill = []
        for _ in range(kills):
            _wait_applying(worker)
            time.sleep(rng.uniform(0.2, 3.5))
            applied_at_kill.append(worker.metric("streamrec_worker_events_applied_total"))
            worker.stop(signal.SIGKILL)
            worker.start()
        sent = replay.finish()
        outcome = check_state(world, sent)
        outcome.figures = {"scenario": f"crash ({guarantee})", "kills": kills, **outcome.figures,
                           "applied_since_start_at_each_kill": applied_at_kill,
                           "seconds": round(time.perf_counter() - started, 1)}
        if guarantee == "exactly_once" and outcome.figures["recommendations_duplicated"]:
            outcome.problems.append("exactly_once published a recommendation twice")
        return outcome


def _wait_applying(worker, timeout: float = 60.0) -> None:
    """Wait until a (re)started worker has applied or skipped an event (its partitions are assigned)."""
    def busy() -> bool:
        return (worker.metric("streamrec_worker_events_applied_total")
                + worker.metric("streamrec_worker_events_duplicate_total")) > 0
    try:
        wait_until(busy, timeout, "the worker to apply events", interval=0.1)
    except TimeoutError:
        pass  # nothing left to apply: the kill then lands on an idle worker


def broker_restart(root: Path, events: int = 3000, users: int = 300, restarts: int = 1, down_s: float = 3.0,
                   rate: float = 300.0, seed: int = 2) -> Outcome:
    """Stop and start a private broker in the middle of a replay; worker and producer reconnect alone."""
    broker = PrivateBroker(root / "broker").start()
    started = time.perf_counter()
    world = worker = None
    try:
        world = make_world(broker.bootstrap, root / "world")
        worker = world.worker().start()
        replay = Replay(world.settings, generate_events(events, users, world.item_ids, seed), rate)
        replay.start()
        span = events / rate
        for _ in range(restarts):
            time.sleep(span / (restarts + 1) * 0.8)
            broker.stop()
            time.sleep(down_s)
            broker.start()
        sent = replay.finish()
        outcome = check_state(world, sent)
        if worker.proc is not None and worker.proc.poll() is not None:
            outcome.problems.append(f"the worker exited with {worker.proc.returncode}")
        else:
            wait_until(lambda: worker.get("/healthz")[0] == 200, 60, "the worker healthy again")
        outcome.figures = {"scenario": "broker restart", "broker_restarts": restarts, **outcome.figures,
                           "seconds": round(time.perf_counter() - started, 1)}
        return outcome
    finally:
        if worker is not None:
            worker.stop(signal.SIGKILL)
        broker.remove()


def rebalance(bootstrap: str, root: Path, events: int = 3000, users: int = 300, rounds: int = 1,
              rate: float = 300.0, seed: int = 3) -> Outcome:
    """Start a second worker and stop it again during a replay, ``rounds`` times."""
    world = make_world(bootstrap, root)
    first = world.worker()
    second = world.worker("second")
    started = time.perf_counter()
    try:
        first.start()
        replay = Replay(world.settings, generate_events(events, users, world.item_ids, seed), rate)
        replay.start()
        span = events / rate
        shared = 0
        for _ in range(rounds):
            time.sleep(span / (2 * rounds + 1))
            second.start()
            try:
                wait_until(lambda: second.get("/healthz")[1]["partitions"], 60, "the second worker's partitions")
                shared += 1
            except TimeoutError:
                pass
            time.sleep(span / (2 * rounds + 1))
            second.stop()
        sent = replay.finish()
        outcome = check_state(world, sent)
        outcome.figures = {"scenario": "rebalance", "second_worker_joins": rounds,
                           "joins_with_partitions": shared, **outcome.figures,
                           "seconds": round(time.perf_counter() - started, 1)}
        return outcome
    finally:
        second.stop(signal.SIGKILL)
        first.stop(signal.SIGKILL)
        world.close()


def lost_disk(bootstrap: str, root: Path, events: int = 2000, users: int = 200, seed: int = 6) -> Outcome:
    """Delete the stopped worker's RocksDB folder; the restart restores it from the changelog."""
    started = time.perf_counter()
    with one_worker(bootstrap, root) as (world, worker):
        generated = generate_events(events, users, world.item_ids, seed)
        half = len(generated) // 2
        first = Replay(world.settings, generated[:half], None)
        first.run()
        first.finish()
        wait_until(lambda: worker.metric("streamrec_worker_events_applied_total") >= half, 120,
                   "the first half applied")
        worker.stop()
        store = world.settings.data_dir / "faust"
        removed = sum(1 for p in store.rglob("*") if p.is_file())
        shutil.rmtree(store)
        worker.start()
        probe = generated[0]["user_id"]
        restored = worker.get(f"/recommendations/{probe}")
        second = Replay(world.settings, generated[half:], None)
        second.run()
        sent = half + second.finish()
        outcome = check_state(world, sent)
        outcome.figures = {"scenario": "lost RocksDB folder", "files_removed": removed, **outcome.figures,
                           "seconds": round(time.perf_counter() - started, 1)}
        if restored[0] != 200:
            outcome.problems.append(f"user {probe} unknown right after the restore: {restored}")
        return outcome


def bad_input(bootstrap: str, root: Path, bad: int = 10_000, valid: int = 1000, users: int = 100,
              seed: int = 4) -> Outcome:
    """Malformed records mixed with valid ones: each bad one in dead-letter with its reason, each valid one applied."""
    started = time.perf_counter()
    with one_worker(bootstrap, root) as (world, worker):
        valid_events = generate_events(valid, users, world.item_ids, seed)
        sent_bad = send_mixed(world.settings, valid_events, bad, world.item_ids, seed)
        outcome = check_state(world, valid)
        letters = {}
        for r in read_topic(world.settings, world.settings.topic("dead-letter")):
            letter = json.loads(r.value)
            letters[(letter["partition"], letter["offset"])] = letter
        wrong_reason, missing, bytes_differ = [], 0, 0
        for (partition, offset), (key, value, reasons) in sent_bad.items():
            letter = letters.get((partition, offset))
            if letter is None:
                missing += 1
                continue
            if letter["reason"] not in reasons:
                wrong_reason.append(f"p{partition}@{offset}: {letter['reason']} not in {sorted(reasons)}")
            if not (_kept_as(letter, "value", value, world.settings.dead_letter_max_bytes)
                    and _kept_as(letter, "key", key, world.settings.dead_letter_max_bytes)):
                bytes_differ += 1
        alive = worker.proc is not None and worker.proc.poll() is None
        outcome.figures = {"scenario": "bad input", "bad_records": len(sent_bad), "valid_records": valid,
                           "dead_letters": len(letters), "bad_not_in_dead_letter": missing,
                           "wrong_reason": len(wrong_reason), "original_bytes_differ": bytes_differ,
                           "worker_alive": alive, **outcome.figures,
                           "seconds": round(time.perf_counter() - started, 1)}
        outcome.problems += wrong_reason[:5]
        if missing or bytes_differ or not alive:
            outcome.problems.append("bad records missing from dead-letter, altered, or the worker died")
        return outcome


def _kept_as(letter: dict, field: str, original: bytes | None, limit: int) -> bool:
    """Whether a dead letter holds ``original``'s first ``limit`` bytes, its size and its SHA-256."""
    if original is None:
        return letter[f"{field}_b64"] is None and letter[f"{field}_size"] is None
    return (base64.b64decode(letter[f"{field}_b64"]) == original[:limit] and letter[f"{field}_size"] == len(original)
            and letter[f"{field}_sha256"] == hashlib.sha256(original).hexdigest())


def _swaps(worker, result: str) -> float:
    status, text = worker.get("/metrics")
    prefix = f'streamrec_worker_model_swaps_total{{result="{result}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0) \
        if status == 200 else -1.0


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _largest(folder: Path, under: str = "") -> Path:
    files = [p for p in (folder / under).rglob("*") if p.is_file() and p.name != "manifest.json"]
    return max(files, key=lambda p: p.stat().st_size)


def _tamper_index_past_outer_manifest(version: Path) -> None:
    """Tamper the index and re-sign it in the artifact's manifest: only the index's own checksum can catch it."""
    import hashlib

    target = _largest(version, "index")
    _flip_byte(target)
    manifest = json.loads((version / "manifest.json").read_text())
    entry = manifest["files"][target.relative_to(version).as_posix()]
    entry["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest))


CORRUPTIONS = {
    "truncated weights": lambda v: (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]))(_largest(v)),
    "tampered weights": lambda v: _flip_byte(_largest(v)),
    "tampered index": lambda v: _flip_byte(_largest(v, "index")),
    "truncated index": lambda v: (lambda p: p.write_bytes(p.read_bytes()[:16]))(_largest(v, "index")),
    "missing manifest": lambda v: (v / "manifest.json").unlink(),
    "garbage manifest": lambda v: (v / "manifest.json").write_text("{not json"),
    "missing file": lambda v: _largest(v).unlink(),
    "tampered index, re-signed outside": _tamper_index_past_outer_manifest,
}


def corrupt_artifacts(bootstrap: str, root: Path, kinds: tuple[str, ...] = tuple(CORRUPTIONS)) -> Outcome:
    """Announce corrupted copies of a real trained version: each refused, the served version kept."""
    from bench.faults.versions import copy_version
    from models.train.config import TrainConfig
    from stream.kafka.producer import EventProducer
    from stream.trainer.run import announce, train_once

    started = time.perf_counter()
    outcome = Outcome()
    with one_worker(bootstrap, root, n_users=40, events_per_user=10) as (world, worker):
        with EventProducer(world.settings) as producer:
            producer.send_many(world.dataset.events, strict=True)
        run = train_once(world.settings, TrainConfig(tower="mean", dim=16, epochs=1, content="none", progress=False),
                         margin=1.0, select="fixed")
        if not run.published:
            raise RuntimeError(f"the trainer published nothing: {run.reason}")
        wait_until(lambda: worker.get("/healthz")[1]["model_version"] == run.version, 90, "the trained version served")
        user = world.dataset.events[0]["user_id"]
        wait_until(lambda: worker.get(f"/recommendations/{user}")[0] == 200, 60, "the user's state")
        refused = 0
        for n, kind in enumerate(kinds):
            version = f"{run.version}-bad{n}"
            # A copy that verifies as a version of its own (its manifest renamed), then corrupted.
            copy = copy_version(world.settings.artifacts_dir, run.version, version, key=None)
            CORRUPTIONS[kind](copy)
            before = _swaps(worker, "rejected")
            announce(world.settings, version, copy, {"ndcg@10": 1.0})
            try:
                wait_until(lambda: _swaps(worker, "rejected") > before, 60, f"{kind} refused")
            except TimeoutError:
                outcome.problems.append(f"{kind}: not refused within 60 s")
                continue
            log = worker.log_path.read_text(errors="replace")
            line = next((ln for ln in log.splitlines() if f"model version rejected version={version}" in ln), None)
            served = worker.get("/healthz")[1]["model_version"]
            status, body = worker.get(f"/recommendations/{user}")
            if line is None:
                outcome.problems.append(f"{kind}: no 'model version rejected' line in the log")
            if served != run.version or status != 200 or body.get("model_version") != run.version:
                outcome.problems.append(f"{kind}: serving {served} (answer {status}) instead of {run.version}")
            refused += line is not None and served == run.version
            outcome.figures.setdefault("errors", {})[kind] = (line or "").split("error=", 1)[-1][:160]
        # the control: an intact copy under a new name is accepted, so the refusals were the corruption's doing
        intact = copy_version(world.settings.artifacts_dir, run.version, f"{run.version}-intact", key=None)
        ok_before = _swaps(worker, "ok")
        announce(world.settings, intact.name, intact, {"ndcg@10": 1.0})
        try:
            wait_until(lambda: _swaps(worker, "ok") > ok_before, 60, "the intact copy accepted")
            control = True
        except TimeoutError:
            control = False
            outcome.problems.append("the intact copy was not accepted")
        outcome.figures = {"scenario": "corrupt artifacts", "versions_announced": len(kinds),
                           "refused_and_previous_kept": refused, "rejected_metric": _swaps(worker, "rejected"),
                           "intact_copy_accepted": control, **outcome.figures,
                           "seconds": round(time.perf_counter() - started, 1)}
    return outcome


def _random_id(rng: random.Random, known: list[str]) -> str:
    """A path segment: known ids, unicode, huge, percent-encoded (valid or not), control characters."""
    from urllib.parse import quote

    choice = rng.randrange(9)
    if choice <= 2:
        return quote(rng.choice(known), safe="")
    if choice == 3:
        return quote("".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(1, 40))), safe="",
                     errors="surrogatepass")
    if choice == 4:
        return quote("x" * rng.choice([129, 1000, 3000]), safe="")
    if choice == 5:
        return rng.choice(["%00", "%ZZ", "%", "%2F", "%2e%2e", "%0A", "%C3%28", "%FF%FE", "a%20", "%20a"])
    if choice == 6:
        return quote(rng.choice(["\u00e9", "\U0001f600", "\u202e", "\ufeff", "\x7f", "a\tb", " ", "-1", "0", "1e9"]),
                     safe="")
    if choice == 7:
        return str(rng.randrange(-10**6, 10**12))
    return quote(rng.randbytes(rng.randrange(1, 12)).decode("latin-1"), safe="")


K_VALUES = ("", "0", "1", "5", "100", "101", "1000", "-1", "abc", "1e3", "1.5", "99999999999", "\u0663", "%00",
            " 5", "5 ", "0x10", "+3", "\uff15", "%FF", "1%00")
# Characters str.isdigit() accepts but int() refuses: stream/runtime/web.py parse_k answers 500 for them.
K_DIGIT_LOOKALIKES = ("\u00b2", "\u00b3", "\u2460", "1\u00b2")


def http_input(bootstrap: str, root: Path, requests: int = 1500, seed: int = 7,
               k_values: tuple[str, ...] = K_VALUES) -> Outcome:
    """Random requests under the API get only 200, 400 or 404, and the worker stays up."""
    from collections import Counter
    from urllib.parse import quote

    rng = random.Random(seed)
    started = time.perf_counter()
    with one_worker(bootstrap, root, n_users=20, events_per_user=5) as (world, worker):
        from stream.kafka.producer import EventProducer

        with EventProducer(world.settings) as producer:
            producer.send_many(world.dataset.events, strict=True)
        users = sorted({e["user_id"] for e in world.dataset.events})
        wait_until(lambda: worker.get(f"/recommendations/{users[-1]}")[0] == 200, 60, "a user's state")
        known = users + world.item_ids[:20]
        statuses: Counter = Counter()
        unexpected: list[str] = []
        for _ in range(requests):
            ident = _random_id(rng, known)
            route = rng.choice(["/recommendations/{}", "/items/{}/similar", "/users/{}/similar",
                                "/recommendations/{}/", "/items/{}", "/users//similar", "/recommendations/",
                                "/items/{}/similar/extra", "/healthz/{}", "/{}"])
            path = route.format(ident)
            k = rng.choice(k_values + (None,) * 4)
            if k is not None:
                path += "?k=" + (k if k.startswith("%") else quote(k, safe=""))
            try:
                status, _ = worker.get(path)
            except OSError as e:
                status = f"no answer ({type(e).__name__})"
            statuses[status] += 1
            if status not in (200, 400, 404) and len(unexpected) < 20:
                unexpected.append(f"{status} for GET {path[:200]}")
        alive = worker.proc is not None and worker.proc.poll() is None and worker.get("/healthz")[0] == 200
        outcome = Outcome(figures={"scenario": "HTTP input", "requests": requests,
                                   "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
                                   "unexpected": sum(v for s, v in statuses.items() if s not in (200, 400, 404)),
                                   "worker_alive": alive, "seconds": round(time.perf_counter() - started, 1)})
        outcome.problems += unexpected
        if not alive:
            outcome.problems.append("the worker is down or unhealthy after the requests")
    return outcome

"""The trainer's snapshot at scale: read time, events per second and peak memory of the training window.

A topic is filled with N generated events (keyed by user, pre-encoded JSON,
as fast as the producer client sends); then a child process takes the
trainer's snapshot (:func:`stream.trainer.snapshot.snapshot_events`: the
window from the topic's end, validated into NumPy columns) and cleans it into
``Interactions`` as the trainer does, and reports its own peak RSS (VmHWM:
``getrusage``'s ru_maxrss would carry the parent's over the exec), so each
figure is one fresh process's. With ``--baseline``
(default up to 10^6 events) a second child does the same with the trainer's
former snapshot: every record into a list, one dict per event, a DataFrame,
``preprocess``.

    python bench/trainer_scale.py [--quick] [--events N] [--window W] [--partitions P]
                                  [--reuse PREFIX] [--baseline/--no-baseline] [--out FILE]

``--reuse PREFIX`` reads the topics of an earlier run's namespace (printed by
it) instead of producing again: a window of 10^6 over 10^7 events without
producing 10^7 twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._stream_common import machine, peak_rss, write_json  # noqa: E402
from stream.core.topics import EVENTS  # noqa: E402
from stream.settings import Settings  # noqa: E402

QUICK_EVENTS = 20_000
EVENTS_PER_USER = 40


def generated(n: int, n_users: int, n_items: int, seed: int = 1):
    """``(user, value bytes)`` of ``n`` generated events: users with a taste for one block of the
    catalogue, one millisecond apart, all in the past."""
    rng = random.Random(seed)
    block = max(10, n_items // 50)
    kinds = ("click", "click", "click", "play", "play", "like", "skip", "cart", "purchase")
    start_ms = int(time.time() * 1000) - n
    for k in range(n):
        user = rng.randrange(n_users)
        item = (user % 50 * block + rng.randrange(block * 2)) % n_items
        kind = kinds[rng.randrange(len(kinds))]
        value = f',"value":{rng.randrange(5, 300)}.0' if kind == "play" else ""
        yield user, (f'{{"user_id":"u{user}","item_id":"i{item}","event_type":"{kind}",'
                     f'"timestamp_ms":{start_ms + k}{value}}}').encode()


async def produce_async(settings: Settings, n: int, n_items: int) -> float:
    """Send ``n`` generated events, keyed by user, in record batches per partition; returns events/s.

    One user's events go to one partition (user number modulo the partitions, in order), as a keyed
    producer sends them; batches built here rather than record by record, so 10^7 events take
    minutes, not an hour.
    """
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    from stream.kafka.config import aiokafka_options

    topic, parts = settings.topic(EVENTS), settings.topic_partitions
    producer = AIOKafkaProducer(**aiokafka_options(settings), acks=1, max_batch_size=1024 * 1024,
                                linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    try:
        batches = [producer.create_batch() for _ in range(parts)]
        pending: list = []
        bar = tqdm(total=n, unit="ev", unit_scale=True, desc=f"producing to {topic}", mininterval=2)
        for user, value in generated(n, max(10, n // EVENTS_PER_USER), n_items):
            p = user % parts
            if batches[p].append(key=b"u%d" % user, value=value, timestamp=None) is None:  # full
                batches[p].close()
                pending.append(await producer.send_batch(batches[p], topic, partition=p))
                bar.update(batches[p].record_count())
                batches[p] = producer.create_batch()
                batches[p].append(key=b"u%d" % user, value=value, timestamp=None)
                if len(pending) > 64:  # bounded in flight
                    await asyncio.gather(*pending)
                    pending = []
        for p, batch in enumerate(batches):
            batch.close()
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
                bar.update(batch.record_count())
        await asyncio.gather(*pending)
        bar.close()
    finally:
        await producer.stop()
    return n / (time.perf_counter() - started)


def produce(settings: Settings, n: int, n_items: int) -> float:
    return asyncio.run(produce_async(settings, n, n_items))


def old_snapshot(settings: Settings) -> tuple[int, int, int]:
    """The trainer's snapshot before issue 19: every record, one dict per event, then a DataFrame."""
    from models.data.loaders import from_events
    from models.data.preprocess import preprocess
    from stream.core.events import parse_event
    from stream.errors import InvalidEvent
    from stream.kafka.reader import read_range

    now_ms = int(time.time() * 1000)
    events, invalid = [], 0
    for record in asyncio.run(read_range(settings, settings.topic(EVENTS), timeout_s=3600)):
        try:
            events.append(parse_event(record.value or b"", now_ms=now_ms).to_dict())
        except InvalidEvent:
            invalid += 1
    interactions, _, _ = preprocess(from_events(events, None, name="bench"))
    return len(events), invalid, len(interactions)


def new_snapshot(settings: Settings) -> tuple[int, int, int]:
    """The trainer's snapshot now: the window as columns, cleaned from columns."""
    from models.data.columns import interactions_from_columns
    from stream.trainer.snapshot import snapshot_events

    columns, report = snapshot_events(settings)
    interactions, _, _ = interactions_from_columns(columns, None, name="bench")
    return report.events, report.invalid, len(interactions)


def child(path: str, options: dict) -> dict:
    """Run one snapshot path in this (fresh) process with ``Settings(**options)`` and measure it."""
    settings = Settings(**options)
    import models.data.columns  # noqa: F401  (imports before the baseline RSS: what every path pays)
    import stream.trainer.snapshot  # noqa: F401

    import_rss = peak_rss(os.getpid())
    started = time.perf_counter()
    events, invalid, interactions = (new_snapshot if path == "columns" else old_snapshot)(settings)
    seconds = time.perf_counter() - started
    return {"path": path, "events_read": events, "invalid": invalid, "interactions": interactions,
            "snapshot_seconds": round(seconds, 2), "events_per_s": round(events / seconds, 1),
            "peak_rss_bytes": peak_rss(os.getpid()),
            "import_rss_bytes": import_rss}


def measure(path: str, options: dict) -> dict:
    """:func:`child` in a fresh interpreter (its peak RSS is its own)."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", path],
                          input=json.dumps(options), capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{path} snapshot failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(result: dict) -> None:
    window = result["window_events"]
    print(f"\n{result['events_in_topic']:,} events in {result['partitions']} partitions, window "
          f"{'every event' if window is None else f'{window:,}'}")
    columns = (("snapshot", "path", "<16", ""), ("events read", "events_read", ">13", ","),
               ("seconds", "snapshot_seconds", ">10", ",.1f"), ("events/s", "events_per_s", ">12", ",.0f"))
    print("".join(f"{title:{align}}" for title, _, align, _ in columns) + f"{'peak RSS MiB':>14}{'imports MiB':>13}")
    for row in result["rows"]:
        cells = "".join(f"{row[key]:{align}{fmt}}" for _, key, align, fmt in columns)
        print(cells + f"{row['peak_rss_bytes'] / 2**20:>14,.0f}{row['import_rss_bytes'] / 2**20:>13,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--events", type=int, default=1_000_000, help="Generated events in the topic.")
    parser.add_argument("--window", type=int, default=None,
                        help="STREAMREC_TRAIN_WINDOW_EVENTS for the snapshot (default: every event).")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--items", type=int, default=20_000, help="Catalogue size of the generated events.")
    parser.add_argument("--reuse", metavar="PREFIX", help="Read the topics of an earlier run's namespace.")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=None,
                        help="Also measure the former dict snapshot (default: up to 10^6 events).")
    parser.add_argument("--quick", action="store_true", help=f"A short form: {QUICK_EVENTS:,} events.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, json.loads(sys.stdin.read()))))
        return 0
    n = QUICK_EVENTS if args.quick else args.events
    baseline = n <= 1_000_000 if args.baseline is None else args.baseline

    from stream.kafka.admin import ensure_topics
    from stream.kafka.reader import end_offsets

    prefix = args.reuse or f"bench-{os.urandom(4).hex()}."
    root = Path(tempfile.mkdtemp(prefix="streamrec-trainer-scale-"))
    options = {"kafka_bootstrap": args.bootstrap, "topic_prefix": prefix, "topic_partitions": args.partitions,
               "data_dir": str(root / "state"), "artifacts_dir": str(root / "artifacts"), "log_level": "WARNING",
               "train_window_events": args.window, "train_window_days": None}
    settings = Settings(**options)
    ensure_topics(settings)
    produce_rate = None
    held = sum(asyncio.run(end_offsets(settings, settings.topic(EVENTS))).values())
    if held < n:
        produce_rate = produce(settings, n - held, args.items)
        print(f"produced {n - held:,} events to {settings.topic(EVENTS)} ({produce_rate:,.0f}/s); "
              f"reuse with --reuse {prefix}")
    held = sum(asyncio.run(end_offsets(settings, settings.topic(EVENTS))).values())

    rows = [measure("columns", options)]
    if baseline:
        rows.append(measure("dicts (before)", options))
    result = {
        "machine": machine(), "events_in_topic": held, "window_events": args.window,
        "partitions": args.partitions, "items": args.items, "topic_prefix": prefix,
        "produce_events_per_s": None if produce_rate is None else round(produce_rate, 1),
        "rows": rows, **{k: rows[0][k] for k in ("snapshot_seconds", "events_per_s", "peak_rss_bytes")},
    }
    print_table(result)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
